"""Server-sent events: just enough of the spec for OpenAI-style streams, on raw bytes.

The body is split into lines here rather than by httpx's text layers (a UTF-8 decoder, a
text chunker and a line decoder, each an async generator per chunk): one `split` per
network read, and each event's payload decoded once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

__all__ = ["DONE", "iter_sse_data"]

DONE = "[DONE]"
_DONE = b"[DONE]"


def _lines(data: bytes) -> list[bytes]:
    # SSE lines end in CRLF, LF or a lone CR.
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.split(b"\n")


async def iter_sse_data(
    chunks: AsyncIterator[bytes], *, stop_at_done: bool = True
) -> AsyncIterator[str]:
    """Yield each event's `data` payload from the body's bytes, as they arrive.

    Multi-line data is joined with "\\n"; comments (":") and other fields (event, id, retry) are
    ignored. With `stop_at_done` the iteration ends at a `[DONE]` payload; without it `[DONE]` is
    yielded like any payload, so a caller can tell a finished stream from a cut one and still
    read the body to its end (which lets the connection be reused).
    A trailing event without the final blank line is still delivered. Lines and UTF-8
    characters split between reads are put back together.
    """
    pending = b""
    buf: list[bytes] = []
    async for chunk in chunks:
        data = pending + chunk if pending else chunk
        if data.endswith(b"\r"):
            # Maybe the first half of a CRLF: wait for the next read before ending the line.
            pending, data = b"\r", data[:-1]
            lines = _lines(data)
            pending = lines.pop() + pending
        else:
            lines = _lines(data)
            pending = lines.pop()
        for line in lines:
            if line:
                if line.startswith(b"data:"):
                    value = line[5:]
                    buf.append(value[1:] if value[:1] == b" " else value)
                elif line == b"data":
                    buf.append(b"")
                continue
            if not buf:
                continue
            payload = buf[0] if len(buf) == 1 else b"\n".join(buf)
            buf.clear()
            if stop_at_done and payload.strip() == _DONE:
                return
            yield payload.decode("utf-8", "replace")
    for line in _lines(pending):
        if line.startswith(b"data:"):
            value = line[5:]
            buf.append(value[1:] if value[:1] == b" " else value)
        elif line == b"data":
            buf.append(b"")
    if buf:
        payload = b"\n".join(buf)
        if not (stop_at_done and payload.strip() == _DONE):
            yield payload.decode("utf-8", "replace")
