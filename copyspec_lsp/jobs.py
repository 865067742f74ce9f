"""One refine or fix request, from its params to the final text in the buffer.

The flow, top to bottom: resolve the region → build the prompt → run a turn on the engine
thread → stream its shaped text as `copyspec/chunk` notifications and `workspace/applyEdit`
calls (`edits.py`) → (fix only) check the attempt and, on failure, send the errors as the
next turn of the same session.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from copyspec_lsp import prompts, regions
from copyspec_lsp.answers import Shaper
from copyspec_lsp.check import CheckResult, run_check_command
from copyspec_lsp.documents import Document, Region
from copyspec_lsp.edits import BufferWriter
from copyspec_lsp.params import JobParams
from copyspec_lsp.positions import range_offsets, to_range
from copyspec_lsp.progress import Progress
from copyspec_lsp.requests import JobError, Request
from copyspec_lsp.sessions import Conversation
from copyspec_lsp.worker import Job
from engine.config import SpecConfig
from engine.session import Session, TurnResult
from engine.stats import TurnStats

if TYPE_CHECKING:
    from copyspec_lsp.service import Service


@dataclass
class Turn:
    """One model answer and, in the fix loop, what its check said."""

    instruction: str
    text: str
    stats: dict[str, Any]
    check: CheckResult | None = None

    def to_dict(self) -> dict[str, Any]:
        turn: dict[str, Any] = {"instruction": self.instruction, "text": self.text}
        turn["stats"] = self.stats
        if self.check is not None:
            turn["check"] = self.check.to_dict()
        return turn


@dataclass
class Refinement:
    """Runs one request; `fix=True` adds the check-and-retry loop."""

    service: Service
    params: JobParams
    fix: bool
    turns: list[Turn] = field(default_factory=list)

    async def run(self) -> dict[str, Any]:
        service, params = self.service, self.params
        self._resolve()  # bad input fails at once, not after the model has loaded
        await service.model.wait(service.settings.load_timeout)
        document, start, end, instruction = self._resolve()  # the text may have changed since
        conversation = service.sessions.get_or_create(params.session, params.uri)
        for other in list(service.requests):
            if other.overlaps(params.uri, start, end):
                other.cancel("superseded by a newer request for the same region", by_server=True)
        region = service.documents.track(document, start, end)
        request = Request(params.uri, conversation.id, region)
        region.on_touched = lambda: request.cancel(
            "cancelled: the region was edited while the answer streamed", by_server=True
        )
        service.requests.append(request)
        progress = Progress(service.server, "CopySpec: " + ("fix" if self.fix else "refine"),
                            lambda: request.cancel("cancelled from the progress bar"))
        outcome = "cancelled"
        try:
            await progress.begin("waiting for the model")
            ok = await self._turns(document, conversation, request, instruction, progress)
            outcome = "done"
            return self._result(document, conversation, request, ok)
        finally:
            request.cancel("the request ended")
            service.requests.remove(request)
            service.documents.untrack(region)
            progress.end(outcome)

    def _resolve(self) -> tuple[Document, int, int, str]:
        """The document, the region's offsets and the instruction; JobError for bad input."""
        document = self._document()
        start, end = self._region(document)
        return document, start, end, self._instruction(document, start, end)

    def _document(self) -> Document:
        document = self.service.documents.get(self.params.uri)
        if document is None:
            raise JobError(f"unknown document {self.params.uri}: the client must open it first")
        return document

    def _region(self, document: Document) -> tuple[int, int]:
        """The range as offsets; empty expands to the enclosing function/class/statement."""
        try:
            start, end = range_offsets(document.text, self.params.range, self.encoding)
        except ValueError as error:
            raise JobError(f"the range is outside the document: {error}") from None
        if start == end:
            start, end = regions.enclosing_region(document.text, document.language_id, start)
        return widen(document.text, start, end)

    def _instruction(self, document: Document, start: int, end: int) -> str:
        """The user's instruction, with the diagnostics at the region as "Fix this error"."""
        first, last = document.text.count("\n", 0, start), document.text.count("\n", 0, end)
        diagnostics = self.params.diagnostics
        at_region = [
            d for d in diagnostics if d.range.start.line <= last and d.range.end.line >= first
        ] or diagnostics
        instruction = self.params.instruction.strip()
        if not self.fix and not instruction:
            raise JobError("the instruction is empty: say what should change")
        if self.fix:
            instruction = prompts.fix_instruction(at_region, first, instruction)
        elif at_region:
            instruction += "\n" + prompts.fix_instruction(at_region, first)
        if not instruction:
            raise JobError("nothing to fix: no diagnostics at the range and no instruction")
        return instruction

    @property
    def encoding(self) -> str:
        return self.service.documents.encoding

    async def _turns(
        self,
        document: Document,
        conversation: Conversation,
        request: Request,
        instruction: str,
        progress: Progress,
    ) -> bool:
        """Ask, stream, (fix) check; returns whether the last check passed (refine: True)."""
        region = request.region
        code, indent = prompts.dedent(document.text[region.start : region.end])
        if conversation.engine is not None and conversation.last_code == code:
            message = instruction
        else:
            message = prompts.edit_request(code, instruction, document.language_id)
        shaper = Shaper(indent, "\r\n" if "\r\n" in document.text else "\n")
        max_turns = self.params.max_turns if self.fix else 1
        for _ in range(max_turns):
            text, stats = await self._stream_turn(
                document, conversation, request, message, shaper, progress
            )
            turn = Turn(message, text, stats)
            self.turns.append(turn)
            conversation.turns += 1
            conversation.last_code = prompts.dedent(text)[0]
            if not self.fix:
                return True
            turn.check = await self._check(document, region, text)
            if turn.check.ok:
                return True
            message = prompts.failure_message(turn.check.errors)
        return False

    async def _stream_turn(
        self,
        document: Document,
        conversation: Conversation,
        request: Request,
        message: str,
        shaper: Shaper,
        progress: Progress,
    ) -> tuple[str, dict[str, Any]]:
        service = self.service
        settings = service.settings
        max_new = self.params.max_new_tokens or settings.max_new_tokens
        method = "copy+draft" if service.model.draft is not None else "copy"
        spec = SpecConfig(method, gamma=settings.gamma, block=settings.block)
        generation = service.model.generation
        job = Job(
            lambda job: engine_turn(job, service, conversation, message, max_new, spec, generation),
            uri=request.uri,
            session=conversation.id,
        )
        request.job = job
        if request.stopped:
            raise request.cancelled()
        place = service.worker.submit(job)
        if place:
            progress.report(f"queued: {place} ahead", force=True)
        writer = BufferWriter(service, document, request, self.params.apply)
        stats: dict[str, Any] = {}
        shown = ""
        started = time.perf_counter()
        while True:
            try:
                event = await asyncio.wait_for(job.events.get(), writer.due(shown))
            except asyncio.TimeoutError:
                await writer.write(shown)
                continue
            if event.kind == "cancelled":
                raise request.cancelled()
            if event.kind == "error":
                raise event.value
            if event.kind == "position":
                progress.report(f"queued: {event.value} ahead" if event.value else "generating",
                                force=True)
                started = time.perf_counter()
                continue
            if event.kind == "done":
                break
            stats = event.stats or stats
            text = shaper(event.value)
            if text != shown:
                delta = text[len(shown):] if text.startswith(shown) else ""
                service.notify_chunk(conversation.id, request.uri, delta, text, stats)
                shown = text
                progress.report(*live_figures(stats, max_new, started))
                await writer.write(shown)
        result = event.value
        stats = result.stats.to_dict()
        # A turn quicker than the report interval still shows its figures once.
        progress.report(*live_figures(stats, max_new, started), force=True)
        final = shaper(result.text)
        if final != shown:
            service.notify_chunk(conversation.id, request.uri, "", final, stats)
        await writer.finish(final)
        return final, stats

    async def _check(self, document: Document, region: Region, text: str) -> CheckResult:
        """Syntax errors in the attempt, then the configured check command, if any."""
        whole = document.text[: region.start] + text + document.text[region.end :]
        end = region.start + len(text)
        errors = regions.syntax_errors(whole, document.language_id, region.start, end)
        if errors:
            return CheckResult(False, errors)
        command = self.service.settings.check_command
        if not command:
            return CheckResult(True)
        timeout = self.service.settings.check_timeout
        name = file_name(document.uri)
        return await run_check_command(command, whole, name, self.service.root, timeout)

    def _result(
        self, document: Document, conversation: Conversation, request: Request, ok: bool
    ) -> dict[str, Any]:
        region = request.region
        final = self.turns[-1].text
        if self.params.apply == "none":
            view = document.text[: region.start] + final + document.text[region.end :]
        else:
            view = document.text
        where = to_range(view, region.start, region.start + len(final), self.encoding)
        conversation.range = where
        result: dict[str, Any] = {
            "session": conversation.id,
            "text": final,
            "range": self.service.converter.unstructure(where),
            "stats": self.turns[-1].stats,
        }
        if self.params.apply == "none":  # what a previewing client replaces on Accept
            replaced = to_range(document.text, region.start, region.end, self.encoding)
            result["replacedRange"] = self.service.converter.unstructure(replaced)
        if self.fix:
            result["turns"] = [turn.to_dict() for turn in self.turns]
            result["ok"] = ok
        return result


