"""LSP positions ↔ Python string offsets in the negotiated encoding (UTF-16/8/32).

Lines end at CRLF, LF or CR; a column past the end of a line clamps to the line's end,
as the LSP specification asks, but a line past the end of the document is an error.
"""

from __future__ import annotations

import re

from lsprotocol import types

LINE_BREAK = re.compile(r"\r\n|\r|\n")


class PositionError(ValueError):
    """A position that does not exist in the document."""


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins."""
    return [0, *(m.end() for m in LINE_BREAK.finditer(text))]


def line_content_end(text: str, starts: list[int], line: int) -> int:
    """Offset of the end of `line`, before its line break."""
    if line + 1 < len(starts):
        end = starts[line + 1]
        return end - (2 if text[end - 2 : end] == "\r\n" else 1)
    return len(text)


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


def to_offset(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    """The string offset of an LSP position; a column inside a surrogate pair rounds up."""
    starts = line_starts(text)
    if position.line < 0 or position.character < 0:
        raise PositionError(f"negative position {position.line}:{position.character}")
    if position.line >= len(starts):
        raise PositionError(
            f"line {position.line} is outside the document ({len(starts)} lines)"
        )
    offset, end = starts[position.line], line_content_end(text, starts, position.line)
    remaining = position.character
    while remaining > 0 and offset < end:
        remaining -= units(text[offset], encoding)
        offset += 1
    return offset


def to_position(text: str, offset: int, encoding: str = "utf-16") -> types.Position:
    """The LSP position of a string offset."""
    if not 0 <= offset <= len(text):
        raise PositionError(f"offset {offset} is outside the document ({len(text)} chars)")
    starts = line_starts(text)
    line = _line_of(starts, offset)
    return types.Position(line, count_units(text[starts[line] : offset], encoding))


def to_range(text: str, start: int, end: int, encoding: str = "utf-16") -> types.Range:
    """The LSP range of the offsets [start, end)."""
    return types.Range(to_position(text, start, encoding), to_position(text, end, encoding))


def range_offsets(text: str, rng: types.Range, encoding: str = "utf-16") -> tuple[int, int]:
    """Offsets of an LSP range; a reversed range is an error, not silently swapped."""
    start, end = to_offset(text, rng.start, encoding), to_offset(text, rng.end, encoding)
    if end < start:
        raise PositionError("the range ends before it starts")
    return start, end


def _line_of(starts: list[int], offset: int) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo
