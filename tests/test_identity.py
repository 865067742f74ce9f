"""Every speculative setting produces token for token what transformers' greedy `generate` does."""

from __future__ import annotations

import itertools

import pytest
import torch

from engine.config import SpecConfig
from engine.loading import LoadedModel
from engine.turn import generate_ids

from tiny_models import loaded

ARCHS = ("llama", "qwen2", "gpt2")
PROMPTS = {
    "repetitive": "def add(a, b):\n    return a + b\n" * 4 + "def add(",
    "no-repetition": "The quick brown fox jumps over 1 lazy dog!",
}
MAX_NEW = 48
GRID = [
    (gamma, block, policy, adaptive)
    for i, (gamma, block) in enumerate(itertools.product((1, 2, 3, 5), (1, 4, 10, 32)))
    for policy, adaptive in [(("recent", "oldest", "longest")[i % 3], i % 2 == 0)]
]
"""Every γ with every K; the policies and adaptive on/off rotate through those pairs."""


def reference(lm: LoadedModel, ids: list[int], max_new_tokens: int) -> list[int]:
    output = lm.model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=max_new_tokens,
        pad_token_id=lm.tokenizer.eos_token_id,
    )
    return output[0, len(ids) :].tolist()


@pytest.fixture(scope="module", params=[(arch, mixing) for arch in ARCHS for mixing in (0.1, 0.25)],
                ids=lambda p: f"{p[0]}-mixing{p[1]}")
def model(request: pytest.FixtureRequest) -> LoadedModel:
    arch, mixing = request.param
    lm = loaded(arch, seed=1, mixing=mixing)
    lm.path = f"{arch}-mixing{mixing}"
    return lm


@pytest.mark.parametrize("prompt", PROMPTS, ids=list(PROMPTS))
def test_every_setting_matches_generate(model: LoadedModel, prompt: str) -> None:
    ids = model.tokenizer(PROMPTS[prompt])["input_ids"]
    expected = reference(model, ids, MAX_NEW)
    assert generate_ids(model, ids, SpecConfig(method="greedy"), MAX_NEW)[0] == expected
    attempts = copied = 0
    for gamma, block, policy, adaptive in GRID:
        spec = SpecConfig(
            gamma=gamma, block=block, policy=policy, adaptive=adaptive, max_block=max(block, 64)
        )
        tokens, stats = generate_ids(model, ids, spec, MAX_NEW)
        assert tokens == expected, f"γ={gamma} K={block} policy={policy} adaptive={adaptive}"
        assert stats.new_tokens == len(tokens)
        attempts += stats.copy_attempts
        copied += stats.copied_tokens
    if prompt == "repetitive":
        assert attempts > 0, "no copy was ever proposed, so verification went untested"
        if model.path.endswith("0.1"):
            assert copied > 0, "no copy was ever accepted, so acceptance went untested"


def test_copy_matches_near_the_end_of_the_budget() -> None:
    """Budgets that end inside an accepted copy block are cut exactly where generate stops."""
    lm = loaded("llama", seed=1, mixing=0.1)
    ids = lm.tokenizer(PROMPTS["repetitive"])["input_ids"]
    for budget in range(1, 30):
        tokens, stats = generate_ids(lm, ids, SpecConfig(block=16), budget)
        assert tokens == reference(lm, ids, budget), f"budget {budget}"
        assert stats.new_tokens == budget or stats.stop_reason == "eos"


def test_copying_takes_fewer_forward_passes(copying_llama: LoadedModel) -> None:
    ids = copying_llama.tokenizer(PROMPTS["repetitive"] * 2)["input_ids"]
    _, greedy = generate_ids(copying_llama, ids, SpecConfig(method="greedy"), 64)
    _, copy = generate_ids(copying_llama, ids, SpecConfig(), 64)
    assert greedy.forward_passes == greedy.new_tokens
    assert copy.forward_passes < greedy.forward_passes / 2
    assert copy.copied_share > 0.5
