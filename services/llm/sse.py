"""Server-sent events: just enough of the spec for OpenAI-style streams, on raw bytes.

The body is split into lines here rather than by httpx's text layers (a UTF-8 decoder, a
text chunker and a line decoder, each an async generator per chunk): one `split` per
network read, and each event's payload decoded once.

Bounded whatever the server sends: a line longer than `max_line` bytes is a protocol error
(`SSELineTooLong`), and with `gap` set, `SSEStalled` ends a stream that keeps sending bytes
for that long without completing a line (complete silence is the transport's read timeout).
A line's bytes are collected in a list and joined once, so a long line costs linear time,
not quadratic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

__all__ = [
    "DONE",
    "MAX_LINE",
    "SSEError",
    "SSELineTooLong",
    "SSEStalled",
    "iter_sse_data",
]

DONE = "[DONE]"
_DONE = b"[DONE]"
# An OpenAI-style chunk is a few hundred bytes; a whole non-streamed answer in one event is
# tens of KB. A megabyte is far beyond any real line.
MAX_LINE = 1024 * 1024


class SSEError(Exception):
    """The body is not a usable event stream."""


class SSELineTooLong(SSEError):
    """A line (event field) grew beyond the allowed length."""


class SSEStalled(SSEError, TimeoutError):
    """No complete line arrived within the allowed gap."""


def _lines(data: bytes) -> list[bytes]:
    # SSE lines end in CRLF, LF or a lone CR.
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.split(b"\n")


async def iter_sse_data(
    chunks: AsyncIterator[bytes],
    *,
    stop_at_done: bool = True,
    max_line: int = MAX_LINE,
    gap: float | None = None,
) -> AsyncGenerator[str, None]:
    """Yield each event's `data` payload from the body's bytes, as they arrive.

    Multi-line data is joined with "\\n"; comments (":") and other fields (event, id, retry) are
    ignored. With `stop_at_done` the iteration ends at a `[DONE]` payload; without it `[DONE]` is
    yielded like any payload, so a caller can tell a finished stream from a cut one and still
    read the body to its end (which lets the connection be reused).
    A trailing event without the final blank line is still delivered. Lines and UTF-8
    characters split between reads are put back together.

    `gap` (seconds) bounds the time spent waiting for the network without a complete line
    (an event, a keep-alive comment or a blank line): a body dripping a byte at a time, which
    a read timeout never catches, ends with `SSEStalled` at its first read past the gap.
    Time the consumer spends between events does not count. Checked on each read (two clock
    readings) rather than with a timer per read, which cost several times the parsing.
    """
    pending: list[bytes] = []  # the unfinished line, in pieces
    pending_size = 0
    buf: list[bytes] = []
    clock = asyncio.get_running_loop().time if gap is not None else None
    waited = 0.0  # time spent waiting for reads since the last complete line
    while True:
        if clock is None:
            chunk = await anext(chunks, None)
        else:
            started = clock()
            chunk = await anext(chunks, None)
            waited += clock() - started
        if chunk is None:
            break
        if b"\n" not in chunk and b"\r" not in chunk:
            # Still inside one line: only count it (the common case for huge lines).
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size > max_line:
                raise SSELineTooLong(f"an event line longer than {max_line} bytes")
            if gap is not None and waited > gap:
                raise SSEStalled(f"no complete line for {gap:g} s")
            continue
        if pending:
            pending.append(chunk)
            data = b"".join(pending)
        else:
            data = chunk
        if data.endswith(b"\r"):
            # Maybe the first half of a CRLF: wait for the next read before ending the line.
            lines = _lines(data[:-1])
            tail = lines.pop() + b"\r"
        else:
            lines = _lines(data)
            tail = lines.pop()
        pending = [tail] if tail else []
        pending_size = len(tail)
        if pending_size > max_line:
            raise SSELineTooLong(f"an event line longer than {max_line} bytes")
        # At least one line ended: the stream is alive, the gap starts over.
        waited = 0.0
        for line in lines:
            if len(line) > max_line:
                raise SSELineTooLong(f"an event line longer than {max_line} bytes")
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
    for line in _lines(b"".join(pending)):
        if line.startswith(b"data:"):
            value = line[5:]
            buf.append(value[1:] if value[:1] == b" " else value)
        elif line == b"data":
            buf.append(b"")
    if buf:
        payload = b"\n".join(buf)
        if not (stop_at_done and payload.strip() == _DONE):
            yield payload.decode("utf-8", "replace")
