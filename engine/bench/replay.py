"""The oracle replay: how many verification passes a proposer needs to emit a known target.

A pair is (context, target). Before every pass (the first one included) the proposer may draft
up to its own K tokens from what it has seen; the pass accepts the longest draft prefix equal to
the target's next tokens, plus one token of the model's own, capped at the end of the target.
There is no token budget and the target's end token counts as output. The passes then depend on
the proposer only, so proposers can be compared on real edits without a model.

The two bounds are the fewest passes any copy proposer can take: at each pass it drafts the
longest run of the target that occurs in what is known (context plus output so far), with K
unbounded (the N/D limit) or K ≤ 64. Jumping as far as possible is optimal because the frontier
i + L(i) never moves backwards (a suffix of a known run is known).

Passes are not seconds: each figure is also weighed by device cost curves, Σ cost(1 + draft)
over the passes in plain steps (cost(1) = 1) per target token; 1.0 is plain decoding.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from engine.costs import CostCurve

BOUND_CAP = 64
"""K of the capped bound, the issue's table and most engines' largest speculation length."""
UNBOUNDED = 1 << 30


@dataclass(frozen=True)
class Pair:
    """One turn to replay: token ids of what the model sees and of what it must write."""

    pair_id: str
    workload: str
    turn: int
    context: list[int]
    target: list[int]


class ReplayProposer(Protocol):
    """A drafter under replay: sees the whole sequence so far, proposes the next tokens."""

    name: str

    def begin(self, pair_id: str, context: list[int]) -> None:
        """A new pair starts; `context` is everything before the first output token."""

    def propose(self, tokens: list[int]) -> list[int]:
        """Draft the tokens expected after `tokens` (context + output so far); [] for none."""

    def feedback(self, drafted: list[int], accepted: int, emitted: list[int]) -> None:
        """How the last draft fared; `emitted` was appended to the sequence."""

    def end(self) -> None:
        """The pair is over (the whole target was emitted)."""


@dataclass
class PairResult:
    """What replaying one pair cost one proposer."""

    pair_id: str
    workload: str
    turn: int
    method: str
    tokens: int
    passes: int = 0
    attempts: int = 0
    accepted: int = 0
    drafted: int = 0
    seconds: float = 0.0
    """Proposer time in `propose` and `feedback` over all passes."""
    setup_seconds: float = 0.0
    """Proposer time in `begin`: indexing the context, paid once per turn alongside prefill."""
    widths: list[int] = field(default_factory=list)
    """Draft length of every pass, in order: what a timed replay has to verify."""
    context: int = 0
    repeats: int = 0
    """Passes whose draft broke at a substitution the output had already made: the drafted
    token and the token written instead are those of an earlier break in this pair."""

    @property
    def passes_per_token(self) -> float:
        return self.passes / self.tokens if self.tokens else 0.0


def replay(proposer: ReplayProposer, pair: Pair) -> PairResult:
    """Run the protocol for one pair; per-pass proposer time is measured around `propose` and
    `feedback`, the one-off indexing of the context in `begin` separately."""
    result = PairResult(pair.pair_id, pair.workload, pair.turn, proposer.name, len(pair.target),
                        context=len(pair.context))
    tokens = list(pair.context)
    target, done = pair.target, 0
    clock = time.perf_counter
    started = clock()
    proposer.begin(pair.pair_id, list(pair.context))
    result.setup_seconds = clock() - started
    spent = 0.0
    breaks: set[tuple[int, int]] = set()
    while done < len(target):
        started = clock()
        draft = proposer.propose(tokens)
        spent += clock() - started
        accepted = 0
        limit = min(len(draft), len(target) - done)
        while accepted < limit and draft[accepted] == target[done + accepted]:
            accepted += 1
        if accepted < limit:
            substitution = (draft[accepted], target[done + accepted])
            result.repeats += substitution in breaks
            breaks.add(substitution)
        emitted = target[done : min(done + accepted + 1, len(target))]
        tokens.extend(emitted)
        done += len(emitted)
        result.passes += 1
        result.drafted += len(draft)
        result.widths.append(len(draft))
        if draft:
            result.attempts += 1
        result.accepted += min(accepted, len(emitted))
        started = clock()
        proposer.feedback(draft, accepted, emitted)
        spent += clock() - started
    result.seconds = spent
    proposer.end()
    return result


class SuffixAutomaton:
    """Every substring of a growing sequence, to find the longest known run in O(run)."""

    def __init__(self, tokens: Iterable[int] = ()) -> None:
        self.next: list[dict[int, int]] = [{}]
        self.link = [-1]
        self.length = [0]
        self.last = 0
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        nxt, link, length = self.next, self.link, self.length
        cur = len(length)
        nxt.append({})
        length.append(length[self.last] + 1)
        link.append(0)
        p = self.last
        while p != -1 and token not in nxt[p]:
            nxt[p][token] = cur
            p = link[p]
        if p != -1:
            q = nxt[p][token]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(length)
                nxt.append(dict(nxt[q]))
                length.append(length[p] + 1)
                link.append(link[q])
                while p != -1 and nxt[p].get(token) == q:
                    nxt[p][token] = clone
                    p = link[p]
                link[q] = link[cur] = clone
        self.last = cur

    def run_length(self, tokens: Sequence[int], start: int, cap: int) -> int:
        """How many tokens from `tokens[start]` on form a known substring (at most `cap`)."""
        state, n, end = 0, 0, min(len(tokens), start + cap)
        while start + n < end:
            state = self.next[state].get(tokens[start + n], -1)
            if state < 0:
                break
            n += 1
        return n


def bound_drafts(context: Sequence[int], target: Sequence[int], cap: int) -> list[int]:
    """The drafts (their lengths) of the fewest passes any copy proposer with K ≤ `cap` needs
    for this pair: each the longest known run of the target, up to `cap`."""
    automaton = SuffixAutomaton(context)
    done, drafts = 0, []
    while done < len(target):
        run = automaton.run_length(target, done, cap)
        emitted = min(run + 1, len(target) - done)
        for token in target[done : done + emitted]:
            automaton.append(token)
        done += emitted
        drafts.append(run)
    return drafts


def bound_passes(context: Sequence[int], target: Sequence[int], cap: int) -> int:
    """The fewest passes any copy proposer with K ≤ `cap` needs for this pair."""
    return len(bound_drafts(context, target, cap))


def bound_results(pairs: Sequence[Pair]) -> list[PairResult]:
    """Both bounds as pseudo-methods, so they sit in the same tables as the proposers."""
    results = []
    for pair in pairs:
        for name, cap in ((bound_name(None), UNBOUNDED), (bound_name(BOUND_CAP), BOUND_CAP)):
            drafts = bound_drafts(pair.context, pair.target, cap)
            results.append(PairResult(pair.pair_id, pair.workload, pair.turn, name,
                                      len(pair.target), passes=len(drafts), widths=drafts,
                                      context=len(pair.context)))
    return results


def bound_name(cap: int | None) -> str:
    return "bound, K unbounded (N/D)" if cap is None else f"bound, K ≤ {cap}"


@dataclass
class Row:
    """One (workload, turn, method) group reduced to the issue's metrics."""

    workload: str
    turn: str
    method: str
    pairs: int
    tokens: int
    passes: int
    median_passes_per_token: float
    accepted_share: float
    accepted_per_attempt: float
    drafted_per_pass: float
    us_per_pass: float
    repeated_share: float = 0.0
    """Share of passes that broke at a substitution the output had already made."""
    cost_per_token: dict[str, float] = field(default_factory=dict)
    """Per cost curve: Σ cost(1 + draft) over the passes, in plain steps, per target token."""
    ratio_vs_ours: float | None = None

    @property
    def passes_per_token(self) -> float:
        return self.passes / self.tokens if self.tokens else 0.0


