"""One refine or fix request, from its params to the final text in the buffer.

The flow, top to bottom: resolve the region → build the prompt → run a turn on the engine
thread (`adapters/model_host.py`) → stream its shaped text as `copyspec/chunk` notifications
and `workspace/applyEdit` calls (through the client port) → (fix only) check the attempt and,
on failure, send the errors as the next turn of the same conversation. It sees only its
`FlowContext`.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from copyspec_lsp.adapters import syntax
from copyspec_lsp.adapters.client import ChunkStream, Progress, live_figures
from copyspec_lsp.adapters.conversations import Conversation
from copyspec_lsp.adapters.documents import Document
from copyspec_lsp.adapters.gate import Pacer
from copyspec_lsp.adapters.model_host import EngineCall, ModelUnavailable
from copyspec_lsp.adapters.region_tracking import Region
from copyspec_lsp.adapters.remote import RemoteUnavailable
from copyspec_lsp.adapters.requests import Request, RequestError
from copyspec_lsp.flow import prompts
from copyspec_lsp.flow.check import CheckResult, run_check_command
from copyspec_lsp.flow.context import FlowContext
from copyspec_lsp.flow.hunks import region_hunks
from copyspec_lsp.flow.params import CONVERTER, RequestParams
from engine import prompt_format
from engine.config import SpecConfig
from engine.engine_thread import (
    HistoryTrimmed,
    JobCancelled,
    JobDone,
    JobFailed,
    QueuePosition,
    TextDelta,
)
from engine.session import PromptTooLongError
from engine.shaping import Shaper, line_break
from engine.stats import TurnStats

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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
class RefineFlow:
    """Runs one refine; `fix=True` adds the check-and-retry loop."""

    context: FlowContext
    params: RequestParams
    fix: bool
    msg_id: int | str | None = None
    """The JSON-RPC id of the request, for `$/cancelRequest`."""
    turns: list[Turn] = field(default_factory=list)
    stopped_early: str = ""
    """Why the fix loop ended before a check passed or maxTurns was reached."""
    original: str = ""
    """The region's text before the first turn: what the result's hunks compare against."""

    async def run(self) -> dict[str, Any]:
        context, params = self.context, self.params
        if context.model.state != "ready":
            await self._resolve()  # bad input fails at once, not after the model has loaded
            await context.model.wait(context.settings.load_timeout)
        document, start, end, instruction = await self._resolve()  # the text may have changed
        conversation = context.conversations.get_or_create(params.session, params.uri)
        for other in list(context.running):
            if other.overlaps(params.uri, start, end):
                other.cancel("superseded by a newer request for the same region", by_server=True)

        def touched() -> None:
            request.cancel("cancelled: the region was edited while the answer streamed",
                           by_server=True)

        region = context.documents.track(document, start, end, on_touched=touched)
        request = Request(params.uri, conversation.id, region, msg_id=self.msg_id)
        context.running.append(request)
        progress = context.client.progress(
            "CopySpec: " + ("fix" if self.fix else "refine"),
            lambda: request.cancel("cancelled from the progress bar"),
        )
        outcome = "cancelled"
        try:
            progress.start("waiting for the model")  # the turn starts before the bar exists
            ok = await self._turns(document, conversation, request, instruction, progress)
            outcome = "done"
            return self._result(document, conversation, request, ok)
        except PromptTooLongError as error:
            if not self.turns:
                raise
            outcome = "stopped early"  # the fix loop keeps the turns it has
            self.stopped_early = str(error)
            return self._result(document, conversation, request, False)
        finally:
            request.cancel("the request ended")
            context.running.remove(request)
            context.documents.untrack(region)
            progress.end(outcome)

    async def _resolve(self) -> tuple[Document, int, int, str]:
        """The document, the region's offsets and the instruction; RequestError for bad input.
        tree-sitter runs off the event loop; if the text changes meanwhile, it runs again."""
        while True:
            document = self._document()
            text = document.text
            start, end = await self._region(document)
            if document.text is text and self.context.documents.get(document.uri) is document:
                break
        where = first_lone_surrogate(text[start:end])
        if where is not None:
            line = text.count("\n", 0, start + where) + 1
            raise RequestError(f"the region has an unpaired surrogate at line {line}: "
                           "it cannot be encoded as UTF-8")
        return document, start, end, self._instruction(document, start, end)

    def _document(self) -> Document:
        document = self.context.documents.get(self.params.uri)
        if document is None:
            raise RequestError(f"unknown document {self.params.uri}: the client must open it first")
        return document

    async def _region(self, document: Document) -> tuple[int, int]:
        """The range as offsets; empty expands to the enclosing function/class/statement."""
        text = document.text
        try:
            start, end = document.lines.offsets(self.params.range, self.encoding)
        except ValueError as error:
            raise RequestError(f"the range is outside the document: {error}") from None
        if start == end:
            start, end = await asyncio.to_thread(
                syntax.enclosing_region, text, document.language_id, start
            )
        return syntax.widen(text, start, end)

    def _instruction(self, document: Document, start: int, end: int) -> str:
        """The user's instruction, with the diagnostics at the region as "Fix this error"."""
        first, last = document.lines.line_of(start), document.lines.line_of(end)
        diagnostics = self.params.diagnostics
        at_region = [
            d for d in diagnostics if d.range.start.line <= last and d.range.end.line >= first
        ] or diagnostics
        instruction = self.params.instruction.strip()
        if not self.fix and not instruction:
            raise RequestError("the instruction is empty: say what should change")
        if self.fix:
            instruction = prompts.fix_instruction(at_region, first, instruction)
        elif at_region:
            instruction += "\n" + prompts.fix_instruction(at_region, first)
        if not instruction:
            raise RequestError("nothing to fix: no diagnostics at the range and no instruction")
        return instruction

    @property
    def encoding(self) -> str:
        return self.context.documents.encoding

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
        original = self.original = document.text[region.start : region.end]
        shaper = Shaper.for_region(original, line_break(document.text))
        code = shaper.region
        if conversation.history and conversation.last_code == code:
            message = instruction
        else:
            message = prompt_format.edit_request(code, instruction, document.language_id)
        max_turns = self.params.max_turns if self.fix else 1
        for _ in range(max_turns):
            text, stats = await self._stream_turn(
                document, conversation, request, message, shaper, progress
            )
            turn = Turn(message, text, stats)
            self.turns.append(turn)
            conversation.turns += 1
            conversation.last_code = prompt_format.dedent(text)[0]
            if not self.fix:
                return True
            turn.check = await request.unless_stopped(self._check(document, region, text))
            if request.stopped:
                raise request.cancelled()
            if turn.check.ok:
                return True
            message = prompt_format.failure_message(turn.check.errors)
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
        context = self.context
        settings, model = context.settings, context.model
        max_new = self.params.max_new_tokens or settings.max_new_tokens
        method = "copy+draft" if model.draft is not None else "copy"
        spec = SpecConfig(method, gamma=settings.gamma, block=settings.block,
                          cost_aware=settings.cost_aware)
        pacer = context.gate.pacer() if context.gate is not None else None
        predict = settings.prediction != "off"  # `auto` is on in process: it is our engine
        call = EngineCall(model, conversation, message, max_new, spec, model.generation, pacer,
                          predict)
        job = request.job = model.turn_job(call, request.uri)
        if request.stopped:
            raise request.cancelled()
        place = model.submit(job)
        if place:
            progress.report(f"queued: {place} ahead", force=True)
        writer = context.client.writer(document, request, self.params.apply)
        stats = TurnStats()
        stream, sent = shaper.stream(), ChunkStream()
        shown = ""
        started = time.perf_counter()
        while True:
            try:
                event = await asyncio.wait_for(job.events.get(), writer.due(shown))
            except asyncio.TimeoutError:
                await writer.write(shown)
                await held(pacer, request, bool(shown) and writer.due(shown) is None)
                continue
            if isinstance(event, JobCancelled) or request.stopped:
                raise request.cancelled()
            match event:
                case JobFailed(error=error):
                    conversation.history = False
                    if isinstance(error, (PromptTooLongError, RemoteUnavailable,
                                          ModelUnavailable)):
                        raise error
                    raise ModelFailed(f"the model failed: {error}") from error
                case QueuePosition(ahead=ahead):
                    progress.report(f"queued: {ahead} ahead" if ahead else "generating",
                                    force=True)
                    started = time.perf_counter()
                    continue
                case JobDone(result=result):
                    break
                case HistoryTrimmed(turns=turns):
                    conversation.trimmed_turns += turns
                    continue
                case TextDelta(text=delta, stats=step_stats):
                    stats = step_stats or stats
                    text = stream.push(delta)
                    if text != shown:
                        await progress.opened()  # the bar begins before the first edit
                        context.client.chunk(conversation.id, request.uri, sent.change(text),
                                             stats, conversation.trimmed_turns)
                        shown = text
                        progress.report(*live_figures(stats, max_new, started))
                        await writer.write(shown)
                    await held(pacer, request, bool(shown) and writer.due(shown) is None)
                    if pacer is not None:
                        pacer.step_handled()
        conversation.history = True
        await progress.opened()
        # A turn quicker than the report interval still shows its figures once.
        progress.report(*live_figures(result.stats, max_new, started), force=True)
        final = shaper(result.text, final=True)
        context.client.chunk(conversation.id, request.uri, sent.change(final), result.stats,
                             conversation.trimmed_turns, final_text=final)
        await writer.finish(final)
        await held(pacer, request, True)
        return final, {**result.stats.to_dict(), "trimmed_turns": conversation.trimmed_turns}

    async def _check(self, document: Document, region: Region, text: str) -> CheckResult:
        """Syntax errors in the attempt, then the configured check command, if any."""
        whole = document.text[: region.start] + text + document.text[region.end :]
        end = region.start + len(text)
        errors = await asyncio.to_thread(  # off the loop: big documents parse for long
            syntax.syntax_errors, whole, document.language_id, region.start, end
        )
        if errors:
            return CheckResult(False, errors)
        settings = self.context.settings
        if not settings.check_command:
            return CheckResult(True)
        return await run_check_command(settings.check_command, whole, document.uri,
                                       self.context.root, settings.check_timeout)

    def _result(
        self, document: Document, conversation: Conversation, request: Request, ok: bool
    ) -> dict[str, Any]:
        region = request.region
        final = self.turns[-1].text
        view = document.lines
        if self.params.apply == "none":
            view = view.replaced(region.start, region.end, final)
        where = view.range(region.start, region.start + len(final), self.encoding)
        conversation.range = where
        result: dict[str, Any] = {
            "session": conversation.id,
            "text": final,
            "range": CONVERTER.unstructure(where),
            "stats": self.turns[-1].stats,
        }
        if self.params.apply == "none":  # what a previewing client replaces on Accept
            replaced = document.lines.range(region.start, region.end, self.encoding)
            result["replacedRange"] = CONVERTER.unstructure(replaced)
        in_document = self.original if self.params.apply == "none" else final
        hunks = region_hunks(document.lines, region.start, region.start + len(in_document),
                             self.original, final)
        result["hunks"] = [hunk.to_dict() for hunk in hunks]
        if self.fix:
            result["turns"] = [turn.to_dict() for turn in self.turns]
            result["ok"] = ok
            if self.stopped_early:
                result["stoppedEarly"] = self.stopped_early
        return result


class ModelFailed(RuntimeError):
    """The model raised while answering (its message says what went wrong)."""


async def held(pacer: Pacer | None, request: Request, up_to_date: bool) -> None:
    """Under the test gate, hold while the client is up to date with what was shown."""
    if pacer is not None and up_to_date:
        await pacer.hold(request)
        if request.stopped:
            raise request.cancelled()


def first_lone_surrogate(text: str) -> int | None:
    """Offset of the first unpaired UTF-16 surrogate (JSON can carry one; UTF-8 cannot)."""
    found = LONE_SURROGATE.search(text)
    return found.start() if found else None
