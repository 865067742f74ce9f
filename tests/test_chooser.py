"""The draft-length chooser: given a cost curve and what drafts earned so far, it drafts
nothing when nothing pays and long when copies land, and a turn never costs more than plain
decoding beyond what exploring costs. Turns run through the real decode loop; the model is an
oracle that writes a known target, and the modelled seconds are cost(width) summed over passes.
"""

from __future__ import annotations

import random

import pytest

from engine import schedule
from engine.bench.timing import CostedOracle as Oracle
from engine.chat import render_ids
from engine.config import SpecConfig
from engine.costs import CostCurve
from engine.decode import StopRules, decode
from engine.loading import load_model
from engine.paths import demo_model_path
from engine.prompt_format import edit_request
from engine.proposers import Proposal
from engine.proposers.copy import ResyncProposer
from engine.schedule import Acceptance, DraftChooser, key_of, prior_hazard
from engine.sequence import SequenceState
from engine.stats import TurnStats
from engine.turn import run_turn

pytestmark = pytest.mark.timeout(60)

CPU = CostCurve((1, 2, 4, 8, 16, 32, 64, 128, 256),
                (1.0, 1.1, 1.5, 2.1, 2.3, 2.8, 3.9, 5.6, 9.8))
"""SmolLM2-135M on one CPU thread, relative to one token (measured with `engine.costs`)."""
STEEP = CostCurve((1, 4, 16, 64, 256), (1.0, 2.13, 3.37, 4.82, 8.54))
"""A 0.5B shape on a CPU (docs/performance.md): even a short draft costs twice a token."""
GPU = CostCurve((1, 128, 256, 512), (1.0, 1.05, 1.3, 2.2))
CURVES = {"cpu": CPU, "steep": STEEP, "gpu": GPU, "flat": CostCurve.flat()}
TOKENS = 400
COPY = ("copy", "aligned", 4)


class Scripted:
    """A proposer whose candidates match the target for a scripted number of tokens."""

    def __init__(self, source: str, matches: list[int], longest: int = 256) -> None:
        self.source, self.matches, self.longest = source, iter(matches), longest
        self.proposed: list[int] = []

    def propose(self, state: Oracle, limit: int) -> Proposal:  # type: ignore[override]
        right = state.target[state.done : state.done + min(limit, self.longest)]
        good = next(self.matches)
        candidate = [*right[:good], *(t + 1 for t in right[good:])]
        self.proposed.append(len(candidate))
        return Proposal(candidate, self.source, proposer=self, mode="aligned", aligned=4,
                        forward_passes=len(candidate) if self.source == "draft" else 0)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        """Nothing to learn."""


def run(matches: list[int], cost: CostCurve, source: str = "copy",
        draft_cost: CostCurve | None = None) -> tuple[float, TurnStats, Scripted]:
    """A turn of TOKENS tokens with the chooser; its modelled seconds, stats and proposer."""
    target = [random.Random(0).randrange(1000) for _ in range(TOKENS)]
    state = Oracle([0], target, cost)
    proposer = Scripted(source, matches)
    stats = TurnStats()
    chooser = DraftChooser(cost, draft_cost)
    tokens = decode(state, [proposer], StopRules(frozenset(), TOKENS), stats=stats,  # type: ignore[arg-type]
                    chooser=chooser)
    assert tokens == target, "the chooser changed the output"
    if draft_cost is not None:
        state.seconds += stats.draft_forward_passes * draft_cost(1)
    return state.seconds, stats, proposer


def greedy(cost: CostCurve) -> float:
    return TOKENS * cost(1)


def test_the_curve_interpolates_and_extrapolates() -> None:
    curve = CostCurve((1, 4, 8), (1.0, 2.0, 4.0))
    assert [curve(w) for w in (1, 2, 4, 6, 8)] == pytest.approx(
        [1.0, 1.333, 2.0, 3.0, 4.0], abs=1e-3)
    assert CostCurve.flat()(300) == 1.0
    assert curve(16) == pytest.approx(8.0)  # past the widest: along the last segment
    flat_end = CostCurve((1, 4, 8), (1.0, 2.0, 2.0))
    assert flat_end(15) == pytest.approx(3.0)  # ... or the average slope, when steeper
    with pytest.raises(ValueError, match="never fall"):
        CostCurve((1, 2), (2.0, 1.0))


