"""The decode loop, top to bottom: propose → verify in one forward → accept → crop → callback.

Prefill happens before (`SequenceState.sync`). Each step makes at most one target forward over
`[pending token, proposal…]` and one host sync inside the acceptance rule. With a
`DraftChooser`, each proposal is first cut to the length worth its pass on this device (none
when no length pays), and every candidate is compared with what the target wrote.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.proposers import Proposal, Proposer
from engine.sampling import Sampler
from engine.schedule import DraftChooser
from engine.sequence import SequenceState
from engine.stats import TurnStats
from engine.verify import accept_greedy, accept_sampled

OnTokens = Callable[[list[int]], None]


@dataclass
class StopRules:
    """When to end a turn: EOS ids, a token budget, stop strings and an external stop event."""

    eos_ids: frozenset[int]
    max_new_tokens: int
    stop_strings: Sequence[str] = ()
    stop_event: threading.Event | None = None
    decode_text: Callable[[list[int]], str] | None = None


def decode(
    state: SequenceState,
    proposers: Sequence[Proposer],
    rules: StopRules,
    sampler: Sampler | None = None,
    on_tokens: OnTokens | None = None,
    stats: TurnStats | None = None,
    chooser: DraftChooser | None = None,
) -> list[int]:
    """Generate after the pending token; returns the new tokens (EOS included when it ends).

    `stats` is live: callbacks see the counts and rates of the turn so far. Without a
    `chooser`, each proposer's own length is verified."""
    stats = stats if stats is not None else TurnStats()
    generated: list[int] = []
    started = time.perf_counter()
    while True:
        if rules.stop_event is not None and rules.stop_event.is_set():
            stats.cancelled, stats.stop_reason = True, "cancelled"
            break
        remaining = rules.max_new_tokens - len(generated)
        if remaining <= 0:
            stats.stop_reason = "length"
            break
        proposal, made = _propose(state, proposers, remaining - 1, chooser)
        began = time.perf_counter()
        logits = state.step(proposal.tokens)
        stats.forward_passes += 1
        if sampler is None:
            accepted, own = accept_greedy(logits, proposal.tokens)
        else:
            accepted, own = accept_sampled(logits, proposal.tokens, sampler, proposal.probs)
        spent = time.perf_counter() - began  # the forward and the acceptance rule's host sync
        if proposal.proposer is not None:
            proposal.proposer.feedback(proposal, accepted)
        emitted, reason = _apply_stops([*proposal.tokens[:accepted], own], generated, rules)
        _count(stats, proposal, min(accepted, len(emitted)))
        if chooser is not None:
            if generated:  # the first pass reuses the prefill's logits: not a full forward
                chooser.timed(1 + len(proposal), spent)
            chooser.observe(made, emitted)
            stats.held_back += not proposal.tokens and any(p.candidate for p in made)
        state.accept(emitted)
        generated.extend(emitted)
        stats.new_tokens = len(generated)
        stats.decode_seconds = time.perf_counter() - started
        if len(generated) == len(emitted):
            stats.time_to_first_token = stats.decode_seconds
        if on_tokens is not None:
            on_tokens(emitted)
        if reason:
            stats.stop_reason = reason
            break
    stats.decode_seconds = time.perf_counter() - started
    return generated


def _propose(
    state: SequenceState, proposers: Sequence[Proposer], budget: int,
    chooser: DraftChooser | None,
) -> tuple[Proposal, list[Proposal]]:
    """The proposal to verify: the first non-empty one in priority order (copy before draft),
    cut by the chooser; and every proposal made on the way, for the chooser to learn from."""
    made: list[Proposal] = []
    if budget > 0:
        for proposer in proposers:
            limit = budget if chooser is None else chooser.limit(proposer.source, budget)
            if limit <= 0:
                continue
            proposal = proposer.propose(state, limit)
            if chooser is not None:
                proposal = chooser.cut(proposal)
            made.append(proposal)
            if proposal.tokens:
                return proposal, made
    return Proposal(), made


def _count(stats: TurnStats, proposal: Proposal, kept: int) -> None:
    """Count a pass's proposal; `kept` is how many of its accepted tokens the stop cut left in
    the output, so copied and drafted tokens never exceed the new ones."""
    if proposal.source == "copy":
        stats.copy_attempts += 1
        stats.copied_tokens += kept
    elif proposal.source == "draft":
        stats.draft_attempts += 1
        stats.drafted_tokens += kept
    stats.draft_forward_passes += proposal.forward_passes
    stats.proposed_tokens += len(proposal)


def _apply_stops(
    emitted: list[int], generated: list[int], rules: StopRules
) -> tuple[list[int], str]:
    """Cut the accepted block at the first EOS, the token budget or a completed stop string,
    whichever comes first (one block can hold a stop string and, after it, an EOS)."""
    reason = ""
    for i, token in enumerate(emitted):
        if token in rules.eos_ids:
            emitted, reason = emitted[: i + 1], "eos"
            break
    room = rules.max_new_tokens - len(generated)
    if not reason and len(emitted) >= room:
        reason = "length"
    emitted = emitted[:room]
    if rules.stop_strings and rules.decode_text is not None:
        window = 4 * max(len(stop) for stop in rules.stop_strings) + 8
        for i in range(len(emitted)):
            text = rules.decode_text([*generated, *emitted[: i + 1]][-window:])
            if any(stop in text for stop in rules.stop_strings):
                return emitted[: i + 1], "stop_string"
    return emitted, reason