def group_label(result: PairResult, chains: set[str]) -> tuple[str, str]:
    """(workload, turn label): chain workloads are split per turn, others are 'all'."""
    if result.workload in chains:
        return result.workload, f"turn {result.turn}"
    return result.workload, "all"


def cost_in_steps(widths: Sequence[int], curve: CostCurve) -> float:
    """What passes with these drafts cost on `curve`, in plain steps (one-token passes)."""
    plain = curve(1)
    return sum(curve(1 + width) for width in widths) / plain


def summarize(results: Sequence[PairResult], ours: str,
              curves: dict[str, CostCurve] | None = None) -> list[Row]:
    """Rows per workload and per turn (chains), with each method's ratio against `ours` and
    its cost per token on each of `curves`."""
    chains = {r.workload for r in results if r.turn > 1}
    groups: dict[tuple[str, str, str], list[PairResult]] = {}
    for result in results:
        groups.setdefault((*group_label(result, chains), result.method), []).append(result)
    rows = []
    for (workload, turn, method), members in groups.items():
        tokens = sum(r.tokens for r in members)
        passes = sum(r.passes for r in members)
        attempts = sum(r.attempts for r in members)
        rows.append(Row(
            workload, turn, method, len(members), tokens, passes,
            statistics.median(r.passes_per_token for r in members),
            sum(r.accepted for r in members) / tokens if tokens else 0.0,
            sum(r.accepted for r in members) / attempts if attempts else 0.0,
            sum(r.drafted for r in members) / passes if passes else 0.0,
            1e6 * sum(r.seconds for r in members) / passes if passes else 0.0,
            sum(r.repeats for r in members) / passes if passes else 0.0,
            {name: sum(cost_in_steps(r.widths, curve) for r in members) / tokens
             for name, curve in (curves or {}).items()} if tokens else {},
        ))
    reference = {(r.workload, r.turn): r.passes_per_token for r in rows if r.method == ours}
    for row in rows:
        base = reference.get((row.workload, row.turn))
        if base:
            row.ratio_vs_ours = row.passes_per_token / base
    return rows
