"""LSP positions ↔ Python string offsets in the negotiated encoding (UTF-16/8/32).

Lines end at CRLF, LF or CR; a column past the end of a line clamps to the line's end,
as the LSP specification asks, but a line past the end of the document is an error.
"""

from __future__ import annotations

import re

import numpy as np
from lsprotocol import types

LINE_BREAK = re.compile(r"\r\n|\r|\n")


class PositionError(ValueError):
    """A position that does not exist in the document."""


def line_starts(text: str) -> np.ndarray:
    """Offsets where each line begins. Without a lone CR every break ends in an LF, so the
    LFs are found by numpy over the code points: a 10 MB file takes milliseconds, not the
    fraction of a second a match per line takes. A lone surrogate (JSON can carry one) is
    one code point like any other: the text is kept as the client sent it."""
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return np.array([0, *(m.end() for m in LINE_BREAK.finditer(text))], dtype=np.int64)
    if text.isascii():
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return np.concatenate(([0], np.flatnonzero(codes == 10) + 1)).astype(np.int64)


class LineIndex:
    """A text and where each of its lines starts. Converting a position costs a binary search
    plus one line, and a change updates the index by rescanning only the lines it touched, so
    a keystroke in a big document never rescans the document."""

    def __init__(self, text: str, starts: np.ndarray | None = None) -> None:
        self.text = text
        self.starts = line_starts(text) if starts is None else starts

    def line_of(self, offset: int) -> int:
        return int(np.searchsorted(self.starts, offset, side="right")) - 1

    def content_end(self, line: int) -> int:
        """Offset of the end of `line`, before its line break."""
        if line + 1 < len(self.starts):
            end = int(self.starts[line + 1])
            return end - (2 if self.text[end - 2 : end] == "\r\n" else 1)
        return len(self.text)

    def offset(self, position: types.Position, encoding: str = "utf-16") -> int:
        """The string offset of an LSP position; a column inside a surrogate pair rounds up."""
        if position.line < 0 or position.character < 0:
            raise PositionError(f"negative position {position.line}:{position.character}")
        if position.line >= len(self.starts):
            raise PositionError(
                f"line {position.line} is outside the document ({len(self.starts)} lines)"
            )
        offset, end = int(self.starts[position.line]), self.content_end(position.line)
        remaining = position.character
        while remaining > 0 and offset < end:
            remaining -= units(self.text[offset], encoding)
            offset += 1
        return offset

    def position(self, offset: int, encoding: str = "utf-16") -> types.Position:
        """The LSP position of a string offset."""
        if not 0 <= offset <= len(self.text):
            raise PositionError(
                f"offset {offset} is outside the document ({len(self.text)} chars)"
            )
        line = self.line_of(offset)
        start = int(self.starts[line])
        return types.Position(line, count_units(self.text[start:offset], encoding))

    def offsets(self, rng: types.Range, encoding: str = "utf-16") -> tuple[int, int]:
        """Offsets of an LSP range; a reversed range is an error, not silently swapped."""
        start, end = self.offset(rng.start, encoding), self.offset(rng.end, encoding)
        if end < start:
            raise PositionError("the range ends before it starts")
        return start, end

    def range(self, start: int, end: int, encoding: str = "utf-16") -> types.Range:
        """The LSP range of the offsets [start, end)."""
        return types.Range(self.position(start, encoding), self.position(end, encoding))

    def replaced(self, start: int, end: int, new_text: str) -> LineIndex:
        """The index of the text with [start, end) replaced by `new_text`. Only the lines from
        the one before the change to the end of its last line are scanned again (a CR and an
        LF joined or split by the change end there); later starts just shift."""
        starts = self.starts
        first = max(0, self.line_of(start) - 1)
        last = self.line_of(end) + 1  # the first line after the change, kept as it was
        window_start = int(starts[first])
        window_end = int(starts[last]) if last < len(starts) else len(self.text)
        text = self.text[:start] + new_text + self.text[end:]
        shift = len(new_text) - (end - start)
        window = text[window_start : window_end + shift]
        rescanned = [window_start + m.end() for m in LINE_BREAK.finditer(window)]
        if last < len(starts) and rescanned and rescanned[-1] == window_end + shift:
            rescanned.pop()  # the kept line's own start, added again below
        middle = np.array(rescanned, dtype=np.int64)
        return LineIndex(text, np.concatenate((starts[: first + 1], middle, starts[last:] + shift)))


def units(char: str, encoding: str) -> int:
    """Code units one character takes in `encoding`."""
    if encoding == "utf-32":
        return 1
    if encoding == "utf-8":
        return len(char.encode("utf-8"))
    return 2 if ord(char) > 0xFFFF else 1


def count_units(text: str, encoding: str) -> int:
    """Code units a string takes in `encoding`."""
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    return len(text.encode("utf-16-le")) // 2
