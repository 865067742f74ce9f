"""Every popular model family decodes through the engine exactly as transformers' `generate` does.

Tiny random-init members of each family (tests/architectures.py), prompts longer than the
sliding window and full of repetition, so that copies are proposed and also rejected (the
rejected tail is then cropped out of windowed layers). Recurrent and hybrid families cannot roll
their cache back: they decode without speculation, say so, and still match `generate`.

Device and dtype come from COPYSPEC_TEST_DEVICE (default cpu) and COPYSPEC_TEST_DTYPE (default
float32), so the same matrix runs on a GPU. Speculation is promised identical in float32 only:
in bfloat16/float16 a verify block of K tokens rounds differently from K single-token steps, so
there only plain greedy is asserted (scripts/measure_divergence.py measures the rest).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from engine.cli import main
from engine.config import SamplingConfig, SpecConfig
from engine.decode import StopRules, decode
from engine.loading import LoadedModel
from engine.proposers import Proposal
from engine.proposers.copy import CopyProposer
from engine.schedule import BlockSchedule
from engine.sequence import SequenceState
from engine.session import Session
from engine.stats import SPECULATION_OFF, SPECULATION_ON, SPECULATION_RECURRENT
from engine.turn import generate_ids, run_turn

from architectures import ATTENTION_FAMILIES, RECURRENT_FAMILIES, WINDOW, tiny
from test_sampling import exact_joint, goodness_of_fit
from tiny_models import save

DEVICE = os.environ.get("COPYSPEC_TEST_DEVICE", "cpu")
DTYPE = getattr(torch, os.environ.get("COPYSPEC_TEST_DTYPE", "float32"))
EXACT = DTYPE is torch.float32
MAX_NEW = 64
PROMPT = (
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
    "def add3(a, b, c):\n    return add(add(a, b), c)\n\ndef add("
)
SAMPLED_FAMILIES = ("gemma3",)
"""The fast lane runs the χ² check on one family with alternating windowed layers (~10 s)."""

speculative_only_in_float32 = pytest.mark.skipif(
    not EXACT, reason="speculation is identical in float32; bf16/fp16 is measured instead"
)


def reference(lm: LoadedModel, ids: list[int], max_new_tokens: int = MAX_NEW) -> list[int]:
    inputs = torch.tensor([ids], device=lm.device)
    output = lm.model.generate(
        inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
        max_new_tokens=max_new_tokens, pad_token_id=lm.tokenizer.eos_token_id,
    )
    return output[0, len(ids) :].tolist()


def build(name: str) -> tuple[LoadedModel, list[int]]:
    lm = tiny(name, DEVICE, DTYPE, seed=1)
    ids = lm.tokenizer(PROMPT)["input_ids"]
    assert len(ids) > 4 * WINDOW
    return lm, ids


def perturbed(lm: LoadedModel, noise: float = 0.05) -> LoadedModel:
    """The target with small relative noise on its weights: a draft that agrees often."""
    model = copy.deepcopy(lm.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                noise_t = torch.randn(parameter.shape, generator=generator) * noise
                parameter.add_(noise_t.to(parameter.device, parameter.dtype) * parameter.std())
    return LoadedModel(model, lm.tokenizer, f"{lm.path}-draft", lm.device, lm.dtype)


class Counting:
    """The real copy proposer, observed: counts its proposals and how many were cut short."""

    def __init__(self, gamma_block: tuple[int, int]) -> None:
        gamma, block = gamma_block
        self.gamma = gamma
        self.copier = CopyProposer(BlockSchedule(block, adaptive=False, max_block=block))
        self.proposed = self.rejected = self.accepted = 0

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        return dataclasses.replace(self.copier.propose(state, limit), proposer=self)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.proposed += 1
        self.rejected += accepted < len(proposal.tokens)
        self.accepted += accepted
        self.copier.feedback(proposal, accepted)


@pytest.fixture(scope="module", params=ATTENTION_FAMILIES)
def attention(request: pytest.FixtureRequest) -> tuple[LoadedModel, list[int]]:
    return build(request.param)


@pytest.mark.timeout(60)
def test_plain_greedy_is_generate(attention: tuple[LoadedModel, list[int]]) -> None:
    """Same prefill shape as generate (the whole prompt in one forward): identical in any dtype."""
    lm, ids = attention
    tokens, stats = generate_ids(lm, ids, SpecConfig(method="greedy"), MAX_NEW)
    assert tokens == reference(lm, ids)
    assert stats.speculation == SPECULATION_OFF


@speculative_only_in_float32
@pytest.mark.timeout(60)
def test_copies_are_proposed_rejected_and_lossless(
    attention: tuple[LoadedModel, list[int]],
) -> None:
    lm, ids = attention
    expected = reference(lm, ids)
    rejected = accepted = 0
    for gamma_block in ((1, 8), (3, 16)):
        counting = Counting(gamma_block)
        state = SequenceState(lm.model, gamma=counting.gamma)
        state.sync(ids)
        tokens = decode(state, [counting], StopRules(lm.eos_token_ids, MAX_NEW))
        assert tokens == expected, f"γ={gamma_block[0]} K={gamma_block[1]}"
        rejected += counting.rejected
        accepted += counting.accepted
    assert rejected > 0, "no copy was rejected, so cropping went untested"
    assert accepted > 0, "no copied token was accepted"
    tokens, stats = generate_ids(lm, ids, SpecConfig(), MAX_NEW)
    assert tokens == expected and stats.speculation == SPECULATION_ON


@speculative_only_in_float32
@pytest.mark.timeout(60)
def test_copy_and_draft_is_lossless(attention: tuple[LoadedModel, list[int]]) -> None:
    """With each draft cut to what pays and as the proposers chose (the draft is the target's
    size, so only the second verifies drafts every time the copy has none)."""
    lm, ids = attention
    draft = perturbed(lm)
    for cost_aware in (True, False):
        spec = SpecConfig(method="copy+draft", gamma=2, block=8, draft_block=4,
                          cost_aware=cost_aware)
        tokens, stats = generate_ids(lm, ids, spec, MAX_NEW, draft=draft)
        assert tokens == reference(lm, ids), f"cost_aware={cost_aware}"
    assert stats.draft_attempts > 0


@speculative_only_in_float32
@pytest.mark.timeout(60)
def test_three_turns_rewinding_into_and_past_the_window(
    attention: tuple[LoadedModel, list[int]],
) -> None:
    """Turn 2 rewinds a few tokens (inside the window), turn 3 rewinds far past it. Each turn
    matches generate on its whole prompt, prefills exactly the tokens not shared with the
    cache, and leaves the cache equal to a fresh prefill of the same tokens."""
    lm, ids = attention
    state = SequenceState(lm.model)
    spec = SpecConfig(gamma=2, block=8)
    first, _ = run_turn(state, ids, lm, spec, StopRules(lm.eos_token_ids, 24))
    seen = [*ids, *first]
    extra = lm.tokenizer("\ndef mul(a, b):\n    return a * b\n")["input_ids"]
    turns = [seen[: len(seen) - WINDOW // 3] + extra, seen[: len(ids) - 2 * WINDOW] + extra]
    for turn, prompt in enumerate(turns, start=2):
        cached = state.tokens
        shared = min(_common_prefix(cached, prompt), len(prompt) - 1, len(cached) - 1)
        tokens, stats = run_turn(state, prompt, lm, spec, StopRules(lm.eos_token_ids, 24))
        assert tokens == reference(lm, prompt, 24), f"turn {turn}"
        assert stats.prefill_tokens == len(prompt) - 1 - shared, f"turn {turn} over-prefilled"
        fresh = SequenceState(lm.model)
        fresh.sync(state.tokens)
        _assert_same_cache(state, fresh)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", SAMPLED_FAMILIES)
@speculative_only_in_float32
def test_copy_sampling_follows_plain_sampling(name: str) -> None:
    _sampling_check(name)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", [n for n in ATTENTION_FAMILIES if n not in SAMPLED_FAMILIES])
@speculative_only_in_float32
def test_copy_sampling_follows_plain_sampling_everywhere(name: str) -> None:
    _sampling_check(name)


SAMPLING_RUNS = 400


def _sampling_check(name: str) -> None:
    """The cheap χ² of test_sampling over the first two tokens, the first a copy proposal."""
    lm, ids = build(name)
    config = SamplingConfig(temperature=2.0)
    law = exact_joint(lm, ids, config)
    state = SequenceState(lm.model, gamma=1)
    state.sync(ids)
    assert state.index.lookup(4), "no copy is proposed at the first step"
    spec = SpecConfig(gamma=1, block=4, adaptive=False)
    pairs = []
    for seed in range(SAMPLING_RUNS):
        rules = StopRules(frozenset(), max_new_tokens=2)
        sampling = SamplingConfig(temperature=2.0, seed=seed)
        pairs.append(tuple(run_turn(state, ids, lm, spec, rules, sampling)[0]))
    assert goodness_of_fit(pairs, law) > 1e-3


@pytest.fixture(scope="module", params=RECURRENT_FAMILIES)
def recurrent_model(request: pytest.FixtureRequest) -> tuple[LoadedModel, list[int]]:
    return build(request.param)


@pytest.mark.timeout(120)
def test_recurrent_families_decode_plainly_and_say_so(
    recurrent_model: tuple[LoadedModel, list[int]],
) -> None:
    """Every method gives generate's output; speculation is off and the session says why."""
    lm, ids = recurrent_model
    expected = reference(lm, ids)
    for method in ("greedy", "copy", "copy+draft"):
        draft = lm if method == "copy+draft" else None
        tokens, stats = generate_ids(lm, ids, SpecConfig(method=method), MAX_NEW, draft=draft)
        assert tokens == expected, method
        wanted = SPECULATION_OFF if method == "greedy" else SPECULATION_RECURRENT
        assert stats.speculation == wanted and stats.copy_attempts == 0
    sampling = SamplingConfig(temperature=1.0, seed=3)
    plain = generate_ids(lm, ids, SpecConfig(method="greedy"), 24, sampling)[0]
    assert generate_ids(lm, ids, SpecConfig(), 24, sampling)[0] == plain
    session = Session(lm, SpecConfig())
    assert session.notice is not None and "recurrent" in session.notice
    assert Session(lm, SpecConfig(method="greedy")).notice is None


