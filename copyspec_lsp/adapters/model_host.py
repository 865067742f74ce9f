"""The model host: the model's life cycle (load once in the background, wait for it, reload,
free) and what runs on the engine thread for a turn (`engine_turn`).

Everything here that touches the model or a chat session runs on the engine thread
(`engine.engine_thread`); the event loop only submits jobs and reads their events."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from copyspec_lsp.adapters.conversations import Conversation
from copyspec_lsp.adapters.gate import Pacer
from copyspec_lsp.adapters.remote import RemoteModel, RemoteSession
from copyspec_lsp.adapters.scripted import ScriptedTurn, scripted_answer
from copyspec_lsp.adapters.settings import Settings
from engine import prompt_format
from engine.compiled import use_compile
from engine.config import SpecConfig
from engine.engine_thread import (
    EngineThread,
    HistoryTrimmed,
    Job,
    JobDone,
    JobFailed,
    TextDelta,
)
from engine.loading import REMOTE_CODE_WARNING, LoadedModel, load_model, use_cpu_threads
from engine.paths import ModelLoadError, default_model_path
from engine.session import ChatSession, PromptTooLongError, Session, TurnResult
from engine.stats import TurnStats
from engine.turn import draft_state, speculation_notice


class ModelUnavailable(RuntimeError):
    """The model failed to load, or is still loading after the timeout."""


class ModelHost:
    """Loads on the engine thread, so loading queues ahead of every job like any other."""

    def __init__(self, worker: EngineThread) -> None:
        self.worker = worker
        self.state = "loading"
        self.error: str | None = None
        self.lm: LoadedModel | None = None
        self.draft: LoadedModel | None = None
        self.path = ""
        self.generation = 0
        """Bumped on every load, so sessions made with an older model can be told apart."""
        self.last_stats: dict[str, Any] | None = None
        """The last turn's figures, for `copyspec/status` (recorded even when cancelled)."""
        self._ready: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()

    async def load(self, settings: Settings, generation: int | None = None) -> LoadedModel | None:
        """Load the configured model (the default one when none is set) and the draft model,
        if one is set; raises on failure. Of overlapping loads, the last one wins (the others
        return None). `generation`: the load `begin_load` already marked, if any."""
        if generation is None:
            generation = self.begin_load(settings)
        job = Job(lambda _: load_models(settings))
        self.worker.submit(job)
        while not isinstance(event := await job.events.get(), (JobDone, JobFailed)):
            pass
        if generation != self.generation:
            return None  # a newer configuration is loading; its load reports the outcome
        if isinstance(event, JobFailed):
            self.state, self.error = "error", str(event.error)
            self._ready.set_exception(ModelUnavailable(f"the model failed to load: {event.error}"))
            self._ready.exception()  # mark retrieved: no "never retrieved" warning at exit
            raise ModelUnavailable(self.error)
        self.state, (self.lm, self.draft) = "ready", event.result
        self._ready.set_result(self.lm)
        return self.lm

    def begin_load(self, settings: Settings) -> int:
        """Mark a load as started (at once, so a status request right after the settings
        changed already says "loading"); returns its generation."""
        if self._ready.done():
            self._ready = asyncio.get_running_loop().create_future()
        self.state, self.error, self.lm, self.draft = "loading", None, None, None
        self.path = settings.model or str(default_model_path())
        self.generation += 1
        return self.generation

    async def wait(self, timeout: float) -> LoadedModel:
        """The model once loaded; a load error or `timeout` seconds of loading raise."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            raise ModelUnavailable(
                f"the model is still loading after {timeout:g} s (setting loadTimeout)"
            ) from None

    def turn_job(self, call: EngineCall, uri: str) -> Job:
        """A job that runs one turn of `call` on the engine thread (not yet submitted)."""
        return Job(lambda job: engine_turn(job, call), uri=uri, session=call.conversation.id,
                   on_result=self._record_stats)

    def submit(self, job: Job) -> int:
        """Queue `job` on the engine thread; its place in the queue (0: it runs next)."""
        return self.worker.submit(job)

    def _record_stats(self, result: TurnResult) -> None:
        self.last_stats = result.stats.to_dict()

    def describe(self) -> dict[str, Any]:
        """Path, device and dtype of the loaded model (empty strings while none is loaded)."""
        lm = self.lm
        return {
            "model": lm.path if lm else self.path,
            "device": str(lm.device) if lm else "",
            "dtype": str(lm.dtype).removeprefix("torch.") if lm else "",
            "draftModel": self.draft.path if self.draft else None,
        }

    def free(self) -> None:
        """Drop the model (after the worker stopped) so its memory can be reclaimed."""
        self.lm, self.draft, self.state = None, None, "error"
        self.error = "the server is shutting down"
        if not self._ready.done():
            self._ready.set_exception(ModelUnavailable(self.error))
            self._ready.exception()


def load_models(settings: Settings) -> tuple[LoadedModel | RemoteModel, LoadedModel | None]:
    """On the engine thread: the target model and, when configured, a draft model checked to
    share its vocabulary and device (so a mismatch fails at load time, not mid-request)."""
    if settings.server:
        return RemoteModel(settings.server, prediction=settings.prediction), None
    lm = load_model(settings.model, settings.device, settings.dtype, settings.trust_remote_code)
    use_cpu_threads(settings.threads, lm)
    use_compile(lm.model, settings.compile)
    if not settings.draft_model:
        return lm, None
    try:
        draft = load_model(
            settings.draft_model, settings.device, settings.dtype, settings.trust_remote_code
        )
        use_compile(draft.model, settings.compile)
        draft_state(lm, SpecConfig(method="copy+draft"), draft)
    except (ModelLoadError, ValueError) as error:
        raise ModelLoadError(f"draft model: {error}") from error
    return lm, draft


def load_notices(lm: LoadedModel, settings: Settings) -> list[str]:
    """What the user must be told once the model is loaded: remote code ran, or the model's
    cache cannot speculate (the server's requests copy, so that is the method checked)."""
    notices = [REMOTE_CODE_WARNING] if settings.trust_remote_code else []
    notice = speculation_notice(lm, SpecConfig(method="copy"))
    return [*notices, notice] if notice else notices


@dataclass(frozen=True)
class EngineCall:
    """Everything one engine turn needs: the narrow seam between a request and the model."""

    model: ModelHost
    conversation: Conversation
    message: str
    max_new_tokens: int
    spec: SpecConfig
    generation: int
    pacer: Pacer | None = None
    """Only under the test gate (`gate.py`): holds the engine while its request is held."""
    predict: bool = True
    """Whether an in-process turn gets the code being rewritten as its prediction (the
    `prediction` setting; a remote session decides for itself what it sends)."""


def engine_turn(job: Job, call: EngineCall) -> TurnResult:
    """On the engine thread: one turn of the conversation, streaming its raw text. When the
    history no longer fits the context window, its oldest turns go (counted in the stats as
    `trimmed_turns`); the conversation's chat session is only ever touched here."""
    lm, conversation = call.model.lm, call.conversation
    if lm is None or call.model.generation != call.generation:
        raise ModelUnavailable("the model was reloaded or freed while this request waited")
    if conversation.chat is None or conversation.chat.lm is not lm:
        conversation.chat = open_session(
            lm, call.spec, prompt_format.SYSTEM_PROMPT, call.model.draft, conversation.id
        )
    chat: ChatSession = conversation.chat
    script = scripted_answer()  # test-only (scripted.py): None outside tests
    send: Callable[..., TurnResult]
    if script is not None:
        send = ScriptedTurn(chat, script).send
    elif call.predict and isinstance(chat, Session):
        send = partial(chat.send, prediction=chat.expected(call.message))
    else:
        send = chat.send
    def on_text(delta: str, stats: TurnStats) -> None:
        job.post(TextDelta(delta, copy.copy(stats)))
        if call.pacer is not None:
            call.pacer.after_step(job.stop)

    trimmed = 0
    try:
        while True:
            try:
                result = send(
                    call.message, call.max_new_tokens, stop_event=job.stop, on_text=on_text
                )
                break
            except PromptTooLongError:
                if not trim_oldest_turn(chat.messages):
                    raise
                trimmed += 1
    except Exception:
        conversation.chat = None  # its cache may be half-updated: the next turn starts afresh
        raise
    if trimmed:
        job.post(HistoryTrimmed(trimmed))
    return result


def open_session(
    lm: LoadedModel | RemoteModel,
    spec: SpecConfig,
    system: str | None,
    draft: LoadedModel | None,
    session_id: str,
) -> ChatSession:
    """The chat session a conversation sends its turns to: remote when `lm` is a
    `RemoteModel`, else in process."""
    if isinstance(lm, RemoteModel):
        return RemoteSession(lm, session_id, system)
    return Session(lm, spec, system=system, draft=draft)


def trim_oldest_turn(messages: list[dict[str, str]]) -> bool:
    """Drop the oldest user/assistant pair after the system turn; False when none is left."""
    first = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) - first < 2:
        return False
    del messages[first : first + 2]
    return True
