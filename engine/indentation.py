"""Line starts as a tokenizer writes them, so a copy can write a line at another depth.

A re-indented block (code wrapped in a `try:` or taken out of one) changes every line's
leading whitespace and nothing else. Which tokens that whitespace is depends on the tokenizer:
one token for a newline and its indentation (SmolLM2, Qwen2.5, the demo model), or a newline
and then one token per space (GPT-2). The table is built by encoding a line start of every
depth once, so the copy proposer reads and writes them in the tokenizer's own tokens and
never needs the tokenizer while it proposes.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Any

MAX_COLUMNS = 64
"""Deepest indentation in the table (spaces)."""
MAX_NEWLINES = 3
"""Most newlines before a line start in the table (blank lines above it)."""
LINE_START_MOST = MAX_NEWLINES + MAX_COLUMNS + 1
"""Most tokens a line start takes, with the token after it."""
_WORD = "x"
"""What follows a line start when the table is built: a word, which some tokenizers merge
with the space before it (GPT-2's ' x'), as they do the first word of a real line."""


@dataclass(frozen=True)
class LineStarts:
    """The token runs that open a line: newlines, then indentation, up to its first word."""

    depths: dict[tuple[int, ...], tuple[int, int]]
    """A run's tokens → (newlines, columns)."""
    runs: dict[tuple[int, int], tuple[int, ...]]
    """(newlines, columns) → the run's tokens."""
    firsts: frozenset[int]
    """Tokens a run starts with."""
    blanks: frozenset[int]
    """Tokens a run is made of."""

    def at(self, tokens: list[int], i: int) -> tuple[int, int, int] | None:
        """(newlines, columns, end) of the line start that begins at tokens[i], or None where
        none does, or where the run reaches the end of `tokens` (its depth is not known yet)."""
        if tokens[i] not in self.firsts:
            return None
        end, longest = i, i + LINE_START_MOST
        while end < len(tokens) and end < longest and tokens[end] in self.blanks:
            end += 1
        if end == len(tokens):
            return None
        for stop in range(end, i, -1):
            depth = self.depths.get(tuple(tokens[i:stop]))
            if depth is not None:
                return depth[0], depth[1], stop
        return None

    def shifted(self, tokens: list[int], i: int, columns: int
                ) -> tuple[tuple[int, ...], int] | None:
        """The line start at tokens[i] moved `columns` deeper (shallower when negative), and
        where the original run ends; None when there is none, or it has no such depth."""
        found = self.at(tokens, i)
        if found is None:
            return None
        newlines, depth, end = found
        run = self.runs.get((newlines, depth + columns))
        return None if run is None else (run, end)


def build_line_starts(tokenizer: Any) -> LineStarts | None:
    """Encode every line start up to MAX_NEWLINES and MAX_COLUMNS; None when the tokenizer
    writes none of them apart from the word after it."""
    head = tokenizer.encode(_WORD, add_special_tokens=False)
    depths: dict[tuple[int, ...], tuple[int, int]] = {}
    runs: dict[tuple[int, int], tuple[int, ...]] = {}
    for newlines in range(1, MAX_NEWLINES + 1):
        for columns in range(MAX_COLUMNS + 1):
            ids = tokenizer.encode(_WORD + "\n" * newlines + " " * columns + _WORD,
                                   add_special_tokens=False)
            run = tuple(ids[len(head):-1])
            if (ids[: len(head)] != head or not run
                    or tokenizer.decode(ids[-1:]).strip() != _WORD
                    or tokenizer.decode(list(run)).strip(" \n")):
                continue
            runs[newlines, columns] = run
            depths.setdefault(run, (newlines, columns))  # GPT-2: 0 and 1 column look alike
    if not runs:
        return None
    return LineStarts(depths, runs, frozenset(run[0] for run in runs.values()),
                      frozenset(token for run in runs.values() for token in run))


_BUILT: weakref.WeakKeyDictionary[Any, LineStarts | None] = weakref.WeakKeyDictionary()


def line_starts_of(tokenizer: Any) -> LineStarts | None:
    """`build_line_starts`, once per tokenizer object (about 200 encodes)."""
    try:
        return _BUILT[tokenizer]
    except KeyError:
        built = _BUILT[tokenizer] = _built(tokenizer)
        return built
    except TypeError:  # not weakly referable
        return _built(tokenizer)


def _built(tokenizer: Any) -> LineStarts | None:
    """`build_line_starts`, or None (with a warning) where the tokenizer fails at it: carrying
    a shift speeds a turn up, and is never a reason for one to fail."""
    try:
        return build_line_starts(tokenizer)
    except Exception as error:  # the tokenizer's own failure, whatever its kind
        logging.getLogger(__name__).warning(
            "no indentation shifts: the tokenizer could not encode a line start: %s", error)
        return None
