"""Streamed edits: the shaped answer into the client's buffer with `workspace/applyEdit`.

Each edit is the smallest change that turns the region, as the client last reported it, into
the text so far (usually an insertion at its end), so even a client that applies it naively
never has its own text overwritten by a stale copy; it is a `TextDocumentEdit` stamped with
that version when the client takes `documentChanges`, so a spec-following client refuses it
once the user has typed since, and it is computed again against the newer text.

No edit goes out within USER_PAUSE of the user's own typing. Only one edit is in flight, and
the next waits until the client has reported the previous one back through `didChange`, so the
server's view never lags behind its own edits; a stop wakes every wait at once, so no edit goes
out after a cancel was answered.

While it streams, a region shows the answer so far, then the original's rest. A streamed
edit that replaced the whole region with the answer so far would make the rest of
the original vanish at the first chunk. Instead the region shows the streamed text followed by
the original lines the answer has not passed yet ("pending"), which clients decorate as such;
each pending line disappears once the answer has passed it. The final edit is the answer alone.

Which original lines the answer has passed is decided line by line on the complete streamed
lines (the last, unfinished one does not count): a line equal to a later original line jumps
past it (lines kept or copied), any other line stands in for one original line (a changed
line). The position only moves forward, so a pending line never comes back.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from copyspec_lsp.adapters.documents import Document, line_break
from copyspec_lsp.adapters.line_index import LineIndex
from copyspec_lsp.adapters.requests import Request

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

EDIT_INTERVAL = 0.05
"""Seconds between two streamed edits at least (and at most one per engine step)."""
ECHO_TIMEOUT = 5.0
"""Seconds to wait for the client to report an applied edit back through didChange."""
VERSIONED_ECHO_TIMEOUT = 1.0
"""The same for a versioned edit: a client may skip a stale one yet answer applied=true
(Neovim does), so the edit is computed again after this long."""
USER_PAUSE = 0.3
"""Seconds since the user's last own change before the next edit goes out."""
MAX_REFUSALS = 5
"""Refused edits computed again before the request gives up; a refusal after the user typed
(a stale version) does not count, since it is the user, not the editor, that moved on."""

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


class PendingLines:
    """Which original lines a growing answer has passed, worked out once per complete line:
    each call looks only at the lines completed since the last (a changed beginning, which
    shaping rarely makes, starts it over)."""

    def __init__(self, original: list[str], newline: str = "\n") -> None:
        self.original = original
        self.newline = newline
        self.at: dict[str, list[int]] = {}
        """Each stripped original line's indices, in order."""
        for index, line in enumerate(original):
            if line.strip():
                self.at.setdefault(line.strip(), []).append(index)
        self._restart("")
        self._rest = (-1, "")

    def _restart(self, seen: str) -> None:
        self.passed = 0
        self.anchor = 0  # where the next exact match is looked for: after the last match
        self.seen = seen
        """The streamed text up to its last complete line, as already looked at."""

    def step(self, line: str) -> None:
        """One complete streamed line: a line equal to a later original line jumps past it,
        any other stands in for one original line."""
        if self.passed >= len(self.original):
            return
        indices = self.at.get(line.strip(), []) if line.strip() else []
        match = bisect.bisect_left(indices, self.anchor)
        if match == len(indices):
            self.passed += 1
        else:
            self.anchor = indices[match] + 1
            self.passed = max(self.passed, self.anchor)

    def shown(self, streamed: str) -> Shown:
        """The text a streamed edit puts into the region: `streamed`, then the pending lines."""
        if not streamed.startswith(self.seen):
            self._restart("")
        end = streamed.rfind(self.newline)
        if end >= len(self.seen):
            for line in streamed[len(self.seen) : end].split(self.newline):
                self.step(line)
            self.seen = streamed[: end + len(self.newline)]
        if not streamed or self.passed >= len(self.original) or self.original == [""]:
            return Shown(streamed, len(streamed))
        if self._rest[0] != self.passed:
            self._rest = (self.passed, self.newline.join(self.original[self.passed :]))
        return Shown(streamed + self.newline + self._rest[1], len(streamed) + len(self.newline))


def passed_lines(original: list[str], streamed: list[str]) -> int:
    """How many original lines the complete streamed lines have passed."""
    pending = PendingLines(original)
    for line in streamed:
        pending.step(line)
    return pending.passed


def while_streaming(original: str, streamed: str, newline: str = "\n") -> Shown:
    """The text a streamed edit puts into the region: `streamed`, then the pending lines."""
    return PendingLines(original.split(newline), newline).shown(streamed)


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