@pytest.mark.parametrize("name", ["cpu", "steep"])
def test_rejected_copies_are_held_back(name: str) -> None:
    """A source the model never follows: after a few tries nothing is drafted, and the turn
    costs what plain decoding does plus those few tries."""
    cost = CURVES[name]
    seconds, stats, _ = run([0] * TOKENS * 2, cost)
    assert stats.copy_attempts <= 3, "kept drafting a source that never lands"
    assert stats.held_back >= TOKENS - 4  # the last pass has no budget left to propose
    assert seconds <= greedy(cost) + 3 * (cost(17) - cost(1))


def test_landing_copies_grow_long() -> None:
    """A source the model follows to the end: within a few passes the drafts span most of
    what is left, and the turn takes a handful of passes."""
    seconds, stats, proposer = run([256] * TOKENS, CPU)
    assert stats.forward_passes <= 10
    assert max(proposer.proposed) == 256 and stats.proposed_tokens >= TOKENS - 16
    assert seconds < greedy(CPU) / 10


def test_a_flat_curve_verifies_the_whole_candidate() -> None:
    """Where width is free, any chance of acceptance pays: the whole candidate is verified,
    as a chooser-less engine would. On a GPU's nearly flat curve the draft still runs long,
    and as long as the candidate once runs are known to go on."""
    assert DraftChooser(CostCurve.flat()).best(COPY, 4, 200) == 200
    assert DraftChooser(GPU).best(COPY, 4, 200) >= 16
    acceptance = Acceptance()
    for _ in range(8):
        acceptance.observe(COPY, 4, 250, broke=False)
    assert DraftChooser(GPU, acceptance=acceptance).best(COPY, 4, 200) == 200


def test_nothing_is_drafted_when_no_length_pays() -> None:
    """Learned: the first token is almost never accepted. On the CPU curve no k pays; on a
    flat one even a small chance does."""
    acceptance = Acceptance()
    for _ in range(40):
        acceptance.observe(COPY, 4, 0, broke=True)
        acceptance.tick()
    assert DraftChooser(CPU, acceptance=acceptance).best(COPY, 4, 64) == 0
    assert DraftChooser(STEEP, acceptance=acceptance).best(COPY, 4, 64) == 0
    assert acceptance.hazards(COPY, 4)[0] > 0.9


def test_acceptance_learns_per_key_and_forgets() -> None:
    """Evidence moves a key's hazards away from the prior, and fades with the passes."""
    acceptance = Acceptance()
    fresh = acceptance.hazards(COPY, 4)
    assert fresh == pytest.approx((prior_hazard(4, first=True), prior_hazard(4)))
    for _ in range(20):
        acceptance.observe(COPY, 4, 30, broke=True)  # long runs that end
    first, later = acceptance.hazards(COPY, 4)
    assert first < 0.1 and later == pytest.approx(1 / 30, rel=0.3)
    other = ("copy", "resume", 0)
    assert acceptance.hazards(other, 0) != acceptance.hazards(COPY, 4)
    for _ in range(20 * schedule.HALF_LIFE):
        acceptance.tick()
    assert acceptance.hazards(COPY, 4) == pytest.approx(fresh, rel=0.05)


@pytest.mark.parametrize("name", list(CURVES))
@pytest.mark.parametrize("mean", [0.3, 2.0, 8.0, 40.0])
def test_a_turn_never_costs_more_than_greedy_beyond_exploring(name: str, mean: float) -> None:
    """Runs of geometric length (mean `mean` tokens): whatever the curve, the turn's modelled
    cost stays within a few drafts' cost of plain decoding's (what exploring costs), and where
    copies are long it is well below."""
    cost = CURVES[name]
    rng = random.Random(1)
    matches = [int(rng.expovariate(1 / mean)) for _ in range(TOKENS)]
    seconds, _, _ = run(matches, cost)
    assert seconds <= greedy(cost) + 4 * (cost(17) - cost(1))
    if mean >= 8:
        assert seconds < 0.5 * greedy(cost)


