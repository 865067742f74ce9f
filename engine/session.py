"""Multi-turn conversations: chat template, token history, index and KV cache kept across turns.

Turn N renders the whole conversation, but `SequenceState.sync` keeps the longest prefix that
is already cached, so only the new tokens are prefilled whenever the prompt extends the history.

`ChatSession` is the one interface of a conversation, whoever answers it: `Session` here, the
language server's `RemoteSession` (an OpenAI-compatible server) and `copyspec serve`'s
`ServedSession` all take one user message per `send`, after the history in `messages`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from engine.chat import render_ids
from engine.config import SamplingConfig, SpecConfig
from engine.decode import StopRules
from engine.detokenize import TextStream
from engine.expected import expected_ids
from engine.loading import LoadedModel
from engine.schedule import Acceptance
from engine.sequence import SequenceState
from engine.stats import TurnStats
from engine.turn import draft_state, run_turn, speculation_notice

OnText = Callable[[str, TurnStats], None]
"""Called with each piece of the answer's text and the turn's live figures."""


class PromptTooLongError(ValueError):
    """The rendered prompt does not fit the model's context window."""


@dataclass
class TurnResult:
    """One answered turn: its text, its token ids (EOS included) and what it cost."""

    text: str
    token_ids: list[int]
    stats: TurnStats
    prompt_ids: list[int] = field(default_factory=list)


@runtime_checkable
class ChatSession(Protocol):
    """A conversation with a model: its history, then one user message per turn. The caller
    runs it on one thread (the engine thread) and stops a turn with `stop_event`."""

    messages: list[dict[str, str]]
    """The history a turn follows; a finished turn appends the message and its answer."""

    @property
    def lm(self) -> object:
        """The model it talks to (compared by identity: a session outlives no reload)."""
        ...

    def send(
        self,
        message: str,
        max_new_tokens: int = 256,
        *,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
    ) -> TurnResult:
        """Answer `message`, streaming its text through `on_text`; a turn stopped by
        `stop_event` returns what it had, marked cancelled, and leaves the history as it was."""
        ...


class Session:
    """A conversation with one model; each `send` answers one user message."""

    def __init__(
        self,
        lm: LoadedModel,
        spec: SpecConfig | None = None,
        system: str | None = None,
        history: Sequence[dict[str, str]] = (),
        draft: LoadedModel | None = None,
    ) -> None:
        self.lm = lm
        self.spec = spec or SpecConfig()
        self.draft_state = draft_state(lm, self.spec, draft)
        self.notice = speculation_notice(lm, self.spec)
        """One line for the user when the method cannot speculate on this model, else None."""
        self.messages: list[dict[str, str]] = []
        if system:
            self.messages.append({"role": "system", "content": system})
        self.messages.extend(history)
        self.state = SequenceState(lm.model, self.spec.gamma, self.spec.policy)
        self.acceptance = Acceptance()
        """How drafts fared in this conversation, for the draft-length chooser."""

    def render(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the conversation, ending with the assistant's generation prompt."""
        return render_ids(self.lm.tokenizer, messages)

    def expected(self, message: str) -> list[int]:
        """What the answer to `message` is expected to repeat (`engine.expected`), as token ids:
        the prediction an editor's turn hands `send`."""
        return expected_ids(self.lm.tokenizer,
                            [*self.messages, {"role": "user", "content": message}])

    def send(
        self,
        message: str,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        stop_strings: Sequence[str] = (),
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        prediction: Sequence[int] = (),
    ) -> TurnResult:
        """Answer `message`; the turn joins the history unless it was cancelled. `prediction`:
        token ids the answer is expected to resemble (the code being rewritten), the copy
        pointer's first source; it changes the forward passes, never the answer."""
        if not message.strip():
            raise ValueError("the message is empty")
        messages = [*self.messages, {"role": "user", "content": message}]
        ids = self.render(messages)
        stream = TextStream(self.lm.tokenizer)
        rules = turn_rules(self.lm, len(ids), max_new_tokens, stream, stop_strings, stop_event)

        stats = TurnStats()  # shared with the decode loop, so `on_text` sees live counters

        def on_tokens(new_ids: list[int]) -> None:
            delta = stream.push(new_ids)
            if delta and on_text is not None:
                on_text(delta, stats)

        tokens, stats = run_turn(
            self.state, ids, self.lm, self.spec, rules, sampling, on_tokens, self.draft_state,
            stats, prediction, self.acceptance,
        )
        tail = stream.finish()
        if tail and on_text is not None:
            on_text(tail, stats)
        if not stats.cancelled:
            self.messages = [*messages, {"role": "assistant", "content": stream.text}]
        return TurnResult(stream.text, tokens, stats, ids)



def turn_rules(
    lm: LoadedModel,
    prompt_tokens: int,
    max_new_tokens: int,
    stream: TextStream,
    stop_strings: Sequence[str] = (),
    stop_event: threading.Event | None = None,
) -> StopRules:
    """When a chat turn ends: EOS, the budget that fits the window, stop strings, a stop."""
    return StopRules(
        eos_ids=lm.eos_token_ids,
        max_new_tokens=fit_budget(prompt_tokens, max_new_tokens, lm.context_window),
        stop_strings=stop_strings,
        stop_event=stop_event,
        decode_text=stream.decode,
    )


def fit_budget(prompt_tokens: int, max_new_tokens: int, window: int | None) -> int:
    """The token budget that fits the window; a prompt that fills the window is an error."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if window is None:
        return max_new_tokens
    if prompt_tokens >= window:
        raise PromptTooLongError(
            f"the prompt is {prompt_tokens} tokens, but the model's context window is {window}"
        )
    return min(max_new_tokens, window - prompt_tokens)
