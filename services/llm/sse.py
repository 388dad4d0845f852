"""Server-sent events: just enough of the spec for OpenAI-style streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

__all__ = ["DONE", "iter_sse_data"]

DONE = "[DONE]"


async def iter_sse_data(
    lines: AsyncIterator[str], *, stop_at_done: bool = True
) -> AsyncIterator[str]:
    """Yield each event's `data` payload from decoded lines (without line terminators).

    Multi-line data is joined with "\\n"; comments (":") and other fields (event, id, retry) are
    ignored. With `stop_at_done` the iteration ends at a `[DONE]` payload; without it `[DONE]` is
    yielded like any payload, so a caller can tell a finished stream from a cut one and still
    read the body to its end (which lets httpx put the connection back into the pool).
    A trailing event without the final blank line is still delivered.
    """
    buf: list[str] = []
    async for line in lines:
        if line:
            if line.startswith("data:"):
                value = line[5:]
                buf.append(value[1:] if value[:1] == " " else value)
            elif line == "data":
                buf.append("")
            continue
        if not buf:
            continue
        data = buf[0] if len(buf) == 1 else "\n".join(buf)
        buf.clear()
        if stop_at_done and data.strip() == DONE:
            return
        yield data
    if buf:
        data = "\n".join(buf)
        if not (stop_at_done and data.strip() == DONE):
            yield data
