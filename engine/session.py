"""Multi-turn conversations: chat template, token history, index and KV cache kept across turns.

Turn N renders the whole conversation, but `SequenceState.sync` keeps the longest prefix that
is already cached, so only the new tokens are prefilled whenever the prompt extends the history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.config import SamplingConfig, SpecConfig
from engine.decode import StopRules, decode
from engine.detokenize import TextStream
from engine.loading import LoadedModel
from engine.proposers import Proposer
from engine.proposers.copy import CopyProposer, ResyncProposer
from engine.proposers.draft import DraftProposer
from engine.sampling import Sampler
from engine.schedule import BlockSchedule
from engine.sequence import SequenceState
from engine.stats import TurnStats

OnText = Callable[[str, TurnStats], None]

PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
"""Used only for tokenizers that ship no chat template (base models, tiny test models)."""


class PromptTooLongError(ValueError):
    """The rendered prompt does not fit the model's context window."""


@dataclass
class TurnResult:
    """One answered turn: its text, its token ids (EOS included) and what it cost."""

    text: str
    token_ids: list[int]
    stats: TurnStats
    prompt_ids: list[int] = field(default_factory=list)


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
        self.messages: list[dict[str, str]] = []
        if system:
            self.messages.append({"role": "system", "content": system})
        self.messages.extend(history)
        self.state = SequenceState(lm.model, self.spec.gamma, self.spec.policy)

    def render(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the conversation, ending with the assistant's generation prompt."""
        tokenizer = self.lm.tokenizer
        template = None if tokenizer.chat_template else PLAIN_CHAT_TEMPLATE
        text = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=False, chat_template=template
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def send(
        self,
        message: str,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        stop_strings: Sequence[str] = (),
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
    ) -> TurnResult:
        """Answer `message`; the turn joins the history unless it was cancelled."""
        if not message.strip():
            raise ValueError("the message is empty")
        messages = [*self.messages, {"role": "user", "content": message}]
        ids = self.render(messages)
        stream = TextStream(self.lm.tokenizer)
        rules = StopRules(
            eos_ids=self.lm.eos_token_ids,
            max_new_tokens=fit_budget(len(ids), max_new_tokens, self.lm.context_window),
            stop_strings=stop_strings,
            stop_event=stop_event,
            decode_text=stream.decode,
        )

        stats = TurnStats()  # shared with the decode loop, so `on_text` sees live counters

        def on_tokens(new_ids: list[int]) -> None:
            delta = stream.push(new_ids)
            if delta and on_text is not None:
                on_text(delta, stats)

        tokens, stats = run_turn(
            self.state, ids, self.lm, self.spec, rules, sampling, on_tokens, self.draft_state, stats
        )
        tail = stream.finish()
        if tail and on_text is not None:
            on_text(tail, stats)
        if not stats.cancelled:
            self.messages = [*messages, {"role": "assistant", "content": stream.text}]
        return TurnResult(stream.text, tokens, stats, ids)


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


def draft_state(
    lm: LoadedModel, spec: SpecConfig, draft: LoadedModel | None
) -> SequenceState | None:
    """The draft model's own sequence state, kept across turns, when the method drafts.

    Drafting needs a draft model that tokenizes exactly like the target, since its token ids
    are verified as the target's."""
    if not spec.drafts:
        return None
    if draft is None:
        raise ValueError(f"method {spec.method!r} needs a draft model")
    if draft.tokenizer.get_vocab() != lm.tokenizer.get_vocab():
        raise ValueError(
            f"the draft model {draft.path!r} does not share the vocabulary of {lm.path!r}"
        )
    if draft.device != lm.device:
        raise ValueError(f"the draft model is on {draft.device}, the target on {lm.device}")
    return SequenceState(draft.model, spec.gamma, spec.policy)


def build_proposers(
    spec: SpecConfig, draft: SequenceState | None = None, sampler: Sampler | None = None
) -> list[Proposer]:
    """The proposers a method uses, in priority order: a copy when the index has a match, else
    a draft."""
    proposers: list[Proposer] = []
    if spec.copies:
        # Verifying a few more copied tokens costs next to nothing, so K never drops below the
        # starting block: measured on the bench, shrinking to 1–2 lost more than it saved.
        if spec.policy == "resync":
            proposers.append(ResyncProposer(spec.block, spec.max_block))
        else:
            schedule = BlockSchedule(spec.block, spec.adaptive, spec.max_block,
                                     min_block=spec.block)
            proposers.append(CopyProposer(schedule))
    if spec.drafts:
        if draft is None:
            raise ValueError(f"method {spec.method!r} needs a draft model")
        proposers.append(DraftProposer(draft, spec.draft_block, spec.adaptive, sampler))
    return proposers


def run_turn(
    state: SequenceState,
    ids: list[int],
    lm: LoadedModel,
    spec: SpecConfig,
    rules: StopRules,
    sampling: SamplingConfig | None = None,
    on_tokens: Callable[[list[int]], None] | None = None,
    draft: SequenceState | None = None,
    stats: TurnStats | None = None,
) -> tuple[list[int], TurnStats]:
    """Prefill what the caches lack of `ids`, then decode; returns new tokens and stats."""
    stats = stats if stats is not None else TurnStats()
    started = time.perf_counter()
    stats.prefill_tokens = state.sync(ids)
    if draft is not None:
        draft.sync(ids)
    stats.reused_tokens = len(ids) - 1 - stats.prefill_tokens
    stats.cache_reused = stats.reused_tokens > 0
    stats.prefill_seconds = time.perf_counter() - started
    sampler = Sampler(sampling, lm.device) if sampling and not sampling.greedy else None
    proposers = build_proposers(spec, draft, sampler)
    tokens = decode(state, proposers, rules, sampler, on_tokens, stats)
    stats.time_to_first_token += stats.prefill_seconds
    return tokens, stats


def generate_ids(
    lm: LoadedModel,
    prompt_ids: list[int],
    spec: SpecConfig | None = None,
    max_new_tokens: int = 128,
    sampling: SamplingConfig | None = None,
    stop_event: threading.Event | None = None,
    draft: LoadedModel | None = None,
) -> tuple[list[int], TurnStats]:
    """One-shot decoding from raw token ids, with no chat template."""
    spec = spec or SpecConfig()
    state = SequenceState(lm.model, spec.gamma, spec.policy)
    rules = StopRules(lm.eos_token_ids, max_new_tokens, stop_event=stop_event)
    drafter = draft_state(lm, spec, draft)
    return run_turn(state, prompt_ids, lm, spec, rules, sampling, None, drafter)
