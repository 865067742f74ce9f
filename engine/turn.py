"""One turn of decoding, assembled: the proposers a method uses, the draft's state, prefill,
then the decode loop. `Session` (the chat) and one-shot callers both go through `run_turn`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from engine.config import SamplingConfig, SpecConfig
from engine.costs import curve_for, forget
from engine.decode import StopRules, decode
from engine.indentation import LineStarts, line_starts_of
from engine.loading import LoadedModel
from engine.prediction import Predicted
from engine.proposers import Proposer
from engine.proposers.copy import copy_proposer
from engine.proposers.draft import DraftProposer
from engine.sampling import Sampler
from engine.schedule import Acceptance, DraftChooser
from engine.sequence import SequenceState, recurrent
from engine.stats import SPECULATION_OFF, SPECULATION_ON, SPECULATION_RECURRENT, TurnStats


def speculation_notice(lm: LoadedModel, spec: SpecConfig) -> str | None:
    """The one line to tell the user when their method cannot speculate on this model."""
    if spec.method == "greedy" or not recurrent(lm.model):
        return None
    return (
        f"{lm.path} keeps a recurrent cache that cannot roll back rejected tokens: "
        f"method {spec.method!r} decodes without speculation (plain greedy/sampling)"
    )


def draft_state(
    lm: LoadedModel, spec: SpecConfig, draft: LoadedModel | None
) -> SequenceState | None:
    """The draft model's own sequence state, kept across turns, when the method drafts.

    Drafting needs a draft model that tokenizes exactly like the target, since its token ids
    are verified as the target's, and a cache that can drop its rejected guesses. A target
    that cannot speculate never drafts."""
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
    if recurrent(lm.model):
        return None
    if recurrent(draft.model):
        raise ValueError(
            f"the draft model {draft.path!r} keeps a recurrent cache, which cannot drop "
            "rejected drafts; choose an attention-only draft"
        )
    return SequenceState(draft.model, spec.gamma, spec.policy)


def build_proposers(
    spec: SpecConfig, draft: SequenceState | None = None, sampler: Sampler | None = None,
    width: int | None = None, line_starts: LineStarts | None = None,
) -> list[Proposer]:
    """The proposers a method uses, in priority order: a copy when the index has a match, else
    a draft (which needs `width`, the target's logit width). The copy carries indentation
    shifts where it knows the tokenizer's `line_starts`."""
    proposers: list[Proposer] = []
    if spec.copies:
        proposers.append(copy_proposer(spec, line_starts))
    if spec.drafts:
        if draft is None or width is None:
            raise ValueError(f"method {spec.method!r} needs a draft model")
        proposers.append(DraftProposer(draft, spec.draft_block, spec.adaptive, sampler,
                                       width=width))
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
    prediction: Sequence[int] = (),
    acceptance: Acceptance | None = None,
) -> tuple[list[int], TurnStats]:
    """Prefill what the caches lack of `ids`, then decode; returns new tokens and stats.

    A model whose cache cannot roll back decodes without proposers (`stats.speculation`).
    `prediction` (token ids the output is expected to resemble) is the copy pointer's first
    source, never fed to the model (`engine.prediction`): the output does not change.
    `acceptance` is what the draft-length chooser learned in earlier turns (a session's)."""
    stats = stats if stats is not None else TurnStats()
    started = time.perf_counter()
    state.reserve(len(ids) + rules.max_new_tokens)  # a static cache is sized once per turn
    # `sync` feeds the last prompt token too; it is not a reused token, nor a prefilled one
    # in the sense of the stats (the first decode step needs it in every method).
    stats.prefill_tokens = state.sync(ids) - 1
    if draft is not None and state.speculative:
        draft.reserve(len(ids) + rules.max_new_tokens)
        draft.sync(ids)
    stats.reused_tokens = len(ids) - 1 - stats.prefill_tokens
    stats.cache_reused = stats.reused_tokens > 0
    stats.prefill_seconds = time.perf_counter() - started
    sampler = Sampler(sampling, lm.device) if sampling and not sampling.greedy else None
    starts = line_starts_of(lm.tokenizer) if spec.copies else None
    if spec.method == "greedy":
        stats.speculation, proposers = SPECULATION_OFF, []
    elif not state.speculative:
        stats.speculation, proposers = SPECULATION_RECURRENT, []
    else:
        stats.speculation, proposers = SPECULATION_ON, build_proposers(
            spec, draft, sampler, state.model.config.vocab_size, starts)
    lead = None
    if prediction and spec.copies and proposers:
        copier = build_proposers(replace(spec, method="copy"), line_starts=starts)[0]
        lead = Predicted(copier, prediction, state.index, stats)
        proposers.insert(0, lead)
    chooser = None
    if proposers and spec.cost_aware:
        drafting = curve_for(draft.model) if draft is not None and spec.drafts else None
        chooser = DraftChooser(curve_for(state.model), drafting, acceptance)
    tokens = decode(state, proposers, rules, sampler, on_tokens, stats, chooser)
    if chooser is not None and chooser.calibrated is not None and chooser.calibrated.contradicted():
        forget(state.model)  # timed under other conditions than now: measure again next turn
    if lead is not None:
        lead.settle()
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
