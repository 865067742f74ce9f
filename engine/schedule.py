"""How many tokens to propose next.

`BlockSchedule` is a proposer's own rule (fixed K, or adaptive K that follows recent
acceptance). `DraftChooser` then weighs what a draft is expected to earn against what its pass
costs on this device (`engine.costs`): it picks the length k that maximises expected tokens per
second, (1 + E[min(A, k)]) / cost(1 + k), where A is how many drafted tokens the target will
accept, against 1 / cost(1) for drafting nothing. `Acceptance` learns A's distribution online.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.costs import Calibrated, CostCurve
from engine.proposers import Proposal

Key = tuple[str, str, int]
"""(proposal source, the proposer's mode, its alignment bucket): what acceptance is learned by;
its first two make the pool a key's prior is calibrated on."""

HALF_LIFE = 64
"""Passes after which an observation counts half: recent passes say more about the next one."""
PRIOR_WEIGHT = 2.0
"""How many token positions of evidence a prior is worth, at each level (key, then pool)."""
BUCKETS = 8
"""Alignment buckets by powers of two: 0, 1, 2-3, 4-7, ..., 64 and more."""
MARGIN = 0.1
"""A draft must beat drafting nothing by this fraction of its rate: estimates are uncertain,
and a draft that only breaks even on paper loses when they are off."""
PROBE_AFTER = 16
"""A model draft held back this many passes in a row is tried once (PROBE_LENGTH tokens), so
acceptance that recovers is seen; copies need no probe, as each pass checks its candidate for
free against what the target wrote."""
PROBE_LENGTH = 2


class BlockSchedule:
    """Adaptive mode doubles K after a fully accepted proposal and halves it after a rejection,
    staying within [min_block, max_block]; fixed mode always answers `block`."""

    def __init__(self, block: int, adaptive: bool, max_block: int, min_block: int = 1) -> None:
        self.size = block
        self.adaptive = adaptive
        self.max_block = max_block
        self.min_block = min(min_block, block)

    def update(self, proposed: int, accepted: int) -> None:
        if not self.adaptive or proposed == 0:
            return
        if accepted == proposed:
            if proposed == self.size:
                self.size = min(2 * self.size, self.max_block)
        else:
            self.size = max(self.min_block, self.size // 2)


def prior_hazard(aligned: int, first: bool = False) -> float:
    """Before any evidence, the chance that a proposed token is rejected, having reached it:
    Laplace's rule of succession over the agreement behind the proposal, so a long run is
    expected to go on and a fresh guess is a coin toss. The first token is where a model
    leaves its source (the edit), so there the agreement counts an eighth: measured on
    SmolLM2's refinements, a first token after 8 agreeing ones was rejected 38% of the time."""
    return 1.0 / ((aligned / 8 if first else aligned) + 2)


def key_of(proposal: Proposal) -> Key:
    """What a proposal's acceptance is learned by: its source, the proposer's mode and its
    alignment in powers of two."""
    return proposal.source, proposal.mode, min(proposal.aligned.bit_length(), BUCKETS - 1)


class Acceptance:
    """The distribution of A, the accepted length of a proposal, learned online per key.

    A is modelled as a first token accepted with some chance, then a run that breaks with a
    constant chance per token (edits are spread out, so what is left of a run does not depend
    on how long it has gone): two hazards. Each is a ratio of decayed counts, breaks over
    positions reached, per key, shrunk towards `prior_hazard` of the proposal's alignment
    scaled by how the pool's breaks (same source and mode) compare with what that prior
    expected (a model that often leaves its source makes every guess less likely). Each
    observation is a
    candidate compared with what the target then wrote: it broke at a position (A known) or
    ran to its end (A at least that); a run that ran on informs every later position, so a few
    fully accepted drafts lengthen the next one. Kept across a session's turns; a server
    also keeps a running one over all its sessions, which seeds each new session (`session`)."""

    def __init__(self, running: Acceptance | None = None) -> None:
        self._decay = 0.5 ** (1 / HALF_LIFE)
        self._weight = 1.0
        """Weight of an observation now; it grows each pass instead of decaying every count."""
        self._counts: dict[Key | tuple[str, str], list[float]] = {}
        """Per key, and per pool, for the first position and for later ones: positions
        reached, breaks, and the breaks the prior expected."""
        self.running = running
        """A wider estimate that learns from every pass this one does (a server's)."""

    def session(self) -> Acceptance:
        """A new session's estimate: what this running one knows so far, to go on from, and
        whose passes this one learns from too."""
        child = Acceptance(running=self)
        child._weight = self._weight
        child._counts = {name: list(counts) for name, counts in self._counts.items()}
        return child

    def tick(self) -> None:
        """One pass went by: older observations weigh less."""
        self._weight /= self._decay
        if self._weight > 1e100:  # rescale before floats overflow; ratios do not change
            for counts in self._counts.values():
                counts[:] = [c / self._weight for c in counts]
            self._weight = 1.0
        if self.running is not None:
            self.running.tick()

    def observe(self, key: Key, aligned: int, matched: int, broke: bool) -> None:
        """A candidate with `aligned` tokens of agreement behind it matched `matched` tokens
        of the output, then broke or ran out."""
        reach = matched + 1 if broke else matched
        w, prior = self._weight, prior_hazard(aligned)
        first = (w, w * (broke and matched == 0), w * prior_hazard(aligned, first=True))
        later = (w * (reach - 1), w * (broke and matched > 0), w * prior * (reach - 1))
        for name in (key, key[:2]):
            counts = self._counts.setdefault(name, [0.0] * 6)
            for i, value in enumerate((*first, *later)):
                counts[i] += value
        if self.running is not None:
            self.running.observe(key, aligned, matched, broke)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per pool ("source mode"): decayed positions seen and the share of them rejected,
        for first proposed tokens and for later ones (what a server shows per session)."""
        out = {}
        for name, counts in sorted(self._counts.items()):
            if len(name) == 2:
                seen = [counts[0] / self._weight, counts[3] / self._weight]
                out[" ".join(name).strip()] = {
                    "first_seen": round(seen[0], 3),
                    "first_rejected": round(counts[1] / counts[0], 3) if counts[0] else 0.0,
                    "later_seen": round(seen[1], 3),
                    "later_rejected": round(counts[4] / counts[3], 3) if counts[3] else 0.0,
                }
        return out

    def hazards(self, key: Key, aligned: int) -> tuple[float, float]:
        """(chance the first token is rejected, chance each later one is, having reached it)."""
        strength = PRIOR_WEIGHT * self._weight
        empty = [0.0] * 6
        pooled, own = self._counts.get(key[:2], empty), self._counts.get(key, empty)
        out = []
        for i in (0, 3):
            scale = (pooled[i + 1] + strength) / (pooled[i + 2] + strength)
            prior = min(1.0, scale * prior_hazard(aligned, first=i == 0))
            out.append((own[i + 1] + strength * prior) / (own[i] + strength))
        return out[0], out[1]


class DraftChooser:
    """Each pass's draft length: the k that maximises expected tokens per second.

    Copies cost nothing to propose, so a copy proposer offers its whole candidate and the
    chooser cuts it; a model draft costs a draft forward per token, so its length is chosen
    before drafting. Either way k = 0, drafting nothing, is chosen when no length pays."""

    def __init__(self, cost: CostCurve, draft_cost: CostCurve | None = None,
                 acceptance: Acceptance | None = None) -> None:
        self.cost = cost
        self.draft_cost = draft_cost
        self.acceptance = acceptance if acceptance is not None else Acceptance()
        self._idle = 0
        """Passes since the last model draft."""
        self._run = 0
        """Tokens the draft model got right since it last missed: its confidence, as the
        alignment is a copy proposer's."""
        self.calibrated = Calibrated(cost) if cost.measured else None
        """The measured curve as the passes' own times correct it; None: `cost` as given."""
        self._costs = [self.cost(1)]
        """cost(w) for w = 1, 2, …, filled as wider widths are asked about (uncalibrated)."""

    def best(self, key: Key, aligned: int, longest: int, per_token: float = 0.0) -> int:
        """The k in [0, longest] with the most expected tokens per second for a proposal of
        this key and alignment; `per_token` is the seconds proposing each token costs (a draft
        model's forward)."""
        first, later = self.acceptance.hazards(key, aligned)
        if self.calibrated is not None:
            costs = self.calibrated.table(longest + 1)
        else:
            costs = self._costs
            costs.extend(self.cost(w) for w in range(len(costs) + 1, longest + 2))
        best_k, best_rate = 0, (1.0 + MARGIN) / costs[0]
        alive, gain = 1.0 - first, 1.0
        for k in range(1, longest + 1):
            gain += alive
            alive *= 1.0 - later
            rate = gain / (costs[k] + k * per_token)
            if rate >= best_rate and (k > 1 or rate > best_rate):  # ties: the longer
                best_k, best_rate = k, rate
        return best_k

    def limit(self, source: str, budget: int) -> int:
        """How many tokens a proposer of `source` may propose this pass: a copy its whole
        candidate (cut later), a model draft the chosen length, with a short probe after
        PROBE_AFTER passes without one."""
        if source != "draft":
            return budget
        per_token = self.draft_cost(1) if self.draft_cost is not None else 0.0
        k = self.best(key_of(Proposal(source=source, aligned=self._run)), self._run, budget,
                      per_token)
        if k == 0 and self._idle >= PROBE_AFTER:
            k = min(PROBE_LENGTH, budget)
        return k

    def timed(self, width: int, seconds: float) -> None:
        """A verify pass of `width` tokens took `seconds`: correct the curve by it."""
        if self.calibrated is not None:
            self.calibrated.observe(width, seconds)

    def cut(self, proposal: Proposal) -> Proposal:
        """The proposal to verify: a copy's candidate cut to the best length (possibly none);
        a model draft as drafted, with the run it was planned on."""
        if proposal.source != "copy":
            return replace(proposal, aligned=self._run)
        candidate = proposal.candidate
        k = self.best(key_of(proposal), proposal.aligned, len(candidate))
        return replace(proposal, tokens=candidate[:k])

    def observe(self, made: Sequence[Proposal], emitted: Sequence[int]) -> None:
        """Learn from every candidate proposed this pass, verified or not: how far it matched
        what the target wrote is what it would have had accepted."""
        drafted = False
        for proposal in made:
            candidate = proposal.candidate
            if not candidate:
                continue
            matched = 0
            while (matched < len(candidate) and matched < len(emitted)
                   and candidate[matched] == emitted[matched]):
                matched += 1
            broke = matched < min(len(candidate), len(emitted))
            self.acceptance.observe(key_of(proposal), proposal.aligned, matched, broke)
            if proposal.source == "draft":
                drafted, self._run = True, 0 if broke else self._run + matched
        self._idle = 0 if drafted else self._idle + 1
        self.acceptance.tick()
