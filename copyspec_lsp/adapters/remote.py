"""A remote model: any OpenAI-compatible chat-completions server (our pool, vLLM, others).

`RemoteSession` is a chat session (`engine.session.ChatSession`: `send`, `messages`) like
the engine's `Session`, so a job runs a remote turn exactly like a local one: it sends the whole
conversation with `stream: true` and an `x-session-id` header, turns the server-sent events
into `on_text` calls, and closes the stream when the stop event is set. It runs on the engine
thread.

Stats come from the finishing chunk when the server sends ours (`copyspec.stats`), else from
OpenAI `usage` (vLLM reports prefix-cache hits as `cached_tokens`), else from counting: one
streamed chunk per server step, as vLLM streams.

Servers that take OpenAI's Predicted Outputs get the code being rewritten as `prediction`
(the `prediction` setting says which: docs/predicted-outputs.md); it speeds the answer up and
never changes it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

import httpx

from copyspec_lsp.adapters.settings import Settings
from engine.config import SamplingConfig
from engine.expected import expected_answer
from engine.serve.protocol import OWNER, PREDICTION
from engine.session import PromptTooLongError, TurnResult
from engine.stats import TurnStats

SESSION_HEADER = "x-session-id"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0
"""Seconds without a byte from the server before a turn fails (a long prefill is quiet)."""
RETRIES = 2
RETRY_DELAY = 1.0
"""Seconds before the first retry of a turn that failed before any text (then 2x, 3x…)."""
CONTEXT_WORDS = ("context length", "context window", "maximum context", "too long")
"""How servers word "the prompt does not fit" in a 400 (ours, vLLM, OpenAI)."""
PREDICTION_HOSTS = ("api.openai.com",)
"""Other servers known to take `prediction` (ours are recognised by their model list)."""


class RemoteUnavailable(RuntimeError):
    """The server could not be reached, or refused or failed the turn (answered like a model
    that failed to load: the user must fix the server or the `server` setting)."""


@dataclass(eq=False)
class RemoteModel:
    """Where the model lives; stands in for a `LoadedModel` when the `server` setting is set."""

    url: str
    model: str | None = None
    """Model name to request; None asks the server (`GET /v1/models`) on first use."""
    device: str = "remote"
    dtype: str = "remote"
    prediction: str = Settings.prediction
    """When turns send the code being rewritten as `prediction` (the setting's modes)."""

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.client = httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))
        self._lock = threading.Lock()
        self._listed: list[dict[str, Any]] | None = None

    @property
    def path(self) -> str:
        return self.url

    def model_name(self) -> str:
        """The model to ask for: the configured one, else the server's first."""
        if self.model is None:
            self.model = str(self._models()[0]["id"])
        return self.model

    def takes_prediction(self) -> bool:
        """Whether turns send `prediction`: `on` always, `off` never, `auto` to our own
        servers (a model `owned_by` copyspec) and to those of `PREDICTION_HOSTS`."""
        if self.prediction != "auto":
            return self.prediction == "on"
        if urlsplit(self.url).hostname in PREDICTION_HOSTS:
            return True
        return any(entry.get("owned_by") == OWNER for entry in self._models())

    def _models(self) -> list[dict[str, Any]]:
        """The server's model list (GET /v1/models), asked once."""
        with self._lock:
            if self._listed is None:
                try:
                    response = self.client.get(f"{self.url}/models")
                    response.raise_for_status()
                    listed = response.json()["data"]
                    if not listed or not all(isinstance(e, dict) and "id" in e for e in listed):
                        raise ValueError(f"no model in {listed!r}")
                    self._listed = listed
                except (httpx.HTTPError, KeyError, TypeError, ValueError) as error:
                    raise RemoteUnavailable(
                        f"the server at {self.url} lists no model: {error}"
                    ) from None
            return self._listed

    def close(self) -> None:
        self.client.close()


