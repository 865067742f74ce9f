"""Open documents, kept in step with incremental `didChange`; each moves the regions being
rewritten in it (`region_tracking.py`).

A change that does not fit the server's copy (a range outside it, a version older than its
own) means the copy no longer matches the editor's: the document is then dropped as out of
sync until the client sends its whole text again (didOpen, or a full-text didChange).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lsprotocol import types

from copyspec_lsp.adapters.line_index import LineIndex, PositionError
from copyspec_lsp.adapters.region_tracking import Region
from engine.shaping import line_break as line_break  # a document's line-break style: one rule


class UnknownDocument(KeyError):
    """A change for a document the client never opened."""

    def __str__(self) -> str:
        return f"{self.args[0]} is not open"


class ChangeRejected(ValueError):
    """A change that does not fit the document as the server has it: applied, it would leave
    the server's text other than the editor's. The message says why, for a person."""


@dataclass
class Document:
    """One open text document, as the server sees it now."""

    uri: str
    language_id: str
    version: int
    """The version the client last reported: streamed edits are stamped with it."""
    lines: LineIndex
    """The text as the client last reported it, with its line starts."""
    regions: list[Region] = field(default_factory=list)
    last_user_change: float = 0.0
    """`time.monotonic()` of the last change that was not the echo of a server edit."""

    @property
    def text(self) -> str:
        return self.lines.text


class Documents:
    """The open documents and the position encoding their ranges use."""

    def __init__(self) -> None:
        self.encoding = "utf-16"
        self._open: dict[str, Document] = {}
        self._out_of_sync: dict[str, tuple[str, str]] = {}
        """Documents dropped as out of sync: uri → (why, language id)."""

    def open(self, item: types.TextDocumentItem) -> None:
        self._out_of_sync.pop(item.uri, None)
        self._open[item.uri] = Document(item.uri, item.language_id, item.version,
                                        LineIndex(item.text))

    def close(self, uri: str) -> None:
        self._out_of_sync.pop(uri, None)
        document = self._open.pop(uri, None)
        for region in document.regions if document else []:
            region.follow(document.text, 0, len(document.text), "")

    def get(self, uri: str) -> Document | None:
        """The open document; None when it is not open or is out of sync."""
        return self._open.get(uri)

    def out_of_sync(self, uri: str) -> str | None:
        """Why `uri` was dropped as out of sync; None when it was not."""
        lost = self._out_of_sync.get(uri)
        return lost[0] if lost else None

    def drop_out_of_sync(self, uri: str, why: str) -> bool:
        """Forget the text of `uri`, which no longer matches the editor's, until a didOpen or
        a full-text didChange; False when it was not open."""
        document = self._open.get(uri)
        if document is None:
            return False
        self.close(uri)
        self._out_of_sync[uri] = (why, document.language_id)
        return True

    def change(self, params: types.DidChangeTextDocumentParams) -> None:
        """Apply each change in order, moving or touching the tracked regions. A document out
        of sync takes only a full text (and the changes after it); ChangeRejected for a change
        that does not fit."""
        uri, version = params.text_document.uri, params.text_document.version
        changes = list(params.content_changes)
        whole = [i for i, change in enumerate(changes)
                 if isinstance(change, types.TextDocumentContentChangeWholeDocument)]
        if uri in self._out_of_sync:
            if not whole:
                return
            language_id = self._out_of_sync.pop(uri)[1]
            self._open[uri] = Document(uri, language_id, version,
                                       LineIndex(changes[whole[-1]].text))
            changes = changes[whole[-1] + 1 :]
        document = self._open.get(uri)
        if document is None:
            raise UnknownDocument(uri)
        if version < document.version and not whole:
            raise ChangeRejected(f"a change came with version {version}, older than the "
                                 f"document's version {document.version}")
        document.version = version
        for change in changes:
            before = document.text
            where = None
            if isinstance(change, types.TextDocumentContentChangeWholeDocument):
                document.lines = LineIndex(change.text)
                start, end = 0, len(before)
            else:
                where = change.range
                try:
                    start, end = document.lines.offsets(where, self.encoding)
                except PositionError as error:
                    raise ChangeRejected(f"a change did not fit the document: {error}") from None
                document.lines = document.lines.replaced(start, end, change.text)
            echoes = [region.follow(before, start, end, change.text, where)
                      for region in list(document.regions)]
            if not any(echoes):
                document.last_user_change = time.monotonic()

    def track(
        self, document: Document, start: int, end: int, on_touched: Callable[[], None]
    ) -> Region:
        """Follow [start, end) of `document`; `on_touched` runs once if the user edits in it."""
        region = Region(document.uri, start, end, on_touched=on_touched)
        document.regions.append(region)
        return region

    def untrack(self, region: Region) -> None:
        """Stop following `region` (and drop its callback: no region ↔ request cycle keeps a
        finished request, and its KV cache, alive for the GC)."""
        region.on_touched = None
        document = self._open.get(region.uri)
        if document is not None and region in document.regions:
            document.regions.remove(region)