def engine_turn(
    job: Job,
    service: Service,
    conversation: Conversation,
    message: str,
    max_new_tokens: int,
    spec: SpecConfig,
    generation: int,
) -> TurnResult:
    """On the engine thread: one turn of the conversation, streaming its raw text."""
    lm = service.model.lm
    if lm is None or service.model.generation != generation:
        raise RuntimeError("the model was reloaded or freed while this request waited")
    if conversation.engine is None or conversation.engine.lm is not lm:
        conversation.engine = Session(
            lm, spec, system=prompts.SYSTEM_PROMPT, draft=service.model.draft
        )
    pieces: list[str] = []

    def on_text(delta: str, stats: TurnStats) -> None:
        pieces.append(delta)
        job.post("text", "".join(pieces), stats.to_dict())

    try:
        result = conversation.engine.send(
            message, max_new_tokens, stop_event=job.stop, on_text=on_text
        )
    except Exception:
        conversation.engine = None  # its cache may be half-updated: the next turn starts afresh
        raise
    # recorded even when cancelled, so `copyspec/status` shows where the model stopped
    assert job.loop is not None
    job.loop.call_soon_threadsafe(setattr, service, "last_stats", result.stats.to_dict())
    return result


def live_figures(stats: dict[str, Any], max_new_tokens: int, started: float) -> tuple[str, int]:
    """Progress text and percentage while decoding: the engine totals `new_tokens` only at
    the end of a turn, so tokens so far are counted as passes plus accepted proposals."""
    tokens = stats["forward_passes"] + stats["copied_tokens"] + stats["drafted_tokens"]
    seconds = time.perf_counter() - started - stats["prefill_seconds"]
    copied = stats.get("copied_tokens", 0) / tokens if tokens else 0.0
    speed = f"{tokens / seconds:.0f} tok/s · " if seconds > 0 else ""
    return f"{speed}{copied:.0%} copied", min(100, round(100 * tokens / max_new_tokens))


def widen(text: str, start: int, end: int) -> tuple[int, int]:
    """Whole lines where the range starts after indentation; no trailing line breaks."""
    line_start = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
    if not text[line_start:start].strip(" \t"):
        start = line_start
    while end > start and text[end - 1] in "\r\n":
        end -= 1
    return start, end


def file_name(uri: str) -> str:
    """The document's file name, for the check command's temp copy."""
    return unquote(urlparse(uri).path).rsplit("/", 1)[-1] or "document"