class RemoteSession:
    """One conversation with a remote model, keyed on the server by `session_id`."""

    def __init__(self, lm: RemoteModel, session_id: str, system: str | None = None) -> None:
        self.lm = lm
        self.session_id = session_id
        self.messages: list[dict[str, str]] = []
        if system:
            self.messages.append({"role": "system", "content": system})

    def send(
        self,
        message: str,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        stop_strings: tuple[str, ...] = (),
        stop_event: threading.Event | None = None,
        on_text: Callable[[str, TurnStats], None] | None = None,
    ) -> TurnResult:
        """Answer `message` remotely; the turn joins the history unless it was cancelled."""
        if not message.strip():
            raise ValueError("the message is empty")
        messages = [*self.messages, {"role": "user", "content": message}]
        body: dict[str, Any] = {
            "model": self.lm.model_name(),
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_new_tokens,
            "temperature": getattr(sampling, "temperature", 0.0),
        }
        if sampling is not None and not sampling.greedy:
            body.update(top_p=sampling.top_p, top_k=sampling.top_k, seed=sampling.seed)
        if stop_strings:
            body["stop"] = list(stop_strings)
        predicted = expected_answer(messages) if self.lm.takes_prediction() else None
        if predicted:
            body[PREDICTION] = {"type": "content", "content": predicted}
        stop = stop_event or threading.Event()
        for attempt in range(RETRIES + 1):
            turn = StreamedTurn(on_text)
            try:
                self._stream(body, stop, turn)
                break
            except (httpx.HTTPError, RemoteUnavailable) as error:
                if stop.is_set():
                    break
                # Nothing shown yet: a replica that died mid-turn costs a retry (the request
                # carries the whole conversation), not the answer.
                if turn.pieces or attempt == RETRIES or stop.wait(RETRY_DELAY * (attempt + 1)):
                    if isinstance(error, RemoteUnavailable):
                        raise
                    raise RemoteUnavailable(
                        f"the server at {self.lm.url} failed: {error}"
                    ) from None
        if stop.is_set():
            turn.stats.cancelled, turn.stats.stop_reason = True, "cancelled"
        else:
            self.messages = [*messages, {"role": "assistant", "content": turn.text}]
        return TurnResult(turn.text, [], turn.finish(), [])

    def _stream(self, body: dict[str, Any], stop: threading.Event, turn: StreamedTurn) -> None:
        """POST and read the events; a watcher closes the response as soon as `stop` is set,
        which ends the read here and, on the server, the request."""
        headers = {SESSION_HEADER: self.session_id}
        with self.lm.client.stream(
            "POST", f"{self.lm.url}/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_error(response.status_code, error_message(response.text))
            done = threading.Event()
            watcher = threading.Thread(target=close_on_stop, args=(stop, done, response),
                                       daemon=True)
            watcher.start()
            try:
                for event in events(response.iter_lines()):
                    if stop.is_set():
                        return
                    turn.feed(event)
            finally:
                done.set()


def close_on_stop(stop: threading.Event, done: threading.Event, response: httpx.Response) -> None:
    """Close `response` once `stop` is set, unless the turn ended first. Closing alone does not
    wake a read blocked in another thread while the server sends nothing (a long prefill, a busy
    replica), so the socket is shut down first: the blocked read then ends at once."""
    while not done.is_set():
        if stop.wait(0.02):
            stream = response.extensions.get("network_stream")
            connection = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(connection, socket.socket):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            response.close()
            return


def events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments, keep-alives, event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise RemoteUnavailable(
                f"the server sent an event that is not JSON: {data[:80]}"
            ) from None
        if "error" in event or event.get("object") == "error":
            detail = event.get("error", event)
            status = detail.get("code") if isinstance(detail, dict) else None
            raise_for_error(status if isinstance(status, int) else 500, error_message(data))
        yield event


def error_message(text: str) -> str:
    """The message of an OpenAI-style error body ({"error": {...}} or vLLM's flat one)."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()[:200] or "no message"
    detail = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("message") or detail)
    return str(detail)


def raise_for_error(status: int, message: str) -> None:
    """The exception that gives the LSP client the same error code as a local failure."""
    if status == 400 and any(word in message.lower() for word in CONTEXT_WORDS):
        raise PromptTooLongError(f"the server says: {message}")
    raise RemoteUnavailable(f"the server failed ({status}): {message}")


class StreamedTurn:
    """Text and stats gathered from the events of one streamed answer."""

    def __init__(self, on_text: Callable[[str, TurnStats], None] | None) -> None:
        self.on_text = on_text
        self.pieces: list[str] = []
        self.stats = TurnStats()
        self.reported: dict[str, Any] | None = None
        self.started = time.perf_counter()
        self.first: float | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def feed(self, event: dict[str, Any]) -> None:
        for choice in event.get("choices") or ():
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                if self.first is None:
                    self.first = time.perf_counter()
                    self.stats.time_to_first_token = self.first - self.started
                self.pieces.append(delta)
                self.stats.forward_passes += 1  # one chunk per server step
                self.stats.new_tokens += 1  # a lower bound until usage says
                self.stats.decode_seconds = time.perf_counter() - self.first
                if self.on_text is not None:
                    self.on_text(delta, self.stats)
            if choice.get("finish_reason"):
                self.stats.stop_reason = str(choice["finish_reason"])
        ours = event.get("copyspec")
        if isinstance(ours, dict) and isinstance(ours.get("stats"), dict):
            self.reported = ours["stats"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)

    def _usage(self, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        self.stats.new_tokens = int(usage.get("completion_tokens") or self.stats.new_tokens)
        self.stats.reused_tokens = cached
        self.stats.prefill_tokens = prompt - cached
        self.stats.cache_reused = cached > 0
        details = usage.get("completion_tokens_details") or {}
        for name in ("accepted_prediction_tokens", "rejected_prediction_tokens"):
            setattr(self.stats, name, int(details.get(name) or 0))

    def finish(self) -> TurnStats:
        """The turn's stats: the server's own when it sent them, else what was counted."""
        if self.reported is None:
            return self.stats
        known = {f.name for f in fields(TurnStats)}
        stats = TurnStats(**{k: v for k, v in self.reported.items() if k in known})
        stats.cancelled = self.stats.cancelled or stats.cancelled
        return stats
