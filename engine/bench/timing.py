"""Real forward costs: the replay's verification passes through a real-size model, and the cost
of one pass as a function of its width and context.

The replay decides acceptance (the oracle); the model only does the work a pass costs: one
forward over [pending token, draft…] on the KV cache, the host sync of the acceptance check,
and the cache crop. Plain decoding is timed the same way, one token per forward, in the same
process, alternating which goes first, so the ratio is fair on a shared machine.

`DecodeBench` goes further: the oracle sits inside the engine's own decode loop (`Forced`), so
the proposers, the draft-length chooser and the compiled path do their real work, for plain
decoding, HF prompt lookup's drafts and ours alike; and real decoding (the model's own argmax)
checks that their tokens are plain decoding's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, PreTrainedModel

from engine.bench.peers import HFPromptLookup
from engine.bench.replay import Pair, ReplayProposer, replay
from engine.config import SpecConfig
from engine.costs import CostCurve, measure
from engine.decode import StopRules, decode
from engine.indentation import LineStarts
from engine.index import NgramIndex
from engine.proposers import Proposal, Proposer
from engine.schedule import Acceptance, DraftChooser
from engine.sequence import SequenceState
from engine.stats import TurnStats
from engine.turn import build_proposers


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


# --- the engine's decode loop under the oracle --------------------------------------------


PLAIN, PROMPT_LOOKUP, OURS = "plain", "HF prompt lookup", "ours"
DECODE_METHODS = (PLAIN, PROMPT_LOOKUP, OURS)
"""One token per pass; transformers' prompt lookup's drafts (n ≤ 3, K 10), each verified
whole as `generate(prompt_lookup_num_tokens=10)` does; the engine's default (`SpecConfig()`:
copy, resync, cost-aware)."""


class _Written:
    """What the acceptance rule reads off a pass's logits: the target's next tokens."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def argmax(self, dim: int = -1) -> _Written:
        return self

    def tolist(self) -> list[int]:
        return self.tokens


class CostedOracle:
    """Stands in for `SequenceState` without a model: the model writes `target`, and each pass
    costs cost(width) seconds, summed in `seconds` (the chooser's tests and its modelled bench)."""

    def __init__(self, context: list[int], target: list[int], cost: CostCurve) -> None:
        self.index = NgramIndex(SpecConfig.gamma, SpecConfig.policy)
        self.index.extend(context)
        self.target, self.done, self.cost, self.seconds = target, 0, cost, 0.0

    @property
    def tokens(self) -> list[int]:
        return self.index.tokens

    def step(self, proposal: list[int]) -> _Written:
        self.seconds += self.cost(1 + len(proposal))
        return _Written(self.target[self.done : self.done + len(proposal) + 1])

    def accept(self, tokens: list[int]) -> None:
        self.index.extend(tokens)
        self.done += len(tokens)


class Forced:
    """A `SequenceState` whose passes run for real (the forward, and the acceptance rule's host
    sync of its argmax) but whose model writes `target`: the replay's oracle inside the
    engine's decode loop."""

    def __init__(self, state: SequenceState, target: Sequence[int]) -> None:
        self.state, self.target, self.done = state, list(target), 0

    @property
    def index(self) -> NgramIndex:
        return self.state.index

    @property
    def tokens(self) -> list[int]:
        return self.state.tokens

    def step(self, proposal: list[int]) -> _Written:
        self.state.step(proposal).argmax(dim=-1).tolist()
        return _Written(self.target[self.done : self.done + len(proposal) + 1])

    def accept(self, tokens: list[int]) -> None:
        self.state.accept(tokens)
        self.done += len(tokens)


class PromptLookup:
    """HF prompt lookup as an engine proposer: transformers' own candidate generator over the
    sequence so far (`peers.HFPromptLookup`)."""

    source = "copy"

    def __init__(self, ngram: int = 3, k: int = 10) -> None:
        self._lookup = HFPromptLookup(ngram, k)

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        return Proposal(self._lookup.propose(state.tokens)[:limit], "copy", proposer=self)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        """Nothing to learn: it looks at the sequence only."""


@dataclass
class Decoded:
    """One method's decoding of one pair's target (or its first `tokens` of it)."""

    pair_id: str
    workload: str
    turn: int
    method: str
    tokens: int
    passes: int
    seconds: float
    """Decoding, from the first pass to the last one's host sync; prefill apart."""
    prefill_seconds: float

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class Identity:
    """Real decoding after one pair's context: whether each method wrote plain's tokens."""

    pair_id: str
    tokens: int
    identical: dict[str, bool] = field(default_factory=dict)
    first_difference: dict[str, int] = field(default_factory=dict)


