"""The byte stream under JSON-RPC: framing that survives bad input, and the process's end.

Replaces pygls' `run_async` read loop (which wedges for good after one bad header and
allocates whatever a Content-Length asks for). Here:
- headers are found anywhere in the stream and read case-insensitively, with CRLF or LF line
  ends, so after any framing error the reader resynchronises on the next `Content-Length`;
- a Content-Length above `MAX_CONTENT_LENGTH` is refused without reading the body into memory,
  and a header block is held to `MAX_HEADER_BYTES`, so a 20 MB header line costs 8 KiB;
- a run of bad input (junk, bad headers) gets one -32700 answer and one log line, whatever
  its length;
- a body that does not parse is answered with -32700, one nested more than `MAX_DEPTH` deep
  with -32600, a request under its own id wherever the id can still be read (else id null);
  bytes after a complete JSON value (a Content-Length that was too long) are read again as the
  start of the next frame.

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

from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest, JsonRpcParseError

from copyspec_lsp.wire.protocol import CopySpecProtocol

log = logging.getLogger(__name__)

MAX_CONTENT_LENGTH = 64 * 1024 * 1024
"""Largest message body accepted, in bytes (64 MiB)."""
MAX_HEADER_BYTES = 8192
"""A header block longer than this without its blank line is dropped."""
MAX_DEPTH = 100
"""Deepest nesting of JSON objects and arrays accepted in a message (LSP needs about 10); well
under the depth where Python's decoder, cattrs or pygls would run out of recursion."""
CHUNK = 65536
HEADER = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
KEEP = len(b"content-length:") - 1
"""Bytes kept at the end of skipped input: a header may start in them."""
BLANK_LINE = re.compile(rb"\r?\n\r?\n")
FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:[ \t]*([^\r\n]*)")
LEADING_SPACE = re.compile(r"[ \t\n\r]*")
"""JSON's whitespace before a value (what `raw_decode` does not skip itself)."""
TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
"""A JSON string or bracket: enough to walk a message too deep to decode."""
KEY_END = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")


class FrameError(Exception):
    """A frame that cannot be read; the reader has already skipped past its header."""


class BadMessage(Exception):
    """A body that cannot be handled, with what could still be read of it (its id and method
    at least, when possible), so that a request is answered under its own id."""

    def __init__(self, error: JsonRpcException, readable: dict[str, Any]) -> None:
        super().__init__(error.message)
        self.error = error
        self.readable = readable