def test_a_source_that_starts_landing_is_drafted_again() -> None:
    """Half a turn of copies that never land, then a source the model follows: every pass
    checks the held-back candidate against what was written, so drafting resumes."""
    seconds, stats, _ = run([0] * (TOKENS // 2) + [256] * TOKENS, CPU)
    held = stats.held_back
    assert held >= TOKENS // 2 - 8
    assert stats.forward_passes <= held + 12
    assert seconds < 0.7 * greedy(CPU)


def test_an_expensive_draft_is_only_probed() -> None:
    """A draft model that costs as much per token as the target never pays: it is skipped,
    except for a PROBE_LENGTH probe every PROBE_AFTER passes, and that is all the turn loses."""
    seconds, stats, _ = run([256] * TOKENS, CPU, "draft", draft_cost=CPU)
    probes = stats.draft_attempts
    assert 0 < probes <= TOKENS // schedule.PROBE_AFTER + 1
    assert stats.proposed_tokens <= probes * schedule.PROBE_LENGTH
    overhead = schedule.PROBE_LENGTH * CPU(1) + CPU(1 + schedule.PROBE_LENGTH) - CPU(1)
    assert seconds <= greedy(CPU) + probes * overhead


def test_a_cheap_draft_that_lands_is_drafted_long() -> None:
    seconds, stats, _ = run([256] * TOKENS, CPU, "draft",
                            draft_cost=CostCurve((1,), (0.02,)))
    assert stats.draft_attempts >= 2 and stats.forward_passes < TOKENS / 8
    assert seconds < 0.3 * greedy(CPU)


def test_resync_follows_its_source_while_held_back() -> None:
    """The copy proposer learns from the sequence itself: with every pass held back it still
    walks its pointer along the copied source, so its alignment (the chooser's signal) grows."""
    source = list(range(100, 180))
    state = Oracle([*source, 1, 2, 3], source, CPU)
    proposer = ResyncProposer(16, 256)
    seen = []
    for _ in range(20):
        proposal = proposer.propose(state, 256)  # type: ignore[arg-type]
        seen.append((proposal.mode, proposal.aligned, proposal.candidate[:1]))
        state.accept([state.target[state.done]])  # a plain step: nothing verified
    assert seen[-1][0] == "aligned"
    assert [a for _, a, _ in seen[-5:]] == sorted(a for _, a, _ in seen[-5:])
    assert seen[-1][2] == [source[19]]
    assert len(proposal.candidate) > len(proposal.tokens) >= 16


def test_keys_bucket_alignment_by_powers_of_two() -> None:
    assert key_of(Proposal([1], "copy", mode="aligned", aligned=0)) == ("copy", "aligned", 0)
    assert key_of(Proposal([1], "copy", mode="aligned", aligned=5)) == ("copy", "aligned", 3)
    assert key_of(Proposal([1], "copy", mode="anchor", aligned=10**6))[2] == schedule.BUCKETS - 1


def test_a_prediction_cut_by_the_chooser_keeps_the_answer_and_counts_what_was_verified() -> None:
    """On the built-in model with its measured curve: the answer is greedy's whatever the
    prediction, and the prediction tokens counted (accepted or rejected) were all verified."""
    lm = load_model(demo_model_path(), "cpu")
    code = "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
    ids = render_ids(lm.tokenizer, [{"role": "user",
                                     "content": edit_request(code, "Rename `total` to `acc`.")}])
    rules = StopRules(lm.eos_token_ids, 80)
    plain, _ = run_turn(SequenceState(lm.model), ids, lm, SpecConfig("greedy"), rules)
    for guess in (code, "class Foo:\n    pass\n" * 5):
        prediction = lm.tokenizer(guess, add_special_tokens=False)["input_ids"]
        tokens, stats = run_turn(SequenceState(lm.model), ids, lm, SpecConfig(), rules,
                                 prediction=prediction)
        assert tokens == plain
        verified = stats.accepted_prediction_tokens + stats.rejected_prediction_tokens
        assert verified <= stats.proposed_tokens


def test_a_measured_curve_is_corrected_by_the_passes_timed() -> None:
    """Drafted passes found three times dearer than measured: a short run that paid before
    no longer does. A curve given by hand (like every other one in these tests) is taken as
    it is."""
    acceptance = Acceptance()
    for _ in range(20):
        acceptance.observe(COPY, 4, 3, broke=True)
    measured = CostCurve(CPU.widths, CPU.seconds, measured=True)
    chooser = DraftChooser(measured, acceptance=acceptance)
    before = chooser.best(COPY, 4, 64)
    assert before > 0
    for _ in range(40):
        chooser.timed(1, CPU(1))
        chooser.timed(before + 1, 3 * CPU(before + 1))
    assert chooser.best(COPY, 4, 64) == 0
    assert DraftChooser(CPU).calibrated is None
