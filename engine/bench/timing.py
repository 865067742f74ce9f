"""Real forward costs: the replay's verification passes through a real-size model, and the cost
of one pass as a function of its width and context.

The replay decides acceptance (the oracle); the model only does the work a pass costs: one
forward over [pending token, draft…] on the KV cache, the host sync of the acceptance check,
and the cache crop. Plain decoding is timed the same way, one token per forward, in the same
process, alternating which goes first, so the ratio is fair on a shared machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from engine.bench.replay import Pair, ReplayProposer, replay
from engine.sequence import SequenceState


@dataclass
class Recording:
    """The passes one proposer made on one pair: each draft and how many tokens it emitted."""

    drafts: list[list[int]]
    emitted: list[int]


class _Recorder:
    """Wraps a replay proposer to keep what it drafted and what each pass emitted."""

    def __init__(self, inner: ReplayProposer) -> None:
        self.inner, self.name = inner, inner.name
        self.recording = Recording([], [])

    def begin(self, pair_id: str, context: list[int]) -> None:
        self.recording = Recording([], [])
        self.inner.begin(pair_id, context)

    def propose(self, tokens: list[int]) -> list[int]:
        draft = self.inner.propose(tokens)
        self.recording.drafts.append(list(draft))
        return draft

    def feedback(self, drafted: list[int], accepted: int, emitted: list[int]) -> None:
        self.recording.emitted.append(len(emitted))
        self.inner.feedback(drafted, accepted, emitted)

    def end(self) -> None:
        self.inner.end()


def record(proposer: ReplayProposer, pair: Pair) -> Recording:
    recorder = _Recorder(proposer)
    replay(recorder, pair)
    return recorder.recording


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _verify(state: SequenceState, draft: list[int], accepted: list[int]) -> None:
    """One pass as the engine runs it: forward, argmax check on the host, accept and crop."""
    logits = state.forward([state.tokens[-1], *draft])
    logits.argmax(dim=-1).tolist()  # the acceptance rule's one host sync
    state.accept(accepted)


def time_speculative(model: PreTrainedModel, pair: Pair, recording: Recording) -> float:
    state = SequenceState(model)
    state.sync(pair.context)
    synchronize(state.device)
    done, started = 0, time.perf_counter()
    for draft, emitted in zip(recording.drafts, recording.emitted, strict=True):
        _verify(state, draft, pair.target[done : done + emitted])
        done += emitted
    synchronize(state.device)
    return time.perf_counter() - started


def time_plain(model: PreTrainedModel, pair: Pair) -> float:
    state = SequenceState(model)
    state.sync(pair.context)
    synchronize(state.device)
    started = time.perf_counter()
    for token in pair.target:
        _verify(state, [], [token])
    synchronize(state.device)
    return time.perf_counter() - started


@dataclass
class TimedPair:
    pair_id: str
    workload: str
    turn: int
    tokens: int
    passes: int
    speculative_seconds: float
    plain_seconds: float


def timed_replay(model: PreTrainedModel, pairs: Sequence[Pair], proposer: ReplayProposer,
                 on_pair: Callable[[str], None] | None = None) -> list[TimedPair]:
    """Speculative and plain decoding of every pair, alternating which runs first."""
    results = []
    for number, pair in enumerate(pairs):
        recording = record(proposer, pair)
        if number % 2 == 0:
            spec, plain = time_speculative(model, pair, recording), time_plain(model, pair)
        else:
            plain, spec = time_plain(model, pair), time_speculative(model, pair, recording)
        results.append(TimedPair(pair.pair_id, pair.workload, pair.turn, len(pair.target),
                                 len(recording.drafts), spec, plain))
        if on_pair is not None:
            on_pair(pair.pair_id)
    return results


# --- cost of one pass ------------------------------------------------------------------------


@dataclass
class Cost:
    context: int
    width: int
    ms: float
    """Median milliseconds of one forward of `width` tokens after `context` cached tokens."""
    relative: float = 0.0
    """`ms` over the width-1 cost at the same context."""


@torch.inference_mode()
def forward_costs(model: PreTrainedModel, widths: Sequence[int], contexts: Sequence[int],
                  repeats: int = 5, on_step: Callable[[str], None] | None = None) -> list[Cost]:
    """Per context: prefill random tokens once, then time each width `repeats` times (after one
    warm-up), cropping the cache back each time. CUDA events with a host sync per step on
    CUDA, perf_counter on CPU."""
    device = model.device
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    costs: list[Cost] = []
    for context in contexts:
        cache = DynamicCache(config=model.config)
        ids = torch.randint(0, vocab, (1, context), generator=generator).to(device)
        for start in range(0, context, 2048):
            model(input_ids=ids[:, start : start + 2048], past_key_values=cache, use_cache=True,
                  logits_to_keep=1)
        for width in widths:
            step = torch.randint(0, vocab, (1, width), generator=generator).to(device)
            samples = []
            for attempt in range(repeats + 1):
                seconds = _time_forward(model, step, cache, device)
                cache.crop(-width)  # back to `context` (positive crops are refused)
                if attempt:
                    samples.append(seconds)
            costs.append(Cost(context, width, 1000 * statistics.median(samples)))
            if on_step is not None:
                on_step(f"context {context}, width {width}")
    for cost in costs:
        base = next(c.ms for c in costs if c.context == cost.context and c.width == min(widths))
        cost.relative = cost.ms / base if base else 0.0
    return costs


def _time_forward(model: PreTrainedModel, step: torch.Tensor, cache: DynamicCache,
                  device: torch.device) -> float:
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        logits = model(input_ids=step, past_key_values=cache, use_cache=True).logits
        logits.argmax(dim=-1).tolist()
        end.record()
        torch.cuda.synchronize(device)
        return begin.elapsed_time(end) / 1000
    started = time.perf_counter()
    logits = model(input_ids=step, past_key_values=cache, use_cache=True).logits
    logits.argmax(dim=-1).tolist()
    return time.perf_counter() - started


CAP_COST = 2.0
"""A draft length is worth allowing while its pass costs at most this many width-1 passes."""


def suggested_cap(costs: Sequence[Cost], context: int) -> int:
    """The widest draft whose pass costs ≤ CAP_COST plain steps at this context (the draft is
    width − 1 tokens: the pending token rides along)."""
    fitting = [c.width for c in costs if c.context == context and c.relative <= CAP_COST]
    return max(1, max(fitting, default=1) - 1)
