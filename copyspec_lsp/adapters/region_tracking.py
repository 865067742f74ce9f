"""A region being rewritten, following the user's edits and recognising the server's own.

A change before the region shifts it, a change after it leaves it alone, and a change inside
it marks it as touched (the request then stops and leaves the text as the user made it). The
echo of the server's own streamed edit is recognised as such: the region's text after the
change equals the text that edit put there. So is the same edit applied at its old range after
the user typed (a client that ignores versions): it is marked misplaced, and the region keeps
its place until the writer has put the overwritten text back.

The writer (`buffer_edits.py`) tells the region about each edit it sends (`edit_sent`,
`edit_settled`) and asks which misplaced edit to undo next (`last_misplaced`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from lsprotocol import types


@dataclass(eq=False)
class Region:
    """[start, end) of a document the server is rewriting, in string offsets."""

    uri: str
    start: int
    end: int
    expected: str | None = None
    """Text the edit in flight will leave in the region; None when none is in flight."""
    echoed: asyncio.Event | None = None
    """Set when the edit in flight has come back through didChange (or the user took over)."""
    sent: tuple[types.Range, str] | None = None
    """The edit in flight as sent: its range and new text."""
    misplaced: list[tuple[int, int, str]] = field(default_factory=list)
    """Our edits a client applied at their stale range, newest last: [start, end) of the text
    each put there and the text it overwrote, each where it stands with the newer ones undone.
    The writer puts them back newest first; the region's offsets ignore them meanwhile."""
    on_touched: Callable[[], None] | None = None
    touched: bool = False

    def follow(
        self, before: str, start: int, end: int, new_text: str, where: types.Range | None = None
    ) -> bool:
        """Update for one change that replaced before[start:end] (the LSP range `where`) with
        `new_text`; True when it was the server's own edit coming back."""
        if self.misplaced and (start, end, new_text) == self.misplaced[-1]:
            self.misplaced.pop()  # put back: the text reads as before that edit
            self._echo()
            return True
        if self.expected is not None and self.start <= start and end <= self.end:
            inner = before[self.start : start] + new_text + before[end : self.end]
            if inner == self.expected:
                self.end, self.expected = self.start + len(inner), None
                self._echo()
                return True
        if self.sent is not None and (where, new_text) == self.sent:
            if before[start:end] != new_text:  # a change that changed nothing needs no undo
                self.misplaced.append((start, start + len(new_text), before[start:end]))
            self.expected = None
            self._echo()
            return True
        shift = len(new_text) - (end - start)
        for i in reversed(range(len(self.misplaced))):  # map the change past each misplaced one
            low, high, overwritten = self.misplaced[i]
            if end <= low:
                self.misplaced[i] = (low + shift, high + shift, overwritten)
            elif start >= high:
                grown = high - low - len(overwritten)
                start, end = start - grown, end - grown
            else:  # onto a misplaced edit: it can no longer be put back exactly
                self._touch()
                return False
        if end <= self.start:
            self.start, self.end = self.start + shift, self.end + shift
        elif start < self.end:
            self._touch()
        return False

    def edit_sent(self, where: types.Range, new_text: str, leaves: str | None) -> asyncio.Event:
        """Our edit of `where` to `new_text` is in flight; `leaves` is the region's text once
        it is applied (None for a put-back). The event is set when it comes back."""
        self.expected, self.sent = leaves, (where, new_text)
        self.echoed = asyncio.Event()
        return self.echoed

    def edit_settled(self) -> None:
        """The edit in flight came back, was refused, or timed out."""
        self.expected, self.sent = None, None

    @property
    def last_misplaced(self) -> tuple[int, int, str] | None:
        """The newest of our edits a client applied at a stale range, to put back first."""
        return self.misplaced[-1] if self.misplaced else None

    def _echo(self) -> None:
        if self.echoed is not None:
            self.echoed.set()

    def _touch(self) -> None:
        if not self.touched:
            self.touched = True
            if self.on_touched is not None:
                self.on_touched()
            self._echo()