class BufferWriter:
    """Puts the shaped text into the buffer: streamed, once at the end, or never."""

    def __init__(
        self, client: LanguageServer, encoding: str, document: Document, request: Request,
        apply: str,
    ) -> None:
        self.client = client
        """The server's side of the connection: sends applyEdit, knows the capabilities."""
        self.encoding = encoding
        self.document = document
        self.request = request
        self.apply = apply
        self.in_buffer: str | None = None
        self.streamed: str | None = None
        self.last = 0.0
        region = request.region
        newline = line_break(document.text)
        self.pending = PendingLines(document.text[region.start : region.end].split(newline),
                                    newline)

    def due(self, text: str) -> float | None:
        """Seconds until held-back text may go out as a streamed edit (None: none held)."""
        if self.apply != "stream" or not text or text == self.streamed:
            return None
        return max(0.001, EDIT_INTERVAL - (time.monotonic() - self.last))

    async def write(self, text: str) -> None:
        """Stream `text` unless the last edit went out less than EDIT_INTERVAL ago."""
        waited = time.monotonic() - self.last >= EDIT_INTERVAL
        if self.apply == "stream" and text and text != self.streamed and waited:
            shown = self.pending.shown(text)
            await self._edit(shown.text, shown.pending)
            self.streamed = text

    async def finish(self, text: str) -> None:
        if self.apply != "none" and text != self.in_buffer:
            await self._edit(text)

    async def _edit(self, text: str, pending_at: int | None = None) -> None:
        """Make the region read `text` with the smallest change to what the client last
        reported, once the user has paused; wait until the client echoes it. An edit the
        client refuses as stale is computed again against the newer text (the region
        followed the user's changes), and so is one a client applied at its stale range,
        once the text it overwrote is put back; only typing inside the region stops the
        request. `text[pending_at:]` is the original's pending rest, announced first."""
        request, region = self.request, self.request.region
        refusals: list[str] = []
        while len(refusals) < MAX_REFUSALS:
            await request.unless_stopped(self._user_paused())
            self.last = time.monotonic()
            if self.document.text[region.start : region.end] == text:
                self.in_buffer = text  # e.g. two streamed texts that show the same lines
                return
            version = self.document.version
            announce(self.client, request, self.document.lines, text, pending_at, self.encoding)
            refused = await self._send(self._change(text), leaves=text)
            if region.last_misplaced is not None:
                await self._put_back()
                refusals.append("the editor applied an edit where it no longer fitted")
                continue
            if not refused and self.document.text[region.start : region.end] == text:
                self.in_buffer = text
                return
            if not refused:  # e.g. applied at a stale range where it changed nothing: again
                refusals.append("the edit did not leave the region as sent")
                continue
            if not self.versioned:
                break  # an unversioned edit cannot be told apart from a stale one: stop
            if self.document.version == version:  # refused though nobody typed: counts
                refusals.append(refused)
        reason = refusals[-1] if refusals else refused
        request.cancel(f"the editor did not apply the edit: {reason}", by_server=True)
        raise request.cancelled()

    async def _send(self, change: types.TextEdit, leaves: str | None = None) -> str:
        """Send one edit and wait for its echo: "" once it came back, else why not. While it
        is in flight the region knows it as sent, to recognise it applied at a stale range;
        `leaves`: the region's text once it is applied (None for a put-back)."""
        request, region = self.request, self.request.region
        echoed = region.edit_sent(change.range, change.new_text, leaves)
        try:
            answer = await request.unless_stopped(
                self.client.workspace_apply_edit_async(
                    types.ApplyWorkspaceEditParams(self._workspace_edit(change))
                )
            )
            refused = "" if answer.applied else answer.failure_reason or "no reason given"
            if not refused:
                timeout = VERSIONED_ECHO_TIMEOUT if self.versioned else ECHO_TIMEOUT
                await asyncio.wait_for(echoed.wait(), timeout)
        except JsonRpcException as error:
            refused = str(error)
        except asyncio.TimeoutError:
            refused = "the editor did not report the applied edit back (didChange)"
        finally:
            region.edit_settled()
        if request.stopped:
            raise request.cancelled()
        return refused

    async def _put_back(self) -> None:
        """Undo the edits the client applied at stale ranges, newest first, each at once (no
        announcement: they only go to a client that applied a stale edit). A put-back the
        user's typing beats lands misplaced too and is put back in turn; the request stops if
        that does not settle."""
        request, region = self.request, self.request.region
        refused = ""
        for _ in range(MAX_REFUSALS):
            misplaced = region.last_misplaced
            if misplaced is None or refused:
                break
            start, end, overwritten = misplaced
            where = self.document.lines.range(start, end, self.encoding)
            refused = await self._send(types.TextEdit(where, overwritten))
        if region.last_misplaced is not None:
            request.cancel("the editor applied an edit where it no longer fitted, and it "
                           f"could not be undone: {refused or 'the user kept typing'}",
                           by_server=True)
            raise request.cancelled()

    @property
    def versioned(self) -> bool:
        """Whether the client takes `documentChanges`, so each edit names its version."""
        workspace = self.client.client_capabilities.workspace
        edit = workspace.workspace_edit if workspace else None
        return bool(edit and edit.document_changes)

    def _change(self, text: str) -> types.TextEdit:
        """The smallest change that makes the region read `text`, as the server sees the
        document now: the common beginning and end of old and new text stay untouched."""
        document, region = self.document, self.request.region
        old = document.text[region.start : region.end]
        head = common_prefix(old, text)
        tail = common_prefix(old[head:][::-1], text[head:][::-1])
        where = document.lines.range(region.start + head, region.end - tail, self.encoding)
        return types.TextEdit(where, text[head : len(text) - tail])

    def _workspace_edit(self, change: types.TextEdit) -> types.WorkspaceEdit:
        """`change` to the document, stamped with its version where the client takes that."""
        document = self.document
        if not self.versioned:
            return types.WorkspaceEdit(changes={document.uri: [change]})
        target = types.OptionalVersionedTextDocumentIdentifier(document.uri, document.version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(target, [change])])

    async def _user_paused(self) -> None:
        """Return once the user's last own change to the document is USER_PAUSE seconds old,
        so no edit is computed against text the user is still changing."""
        while (wait := self.document.last_user_change + USER_PAUSE - time.monotonic()) > 0:
            await asyncio.sleep(wait)


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common beginning of `a` and `b`."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # slices compare in C: O(n log n) in C beats a character loop in Python
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