class FrameReader:
    """Frames out of a byte stream; `read(n)` returns up to n bytes, b"" at the end."""

    def __init__(
        self, read: Callable[[int], Awaitable[bytes]], limit: int = MAX_CONTENT_LENGTH
    ) -> None:
        self._read = read
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False
        self._searched = 0
        """No blank line starts before this offset of the buffer (an earlier search found
        none), so skipping many bad headers costs one pass over them, not one per header."""
        self._skipped = 0
        """Bytes dropped since the last good frame."""
        self._junk = False
        """Whether any of them was more than whitespace between frames."""
        self._bad = 0
        """Bad frames since the last good one; only the first raises FrameError."""

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._read(CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _drop(self, count: int) -> None:
        """Skip `count` bytes at the front of the buffer."""
        if count <= 0:
            return
        self._junk = self._junk or bool(bytes(self._buffer[:count]).strip())
        del self._buffer[:count]
        self._skipped += count
        self._searched = max(0, self._searched - count)

    def push_back(self, data: bytes) -> None:
        """Bytes read past the end of a message: they start the next frame."""
        self._buffer[:0] = data
        self._searched = 0

    async def next_body(self) -> bytes | None:
        """The next message body; None at the end of the stream. The first bad frame of a
        run raises FrameError; the rest of the run is skipped, and the whole run is logged
        once, with its size, when a good frame (or the end) comes."""
        while True:
            try:
                body = await self._next_frame()
            except FrameError:
                self._bad += 1
                if self._bad == 1:
                    raise
                continue
            if self._junk or self._bad:
                log.warning("skipped %d bytes that were not a message", self._skipped)
            self._skipped, self._junk, self._bad = 0, False, 0
            return body

    async def _next_frame(self) -> bytes | None:
        if not await self._find_header():
            return None
        while True:
            blank = BLANK_LINE.search(self._buffer, self._searched)
            self._searched = blank.start() if blank else max(0, len(self._buffer) - 3)
            if blank is not None or self._searched > MAX_HEADER_BYTES:
                break
            if not await self._fill():
                return None
        if blank is None or blank.start() > MAX_HEADER_BYTES:
            # no blank line before `_searched`: a header starting more than MAX_HEADER_BYTES
            # before it is too long as well; a later one may be good
            self._drop(self._searched - MAX_HEADER_BYTES)
            raise FrameError(f"a header block longer than {MAX_HEADER_BYTES} bytes "
                             "without its blank line")
        try:
            length = _content_length(bytes(self._buffer[: blank.start()]), self._limit)
        except FrameError:
            self._drop(1)  # a good header may start further on in this block
            raise
        del self._buffer[: blank.end()]
        self._searched = 0
        while len(self._buffer) < length:
            if not await self._fill():
                return None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    async def _find_header(self) -> bool:
        """Drop what comes before the next Content-Length header; False at the end."""
        while True:
            found = HEADER.search(self._buffer)
            if found is not None:
                self._drop(found.start())
                return True
            self._drop(len(self._buffer) - KEEP)
            if not await self._fill():
                self._drop(len(self._buffer))
                return False


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
    """The JSON value a body starts with and the bytes after it; BadMessage if there is none
    or it nests more than MAX_DEPTH deep. A surrogate encoded on its own reads as the lone
    surrogate it stands for, as JSON's "\\ud800" does (the request that uses it says so)."""
    try:
        text = body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as error:
        raise BadMessage(
            JsonRpcParseError(f"parse error: the message is not valid UTF-8 (byte {error.start})"),
            _readable(body.decode("utf-8", "replace")),
        ) from None
    try:
        value, end = json.JSONDecoder().raw_decode(text, LEADING_SPACE.match(text).end())
    except json.JSONDecodeError as error:
        raise BadMessage(
            JsonRpcParseError(f"parse error: {error.msg} at character {error.pos}"), {}
        ) from None
    except RecursionError:
        raise BadMessage(_too_deep(), _top_level(text)) from None
    if _deeper_than(value, MAX_DEPTH):
        raise BadMessage(_too_deep(), value if isinstance(value, dict) else {})
    return value, text[end:].encode("utf-8", "surrogatepass")


def _too_deep() -> JsonRpcInvalidRequest:
    return JsonRpcInvalidRequest(
        f"invalid message: it nests objects and arrays more than {MAX_DEPTH} levels deep"
    )


def _readable(text: str) -> dict[str, Any]:
    """The message as far as it can be read (its id and method, at least), or {}."""
    try:
        value = json.JSONDecoder().raw_decode(text, LEADING_SPACE.match(text).end())[0]
    except ValueError:
        return {}
    except RecursionError:
        return _top_level(text)
    return value if isinstance(value, dict) else {}


def _top_level(text: str) -> dict[str, Any]:
    """The top-level "id" and "method" of a message too deep to decode, found by walking its
    strings and brackets (no recursion)."""
    found: dict[str, Any] = {}
    depth = 0
    for token in TOKEN.finditer(text):
        mark = token.group()
        if mark in ("{", "["):
            depth += 1
        elif mark in ("}", "]"):
            depth -= 1
        elif depth == 1 and mark in ('"id"', '"method"') and mark[1:-1] not in found:
            colon = KEY_END.match(text, token.end())
            if colon is not None:
                with contextlib.suppress(ValueError, RecursionError):
                    found[mark[1:-1]] = json.JSONDecoder().raw_decode(text, colon.end())[0]
    return found


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels in `value` (no recursion)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return bool(level)


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
        except BadMessage as bad:
            protocol.refuse(bad.readable, bad.error)
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
