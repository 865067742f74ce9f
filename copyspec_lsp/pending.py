"""What a region shows while its answer streams: the streamed text, then the original's rest.

A streamed edit that replaced the whole region with the answer so far would make the rest of
the original vanish at the first chunk. Instead the region shows the streamed text followed by
the original lines the answer has not passed yet ("pending"), which clients decorate as such;
each pending line disappears once the answer has passed it. The final edit is the answer alone.

Which original lines the answer has passed is decided line by line on the complete streamed
lines (the last, unfinished one does not count): a line equal to a later original line jumps
past it (lines kept or copied), any other line stands in for one original line (a changed
line). The position only moves forward, so a pending line never comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from copyspec_lsp.positions import LineIndex
    from copyspec_lsp.requests import Request

PENDING = "copyspec/pending"
"""Notification `{uri, session, range | null, before, after}`, sent before each edit of a
request: `range` is where the pending lines will stand once that edit is applied (null: none,
e.g. before the final edit); `before` and `after` are the whole region's range in the version
the edit is computed against and once it is applied. An edit is the minimal change inside the
region, so these tell a client what the region holds without knowing the server's text."""


@dataclass(frozen=True)
class Shown:
    """The region's text while streaming; `text[pending:]` is the original's pending rest."""

    text: str
    pending: int
    """Offset in `text` where the pending lines start (== len(text) when there are none)."""


def passed_lines(original: list[str], streamed: list[str]) -> int:
    """How many original lines the complete streamed lines have passed."""
    passed = 0
    anchor = 0  # where the next exact match is looked for: after the last match
    for line in streamed:
        if passed >= len(original):
            break
        key = line.strip()
        match = next(
            (j for j in range(anchor, len(original)) if key and original[j].strip() == key), None
        )
        if match is None:
            passed += 1
        else:
            anchor = match + 1
            passed = max(passed, anchor)
    return min(passed, len(original))


def while_streaming(original: str, streamed: str, newline: str = "\n") -> Shown:
    """The text a streamed edit puts into the region: `streamed`, then the pending lines."""
    old = original.split(newline)
    complete = streamed.split(newline)[:-1]
    rest = old[passed_lines(old, complete):]
    if not streamed or not rest or not original:
        return Shown(streamed, len(streamed))
    return Shown(streamed + newline + newline.join(rest), len(streamed) + len(newline))


def announce(
    server: LanguageServer,
    request: Request,
    lines: LineIndex,
    text: str,
    pending_at: int | None,
    encoding: str,
) -> None:
    """Send `copyspec/pending` for an edit that will put `text` at the request's region of
    the document `lines` (as the server sees it now)."""
    region = request.region
    start, end = region.start, region.start + len(text)
    after = lines.replaced(region.start, region.end, text)
    where = None
    if pending_at is not None and pending_at < len(text):
        where = _plain(after.range(start + pending_at, end, encoding))
    server.protocol.notify(PENDING, {
        "uri": request.uri, "session": request.session, "range": where,
        "before": _plain(lines.range(start, region.end, encoding)),
        "after": _plain(after.range(start, end, encoding)),
    })


def _plain(rng: types.Range) -> dict[str, dict[str, int]]:
    return {"start": {"line": rng.start.line, "character": rng.start.character},
            "end": {"line": rng.end.line, "character": rng.end.character}}
