"""The byte stream under JSON-RPC: framing that survives bad input, and the process's end.

Replaces pygls' `run_async` read loop (which wedges for good after one bad header and
allocates whatever a Content-Length asks for). Here:
- headers are found anywhere in the stream and read case-insensitively, with CRLF or LF line
  ends, so after any framing error the reader resynchronises on the next `Content-Length`;
- a Content-Length above `MAX_CONTENT_LENGTH` is refused without reading the body into memory;
- a body that does not parse is answered with -32700 (id null); bytes after a complete JSON
  value (a Content-Length that was too long) are read again as the start of the next frame.

The end: stdin closing (or a broken pipe) ends the server with status 0, `exit` with 0 after
`shutdown` and 1 without; `__main__` then stops the work and leaves with `os._exit`, so no
thread (torch's included) can abort the interpreter's teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from pygls.exceptions import JsonRpcParseError

from copyspec_lsp.protocol import CopySpecProtocol

log = logging.getLogger(__name__)

MAX_CONTENT_LENGTH = 64 * 1024 * 1024
"""Largest message body accepted, in bytes (64 MiB)."""
MAX_HEADER_BYTES = 8192
"""A header block longer than this without its blank line is dropped."""
CHUNK = 65536
HEADER = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
BLANK_LINE = re.compile(rb"\r?\n\r?\n")
FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:[ \t]*([^\r\n]*)")
LEADING_SPACE = re.compile(r"[ \t\n\r]*")
"""JSON's whitespace before a value (what `raw_decode` does not skip itself)."""


class FrameError(Exception):
    """A frame that cannot be read; the reader has already skipped past its header."""


class FrameReader:
    """Frames out of a byte stream; `read(n)` returns up to n bytes, b"" at the end."""

    def __init__(
        self, read: Callable[[int], Awaitable[bytes]], limit: int = MAX_CONTENT_LENGTH
    ) -> None:
        self._read = read
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._read(CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def push_back(self, data: bytes) -> None:
        """Bytes read past the end of a message: they start the next frame."""
        self._buffer[:0] = data

    async def next_body(self) -> bytes | None:
        """The next message body; None at the end of the stream; FrameError for a bad frame."""
        start = await self._find_header()
        if start is None:
            return None
        while (blank := BLANK_LINE.search(self._buffer, start)) is None:
            if len(self._buffer) - start > MAX_HEADER_BYTES:
                del self._buffer[: start + 1]
                raise FrameError("a header without its blank line")
            if not await self._fill():
                return None
        block = bytes(self._buffer[start : blank.start()])
        del self._buffer[: blank.end()]
        length = _content_length(block, self._limit)
        while len(self._buffer) < length:
            if not await self._fill():
                return None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    async def _find_header(self) -> int | None:
        """Offset of the next Content-Length header; drops what comes before it."""
        while True:
            found = HEADER.search(self._buffer)
            if found is not None:
                skipped = bytes(self._buffer[: found.start()])
                if skipped.strip():
                    log.warning("skipped %d bytes that were not a message", len(skipped))
                del self._buffer[: found.start()]
                return 0
            keep = len(b"content-length:") - 1
            if len(self._buffer) > keep:
                if bytes(self._buffer[:-keep]).strip():
                    log.warning("skipped %d bytes that were not a message",
                                len(self._buffer) - keep)
                del self._buffer[:-keep]
            if not await self._fill():
                return None


def _content_length(block: bytes, limit: int) -> int:
    """The one Content-Length of a header block, checked; FrameError otherwise."""
    values = set()
    for line in re.split(rb"\r?\n", block):
        field = FIELD.fullmatch(line.strip(b" \t"))
        if field is None:
            raise FrameError(f"a malformed header line {line[:60]!r}")
        if field.group(1).lower() == b"content-length":
            values.add(field.group(2).strip())
    if len(values) != 1:
        raise FrameError("conflicting Content-Length headers")
    value = values.pop()
    if not value.isdigit():
        raise FrameError(f"Content-Length is not a number: {value[:30]!r}")
    length = int(value)
    if length > limit:
        raise FrameError(f"a message of {length} bytes is over the limit of {limit} bytes")
    return length


def decode(body: bytes) -> tuple[Any, bytes]:
    """The JSON value a body starts with and the bytes after it; JsonRpcParseError if none."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonRpcParseError("parse error: the message is not valid UTF-8") from None
    try:
        value, end = json.JSONDecoder().raw_decode(text, LEADING_SPACE.match(text).end())
    except json.JSONDecodeError as error:
        raise JsonRpcParseError(f"parse error: {error.msg} at character {error.pos}") from None
    except RecursionError:
        raise JsonRpcParseError("parse error: the message is nested too deeply") from None
    return value, text[end:].encode("utf-8")


async def serve(protocol: CopySpecProtocol, reader: FrameReader) -> int:
    """Read and handle messages until the stream ends (0) or `exit` (0 after shutdown, else 1)."""
    while True:
        try:
            body = await reader.next_body()
        except FrameError as error:
            log.warning("bad frame: %s", error)
            protocol.reply_error(None, JsonRpcParseError(f"parse error: {error}"))
            continue
        if body is None:
            log.info("the client closed the connection")
            return 0
        try:
            message, rest = decode(body)
        except JsonRpcParseError as error:
            protocol.reply_error(None, error)
            continue
        if rest.strip():
            reader.push_back(rest)
        try:
            protocol.handle_raw(message)
        except SystemExit:  # pygls' `exit` handler
            return 0 if protocol._shutdown else 1
        except Exception:
            log.exception("message not handled")
        if writer_broken(protocol):
            log.info("the client stopped reading")
            return 0
        await asyncio.sleep(0)  # what the message started runs before the next one is read


class PipeWriter:
    """Writes frames to a file descriptor; a broken pipe marks it broken instead of raising."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self._stream.write(data)
            self._stream.flush()
        except (BrokenPipeError, ConnectionError, ValueError, OSError):
            self.broken = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.flush()


def writer_broken(protocol: CopySpecProtocol) -> bool:
    return bool(getattr(protocol.writer, "broken", False))


def stdin_reader(loop: asyncio.AbstractEventLoop) -> FrameReader:
    """A FrameReader over stdin, read on a daemon thread (which never holds up the exit)."""
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    fd = sys.stdin.buffer.fileno()

    def pump() -> None:
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except RuntimeError:  # the loop has closed
                return
            if not chunk:
                return

    threading.Thread(target=pump, name="copyspec-stdin", daemon=True).start()

    async def read(_: int) -> bytes:
        return await chunks.get()

    return FrameReader(read)


async def serve_stdio(protocol: CopySpecProtocol) -> int:
    protocol.set_writer(PipeWriter(sys.stdout.buffer))
    return await serve(protocol, stdin_reader(asyncio.get_running_loop()))


async def serve_tcp(protocol: CopySpecProtocol, host: str, port: int) -> int:
    """Serve the first client that connects; the server ends with its connection."""
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if done.done():
            writer.close()
            return
        protocol.set_writer(PipeWriter(_SocketStream(writer)))
        try:
            code = await serve(protocol, FrameReader(reader.read))
        except ConnectionError:
            code = 0
        if not done.done():
            done.set_result(code)

    server = await asyncio.start_server(connection, host, port)
    async with server:
        return await done


class _SocketStream:
    """A StreamWriter seen as a file: write, and flush (a no-op: the loop sends)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise BrokenPipeError("the connection is closed")
        self._writer.write(data)

    def flush(self) -> None:
        pass
