"""The loaded model's life cycle: load once in the background, wait for it, reload, free."""

from __future__ import annotations

import asyncio
from typing import Any

from copyspec_lsp.remote import RemoteModel
from copyspec_lsp.settings import Settings
from copyspec_lsp.worker import EngineWorker, Job
from engine.config import SpecConfig
from engine.loading import REMOTE_CODE_WARNING, LoadedModel, load_model, use_cpu_threads
from engine.paths import ModelLoadError, default_model_path
from engine.turn import draft_state, speculation_notice


class ModelUnavailable(RuntimeError):
    """The model failed to load, or is still loading after the timeout."""


class ModelHost:
    """Loads on the engine thread, so loading queues ahead of every job like any other."""

    def __init__(self, worker: EngineWorker) -> None:
        self.worker = worker
        self.state = "loading"
        self.error: str | None = None
        self.lm: LoadedModel | None = None
        self.draft: LoadedModel | None = None
        self.path = ""
        self.generation = 0
        """Bumped on every load, so sessions made with an older model can be told apart."""
        self._ready: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()

    async def load(self, settings: Settings, generation: int | None = None) -> LoadedModel | None:
        """Load the configured model (the built-in one when none is set) and the draft model,
        if one is set; raises on failure. Of overlapping loads, the last one wins (the others
        return None). `generation`: the load `begin_load` already marked, if any."""
        if generation is None:
            generation = self.begin_load(settings)
        job = Job(lambda _: load_models(settings))
        self.worker.submit(job)
        while (event := await job.events.get()).kind not in ("done", "error"):
            pass
        if generation != self.generation:
            return None  # a newer configuration is loading; its load reports the outcome
        if event.kind == "error":
            self.state, self.error = "error", str(event.value)
            self._ready.set_exception(ModelUnavailable(f"the model failed to load: {event.value}"))
            self._ready.exception()  # mark retrieved: no "never retrieved" warning at exit
            raise ModelUnavailable(self.error)
        self.state, (self.lm, self.draft) = "ready", event.value
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
    if not settings.draft_model:
        return lm, None
    try:
        draft = load_model(
            settings.draft_model, settings.device, settings.dtype, settings.trust_remote_code
        )
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
