"""Every speculative setting produces token for token what transformers' greedy `generate` does."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from engine.config import SpecConfig
from engine.decode import StopRules, decode
from engine.loading import LoadedModel
from engine.proposers import COPIED_ELSEWHERE, Context, Proposal, Proposer
from engine.proposers.copy import EDIT_CONFIRM, copy_proposer
from engine.sequence import SequenceState
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


class Observed:
    """The real copy proposer, watched: how many tokens of carried edits the model accepted."""

    source = "copy"

    def __init__(self, proposer: Proposer) -> None:
        self.proposer, self.carried = proposer, 0

    def propose(self, context: Context, limit: int) -> Proposal:
        return dataclasses.replace(self.proposer.propose(context, limit), proposer=self)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.carried += proposal.origins[:accepted].count(COPIED_ELSEWHERE)
        self.proposer.feedback(proposal, accepted)


def walk(lm: LoadedModel) -> tuple[list[int], list[int]]:
    """The longest greedy walk of a bigram model (no attention or MLP: the next token is a
    function of the current one) that enters a cycle after a tail: (tail, cycle). The cycle
    is longer than the run an edit must be followed by before it counts (EDIT_CONFIRM)."""
    vocab = lm.model.config.vocab_size
    with torch.no_grad():
        following = lm.model(torch.arange(vocab)[:, None]).logits[:, -1].argmax(-1).tolist()
    best: tuple[list[int], list[int]] = ([], [])
    for token in range(vocab):
        path: list[int] = []
        while token not in path:
            path.append(token)
            token = following[token]
        tail, cycle = path[: path.index(token)], path[path.index(token) :]
        if (len(tail) >= 4 and len(cycle) > EDIT_CONFIRM and lm.tokenizer.eos_token_id not in path
                and len(tail) + len(cycle) > len(best[0]) + len(best[1])):
            best = (tail, cycle)
    return best


@pytest.mark.parametrize("arch, seed", [("llama", 6), ("qwen2", 6)])
def test_carried_edits_are_verified_like_any_copy(arch: str, seed: int) -> None:
    """The prompt holds the model's own walk (a tail, then its cycle six times) with the
    cycle's first token renamed wherever it occurs; the model writes the walk, so it makes
    the rename at each occurrence, and once it has made it twice the copy proposer carries it
    into its drafts and the model accepts it there: the answer is generate's, token for
    token. Drafts are kept shorter than the cycle, so the pointer is still on the prompt when
    the rename recurs (with longer ones the model's own first cycle soon becomes the better
    source; what carrying saves is measured on the replay, docs/performance.md). GPT-2 ties
    its head to its embeddings: as a bigram model it maps most tokens to themselves and has
    no such walk."""
    lm = loaded(arch, seed=seed, mixing=0.0)
    tail, cycle = walk(lm)
    assert tail and cycle, "no walk with a tail and a long cycle: pick another seed"
    path = tail + cycle * 6
    renamed = next(t for t in range(len(lm.tokenizer)) if t not in path
                   and t != lm.tokenizer.eos_token_id)
    ids = [renamed if t == cycle[0] else t for t in path] + tail[:3]
    budget = len(path) - 3
    expected = reference(lm, ids, budget)
    observed = Observed(copy_proposer(SpecConfig(block=4, max_block=8, cost_aware=False)))
    state = SequenceState(lm.model)
    state.sync(ids)
    assert decode(state, [observed], StopRules(lm.eos_token_ids, budget)) == expected
    assert observed.carried > 0, "the model never accepted a carried token"