class DecodeBench:
    """Plain decoding, HF prompt lookup and ours on one model, through the engine's decode loop.

    One `SequenceState` per method serves every pair, so a chain's turns reuse its cache as a
    session's do, and each is sized once for the longest pair: a compiled model compiles one
    cache size. Ours keeps one acceptance estimate per chain (its turns), as a session does,
    and weighs drafts by `curve`, by default measured as the engine measures it at first use
    (`costs.measure`) but on a cache of the same size (one compile, not two)."""

    def __init__(self, model: PreTrainedModel, pairs: Sequence[Pair], identity_tokens: int = 0,
                 curve: CostCurve | None = None, line_starts: LineStarts | None = None) -> None:
        self.pairs, self.line_starts = list(pairs), line_starts
        spec = SpecConfig()
        self.reserve = max(len(p.context) + max(len(p.target), identity_tokens) for p in pairs)
        self.curve = curve if curve is not None else measure(model, reserve=self.reserve)
        self.states = {method: SequenceState(model, spec.gamma, spec.policy)
                       for method in DECODE_METHODS}
        for state in self.states.values():
            state.reserve(self.reserve)
        self._chains: dict[str, Acceptance] = {}

    def _proposers(self, method: str, acceptance: Acceptance
                   ) -> tuple[list[Proposer], DraftChooser | None]:
        if method == PLAIN:
            return [], None
        if method == PROMPT_LOOKUP:
            return [PromptLookup()], None
        return (build_proposers(SpecConfig(), line_starts=self.line_starts),
                DraftChooser(self.curve, None, acceptance))

    def identity(self, tokens: int) -> list[Identity]:
        """The first pair of each workload, `tokens` decoded for real by every method."""
        firsts: dict[str, Pair] = {}
        for pair in self.pairs:
            firsts.setdefault(pair.workload, pair)
        checks = []
        for pair in firsts.values():
            written = {}
            for method in DECODE_METHODS:
                state = self.states[method]
                state.sync(pair.context)
                proposers, chooser = self._proposers(method, Acceptance())
                written[method] = decode(state, proposers, StopRules(frozenset(), tokens),
                                         chooser=chooser)
            check = Identity(pair.pair_id, tokens)
            for method in DECODE_METHODS[1:]:
                same = written[method] == written[PLAIN]
                check.identical[method] = same
                if not same:
                    check.first_difference[method] = next(
                        (i for i, (a, b) in enumerate(zip(written[method], written[PLAIN],
                                                          strict=False)) if a != b),
                        min(len(written[method]), len(written[PLAIN])))
            checks.append(check)
        return checks

    def timed(self, plain_tokens: int | None = None,
              on_pair: Callable[[str], None] | None = None) -> list[Decoded]:
        """Every pair's target written by every method, which goes first rotating per pair;
        plain decoding writes only the first `plain_tokens` (its rate barely changes along a
        target, and it is the slowest by far)."""
        results = []
        for number, pair in enumerate(self.pairs):
            chain = self._chains.setdefault(pair.pair_id.rsplit("/", 1)[0], Acceptance())
            shift = number % len(DECODE_METHODS)
            for method in (*DECODE_METHODS[shift:], *DECODE_METHODS[:shift]):
                target = pair.target[:plain_tokens] if method == PLAIN else pair.target
                results.append(self._decode(method, pair, target, chain))
            if on_pair is not None:
                on_pair(pair.pair_id)
        return results

    def _decode(self, method: str, pair: Pair, target: list[int],
                chain: Acceptance) -> Decoded:
        state = self.states[method]
        synchronize(state.device)
        began = time.perf_counter()
        state.sync(pair.context)
        synchronize(state.device)
        prefill = time.perf_counter() - began
        proposers, chooser = self._proposers(method, chain)
        stats = TurnStats()
        began = time.perf_counter()
        written = decode(Forced(state, target), proposers,  # type: ignore[arg-type]
                         StopRules(frozenset(), len(target)), stats=stats, chooser=chooser)
        synchronize(state.device)
        seconds = time.perf_counter() - began
        if written != target:
            raise RuntimeError(f"{method} wrote other tokens than {pair.pair_id}'s target: the "
                               "decode loop lost count")
        return Decoded(pair.pair_id, pair.workload, pair.turn, method, len(target),
                       stats.forward_passes, seconds, prefill)

    def compiled(self) -> bool:
        """Whether every method decoded on the compiled path (none fell back to eager)."""
        return all(state.static is not None for state in self.states.values())
