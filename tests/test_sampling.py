"""Copy-speculative sampling draws from exactly the distribution plain sampling draws from.

The exact joint law of the first two sampled tokens is computed from the model itself; seeded
runs of each method are then held to it with a chi-square goodness-of-fit test at p > 0.001.
Runs are seeded, so the verdict is reproducible; a rule biased toward the copy (for example
accepting a copied token with probability 1) moves tens of percent of the mass and fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from engine.config import SamplingConfig, SpecConfig
from engine.decode import StopRules
from engine.loading import LoadedModel
from engine.sampling import Sampler
from engine.sequence import SequenceState
from engine.turn import generate_ids, run_turn

from tiny_models import loaded

TEMPERATURE = 2.0
RUNS = 1500
"""Seeded runs per method in the full (slow) lane; the fast lane runs FAST_RUNS of them."""
FAST_RUNS = 300
LANES = [pytest.param(FAST_RUNS, id="fast"),
         pytest.param(RUNS, id="full", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return loaded("llama", seed=4, mixing=0.1)


@pytest.fixture(scope="module")
def prompt_ids(model: LoadedModel) -> list[int]:
    """A prompt ending inside the model's own greedy cycle, so a copy is proposed at once."""
    ids = model.tokenizer("def f(x):\n")["input_ids"]
    return ids + generate_ids(model, ids, SpecConfig(method="greedy"), 30)[0]


def exact_joint(lm: LoadedModel, ids: list[int], config: SamplingConfig) -> dict[tuple, float]:
    """P(x1, x2) under plain sampling, from one forward per possible first token."""
    sampler = Sampler(config, lm.device)
    with torch.inference_mode():
        first = sampler.probs(lm.model(torch.tensor([ids])).logits[0, -1])
        law: dict[tuple, float] = {}
        for x1 in torch.nonzero(first > 1e-7).flatten().tolist():
            logits = lm.model(torch.tensor([[*ids, x1]])).logits[0, -1]
            second = sampler.probs(logits)
            for x2 in torch.nonzero(second > 1e-7).flatten().tolist():
                law[(x1, x2)] = first[x1].item() * second[x2].item()
    return law


def sample_pairs(lm: LoadedModel, ids: list[int], method: str, runs: int) -> list[tuple]:
    state = SequenceState(lm.model)
    spec = SpecConfig(method=method, gamma=3, block=4, adaptive=False)
    rules = StopRules(frozenset(), max_new_tokens=2)
    pairs = []
    for seed in range(runs):
        sampling = SamplingConfig(temperature=TEMPERATURE, seed=seed)
        tokens, _ = run_turn(state, ids, lm, spec, rules, sampling)
        pairs.append(tuple(tokens))
    return pairs


def goodness_of_fit(pairs: list[tuple], law: dict[tuple, float]) -> float:
    """Chi-square p-value, pooling cells expected fewer than 5 times into one."""
    runs = len(pairs)
    big = [cell for cell, p in law.items() if p * runs >= 5]
    assert len(big) >= 2, "the law is too flat for this many runs: the test would be powerless"
    counts = {cell: 0 for cell in big}
    other = 0
    for pair in pairs:
        if pair in counts:
            counts[pair] += 1
        else:
            other += 1
    expected = np.array([law[c] * runs for c in big] + [runs - sum(law[c] * runs for c in big)])
    observed = np.array([counts[c] for c in big] + [other])
    return float(chisquare(observed, expected).pvalue)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("runs", LANES)
def test_copy_speculative_sampling_matches_plain_sampling(
    model: LoadedModel, prompt_ids: list[int], runs: int
) -> None:
    ids = prompt_ids
    config = SamplingConfig(temperature=TEMPERATURE)
    law = exact_joint(model, ids, config)
    copy_pairs = sample_pairs(model, ids, "copy", runs)
    plain_pairs = sample_pairs(model, ids, "greedy", runs)

    # The test only means something if the copy is neither certain nor hopeless.
    state = SequenceState(model.model)
    state.sync(ids)
    proposed = state.index.lookup(1)[0]
    p_first = sum(p for (x1, _), p in law.items() if x1 == proposed)
    assert 0.05 < p_first < 0.95, f"copy acceptance {p_first:.2f} makes the test too weak"

    assert goodness_of_fit(plain_pairs, law) > 1e-3, "the harness itself disagrees with the law"
    assert goodness_of_fit(copy_pairs, law) > 1e-3


def test_same_seed_same_tokens(model: LoadedModel, prompt_ids: list[int]) -> None:
    ids = prompt_ids
    rules = StopRules(frozenset(), max_new_tokens=20)
    spec = SpecConfig()
    config = SamplingConfig(temperature=1.5, top_p=0.9, top_k=20, seed=7)
    first = run_turn(SequenceState(model.model), ids, model, spec, rules, config)[0]
    second = run_turn(SequenceState(model.model), ids, model, spec, rules, config)[0]
    other_seed = SamplingConfig(temperature=1.5, top_p=0.9, top_k=20, seed=8)
    third = run_turn(SequenceState(model.model), ids, model, spec, rules, other_seed)[0]
    assert first == second
    assert first != third


def test_top_k_and_top_p_filter_the_distribution() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    top_k = Sampler(SamplingConfig(temperature=1.0, top_k=2), torch.device("cpu")).probs(logits)
    assert (top_k[0, 2:] == 0).all() and top_k.sum().item() == pytest.approx(1.0)
    top_p = Sampler(SamplingConfig(temperature=1.0, top_p=0.7), torch.device("cpu")).probs(logits)
    plain = logits.softmax(-1)[0]
    kept = int((top_p[0] > 0).sum())
    assert plain[: kept - 1].sum() < 0.7 <= plain[:kept].sum()
