"""The answer against the original as hunks of whole lines, computed once, here, for every client.

Hunk-by-hunk review (accept or reject each change) must show the same hunks in every editor,
so the server computes them (difflib over lines) and sends them with the result of
`copyspec/refine` and `copyspec/fix` as `hunks`. A hunk names whole rows of the document: the
rows the region spans, with the text before the region on its first row and after it on its
last row, so a client only ever replaces whole lines and never has to cut one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from copyspec_lsp.adapters.line_index import LINE_BREAK, LineIndex


@dataclass(frozen=True)
class Hunk:
    """Rows `original_lines` at `original_start` of the document without the answer became
    rows `lines` at `start` of the document with it (either list may be empty)."""

    original_start: int
    original_lines: list[str]
    start: int
    lines: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The wire form: whole-line ranges, each ending at the start of the row after it."""
        return {
            "range": line_range(self.start, len(self.lines)),
            "originalRange": line_range(self.original_start, len(self.original_lines)),
            "newLines": self.lines,
            "originalLines": self.original_lines,
        }


def line_range(row: int, count: int) -> dict[str, dict[str, int]]:
    """Rows [row, row + count) as an LSP range; empty (at `row`) when `count` is 0. Character
    0 is the same in every position encoding."""
    return {"start": {"line": row, "character": 0}, "end": {"line": row + count, "character": 0}}


def diff_rows(original: list[str], answer: list[str], first_row: int) -> list[Hunk]:
    """The changed runs of rows, in order; both lists start at `first_row` of their documents
    (the rows above the region are the same in both). Runs on the event loop: the answer is
    at most a turn's token budget long, which keeps this to milliseconds (a 1,500-line answer
    against a 10,000-line region: 60 ms)."""
    matcher = difflib.SequenceMatcher(None, original, answer, autojunk=False)
    return [
        Hunk(first_row + i1, original[i1:i2], first_row + j1, answer[j1:j2])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def region_hunks(lines: LineIndex, start: int, end: int, original: str, answer: str) -> list[Hunk]:
    """Hunks from `original` to `answer` for the region [start, end) of the document `lines`,
    which holds one of the two there now (the answer once applied, the original for a
    preview); the rest of the region's first and last rows is taken from the document."""
    text = lines.text
    row_start = int(lines.starts[lines.line_of(start)])
    prefix = text[row_start:start]
    suffix = text[end : lines.content_end(lines.line_of(end))]
    return diff_rows(
        LINE_BREAK.split(prefix + original + suffix),
        LINE_BREAK.split(prefix + answer + suffix),
        lines.line_of(start),
    )