@pytest.mark.timeout(120)
def test_recurrent_turns_that_rewind_prefill_again(
    recurrent_model: tuple[LoadedModel, list[int]],
) -> None:
    """A turn that extends the cached tokens reuses them; one that rewinds starts afresh."""
    lm, ids = recurrent_model
    state = SequenceState(lm.model)
    spec = SpecConfig()
    first, _ = run_turn(state, ids, lm, spec, StopRules(lm.eos_token_ids, 16))
    seen = [*ids, *first]
    extra = lm.tokenizer("\nagain:\n")["input_ids"]
    for prompt, reused in ((seen[:-1] + extra, len(seen) - 1), (ids[:-10] + extra, 0)):
        tokens, stats = run_turn(state, prompt, lm, spec, StopRules(lm.eos_token_ids, 16))
        assert tokens == reference(lm, prompt, 16)
        assert stats.reused_tokens == reused


def _assert_same_cache(ours: SequenceState, fresh: SequenceState) -> None:
    """Both hold every token; keys and values agree layer by layer (the last token's are fed
    by our next step, by the fresh prefill already)."""
    assert ours.cached_length in (len(ours.tokens), len(ours.tokens) - 1)
    for mine, theirs in zip(ours.cache.layers, fresh.cache.layers, strict=True):
        n = mine.keys.shape[-2]
        torch.testing.assert_close(mine.keys, theirs.keys[..., :n, :], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mine.values, theirs.values[..., :n, :], atol=1e-4, rtol=1e-4)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


@pytest.mark.timeout(120)
def test_cli_says_once_that_a_recurrent_model_decodes_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lm = tiny("lfm2", seed=1)
    save(lm, tmp_path / "lfm2")
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(["def add(a, b):", "again"]))
    assert main(["generate", "--model", str(tmp_path / "lfm2"), "--chat-file", str(chat),
                 "--device", "cpu", "--max-new-tokens", "8", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err.count("recurrent cache") == 1, err
    stats = json.loads(out)["stats"]
    assert stats["speculation"] == SPECULATION_RECURRENT and stats["copy_attempts"] == 0
