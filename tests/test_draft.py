"""Draft-model speculation, alone and behind copying: lossless, in sync, and worth its cost."""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import schedule
from engine.cli import main
from engine.config import SamplingConfig, SpecConfig
from engine.decode import StopRules, decode
from engine.loading import LoadedModel
from engine.options import UsageError, load_draft_from_args
from engine.paths import demo_draft_model_path, demo_model_path
from engine.proposers import Proposal
from engine.proposers.copy import CopyProposer
from engine.proposers.draft import DraftProposer
from engine.sampling import Sampler
from engine.schedule import BlockSchedule
from engine.sequence import SequenceState
from engine.session import Session
from engine.stats import TurnStats
from engine.turn import generate_ids

from tiny_models import build_model, build_tokenizer, loaded, model_config, save

ARCHS = ("llama", "qwen2", "gpt2")
REPETITIVE = "def add(a, b):\n    return a + b\n" * 3 + "def add("
FRESH = "The quick brown fox jumps over 1 lazy dog!"
MAX_NEW = 32


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread, and the CPU is shared with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturbed(lm: LoadedModel, noise: float, seed: int = 0) -> LoadedModel:
    """The target with relative Gaussian noise on its weights: a draft that agrees often."""
    model = copy.deepcopy(lm.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * noise
                               * parameter.std())
    return LoadedModel(model, lm.tokenizer, f"{lm.path}-noise{noise}", lm.device, lm.dtype)


def unrelated(lm: LoadedModel, arch: str, seed: int) -> LoadedModel:
    """Another random model over the same tokenizer: a draft that is rejected almost always."""
    model = build_model(arch, lm.tokenizer, seed, 0.2)
    return LoadedModel(model, lm.tokenizer, f"tiny-{arch}-seed{seed}", lm.device, lm.dtype)


def reference(lm: LoadedModel, ids: list[int], max_new_tokens: int) -> list[int]:
    output = lm.model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=max_new_tokens,
        pad_token_id=lm.tokenizer.eos_token_id,
    )
    return output[0, len(ids) :].tolist()


SETTINGS = [  # (method, γ, K, D, adaptive)
    ("draft", 3, 10, 1, False), ("draft", 3, 10, 3, True), ("draft", 3, 10, 5, False),
    ("draft", 3, 10, 5, True), ("copy+draft", 1, 4, 2, True), ("copy+draft", 3, 16, 5, False),
    ("copy+draft", 2, 8, 3, True), ("copy+draft", 3, 10, 1, False),
]


@pytest.fixture(scope="module", params=[(a, m) for a in ARCHS for m in (0.1, 0.25)],
                ids=lambda p: f"{p[0]}-mixing{p[1]}")
def target(request: pytest.FixtureRequest) -> tuple[str, float, LoadedModel]:
    arch, mixing = request.param
    return arch, mixing, loaded(arch, seed=1, mixing=mixing)


def test_every_draft_setting_matches_generate(target: tuple[str, float, LoadedModel]) -> None:
    """Greedy output is generate's, whatever the draft, D, adaptivity, γ or K."""
    arch, mixing, lm = target
    # A close draft is mostly accepted, an unrelated one mostly rejected: both paths run.
    drafts = itertools.cycle((perturbed(lm, 0.05), unrelated(lm, arch, seed=7)))
    accepted = copied = 0
    for prompt in (REPETITIVE, FRESH):
        ids = lm.tokenizer(prompt)["input_ids"]
        expected = reference(lm, ids, MAX_NEW)
        for draft, (method, gamma, block, draft_block, adaptive) in zip(
            drafts, SETTINGS, strict=False
        ):
            spec = SpecConfig(method=method, gamma=gamma, block=block, adaptive=adaptive,
                              max_block=64, draft_block=draft_block)
            tokens, stats = generate_ids(lm, ids, spec, MAX_NEW, draft=draft)
            assert tokens == expected, f"{draft.path} {spec}"
            assert stats.new_tokens == len(tokens)
            assert stats.draft_attempts <= stats.draft_forward_passes
            accepted += stats.drafted_tokens
            copied += stats.copied_tokens
    assert accepted > 0, "no draft token was ever accepted, so verification was not tested"
    if mixing < 0.2:
        assert copied > 0, "no copy was ever accepted, so copy+draft was not tested"


class SyncChecked:
    """The real draft proposer, observed: before each proposal it records how far behind the
    target the draft was; after it, the draft's cache must equal a fresh prefill."""

    def __init__(self, drafter: DraftProposer) -> None:
        self.drafter = drafter
        self.caught_up = 0
        self.cropped = 0

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        draft = self.drafter.draft
        common = _common_prefix(draft.tokens, state.tokens)
        self.caught_up = max(self.caught_up, len(state.tokens) - common)
        self.cropped = max(self.cropped, len(draft.tokens) - common)
        proposal = self.drafter.propose(state, limit)
        assert draft.tokens == [*state.tokens, *proposal.tokens]
        assert draft.cached_length == len(draft.tokens) - 1
        fresh = SequenceState(draft.model)
        fresh.sync(draft.tokens)  # a fresh prefill also holds the last token, still pending here
        for ours, theirs in zip(draft.cache.layers, fresh.cache.layers, strict=True):
            torch.testing.assert_close(ours.keys, theirs.keys[..., :-1, :], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(
                ours.values, theirs.values[..., :-1, :], atol=1e-4, rtol=1e-4
            )
        return proposal

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.drafter.feedback(proposal, accepted)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def test_draft_cache_stays_in_sync_after_copies_and_rejections() -> None:
    """Tokens accepted by copying are fed to the draft, rejected drafts are cropped, and no
    context token is lost (the reference crops one too many after a rejection)."""
    lm = loaded("llama", seed=1, mixing=0.1)
    draft = perturbed(lm, 0.3)
    ids = lm.tokenizer(REPETITIVE)["input_ids"]
    state = SequenceState(lm.model, gamma=2)
    state.sync(ids)
    drafter = DraftProposer(SequenceState(draft.model), block=4, adaptive=False,
                            width=lm.model.config.vocab_size)
    checked = SyncChecked(drafter)
    copier = CopyProposer(BlockSchedule(8, adaptive=False, max_block=8))
    rules = StopRules(lm.eos_token_ids, 64)
    tokens = decode(state, [copier, checked], rules)
    assert tokens == reference(lm, ids, 64)
    assert checked.caught_up > 1, "the draft never had copied tokens to catch up on"
    assert checked.cropped > 0, "no drafted token was ever rejected and cropped"


def test_session_keeps_the_draft_in_sync_across_turns() -> None:
    """Each turn answers as generate does, and the draft cache is reused, not rebuilt."""
    lm = loaded("llama", seed=1, mixing=0.1)
    session = Session(lm, SpecConfig(method="copy+draft"), draft=perturbed(lm, 0.1))
    for message in ("def add(a, b):", "now the same again, renamed"):
        result = session.send(message, max_new_tokens=32)
        assert result.token_ids == reference(lm, result.prompt_ids, 32)
        assert session.draft_state is not None
        assert session.draft_state.tokens[: len(result.prompt_ids)] == result.prompt_ids
    assert result.stats.drafted_tokens + result.stats.copied_tokens > 0


def test_draft_acceptance_saves_target_passes() -> None:
    """A close draft is accepted often, so the target runs far less than once per token; the
    draft's forwards are counted separately, one per drafted token. (The draft is the target's
    size, so it never pays in seconds: the cost-aware chooser is off to count passes.)"""
    lm = loaded("llama", seed=1, mixing=0.25)
    ids = lm.tokenizer(FRESH)["input_ids"]
    spec = SpecConfig(method="draft", draft_block=4, adaptive=False, cost_aware=False)
    tokens, stats = generate_ids(lm, ids, spec, 64, draft=perturbed(lm, 0.05))
    assert tokens == reference(lm, ids, 64)
    assert stats.draft_tau > 1.0
    assert stats.forward_passes < 0.6 * stats.new_tokens
    assert stats.forward_passes - stats.draft_attempts in (0, 1)  # the last step may not draft
    assert stats.draft_attempts <= stats.draft_forward_passes <= 4 * stats.draft_attempts


def test_drafts_with_a_differently_padded_vocabulary() -> None:
    """Same tokenizer, different padded logit widths (as Qwen2.5-0.5B vs 7B): the draft never
    proposes an id the target lacks, and its q rows are padded to the target's width."""
    tokenizer = build_tokenizer()
    config = model_config("llama", len(tokenizer) + 8, tokenizer.eos_token_id)
    torch.manual_seed(4)
    wide = LoadedModel(AutoModelForCausalLM.from_config(config).eval(), tokenizer, "wide",
                       torch.device("cpu"), torch.float32)
    narrow = LoadedModel(build_model("llama", tokenizer, 4), tokenizer, "narrow",
                         torch.device("cpu"), torch.float32)
    ids = tokenizer(FRESH)["input_ids"]
    spec = SpecConfig(method="draft", draft_block=3)
    sampling = SamplingConfig(temperature=1.0, seed=3)
    for lm, draft in ((wide, narrow), (narrow, wide)):
        assert generate_ids(lm, ids, spec, 16, draft=draft)[0] == reference(lm, ids, 16)
        tokens, stats = generate_ids(lm, ids, spec, 16, sampling, draft=draft)
        assert len(tokens) == stats.new_tokens and max(tokens) < lm.model.config.vocab_size


def test_a_draft_with_a_shorter_context_stops_at_its_window() -> None:
    """Past the draft's window the target decodes alone, still exactly as generate does."""
    lm = loaded("gpt2", seed=1, mixing=0.25)
    config = model_config("gpt2", len(lm.tokenizer), lm.tokenizer.eos_token_id)
    config.n_positions = 56
    torch.manual_seed(0)
    short = LoadedModel(AutoModelForCausalLM.from_config(config).eval(), lm.tokenizer, "short",
                        lm.device, lm.dtype)
    ids = lm.tokenizer(FRESH)["input_ids"]
    spec = SpecConfig(method="draft", cost_aware=False)  # a draft this size never pays
    tokens, stats = generate_ids(lm, ids, spec, 32, draft=short)
    assert tokens == reference(lm, ids, 32)
    assert 0 < stats.draft_attempts < stats.forward_passes


def test_sampled_copy_draft_is_seeded() -> None:
    """The same seed gives the same sampled turn; the draft shares the target's generator."""
    lm = loaded("llama", seed=1, mixing=0.1)
    draft = perturbed(lm, 0.05)
    ids = lm.tokenizer(REPETITIVE)["input_ids"]
    spec = SpecConfig(method="copy+draft")
    runs = [generate_ids(lm, ids, spec, 32, SamplingConfig(temperature=0.7, seed=seed),
                         draft=draft)
            for seed in (1, 1, 2)]
    assert runs[0][0] == runs[1][0]
    assert runs[0][1].drafted_tokens + runs[0][1].copied_tokens > 0


def test_draft_methods_need_a_draft_with_the_same_vocabulary() -> None:
    lm = loaded("llama", seed=1)
    with pytest.raises(ValueError, match="needs a draft model"):
        Session(lm, SpecConfig(method="draft"))
    other = build_tokenizer()
    other.add_tokens(["<extra>"])
    stranger = LoadedModel(build_model("llama", other, 0), other, "other", lm.device, lm.dtype)
    with pytest.raises(ValueError, match="does not share the vocabulary"):
        Session(lm, SpecConfig(method="copy+draft"), draft=stranger)


def test_cli_draft_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The draft is the target's size, so drafting never pays and the chooser only probes it:
    here on every pass, so the CLI's draft path runs."""
    monkeypatch.setattr(schedule, "PROBE_AFTER", 0)
    lm = loaded("llama", seed=1, mixing=0.1)
    target = str(save(lm, tmp_path / "target"))
    draft = str(save(perturbed(lm, 0.1), tmp_path / "draft"))
    common = ["generate", "--model", target, "--prompt", REPETITIVE, "--max-new-tokens", "24",
              "--json", "--device", "cpu"]
    assert main([*common, "--method", "copy"]) == 0
    expected = json.loads(capsys.readouterr().out)["token_ids"]
    assert main([*common, "--method", "copy+draft", "--draft-model", draft]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["token_ids"] == expected
    assert out["stats"]["draft_forward_passes"] >= out["stats"]["draft_attempts"] > 0
    assert main([*common, "--method", "draft"]) == 2
    assert "needs --draft-model" in capsys.readouterr().err


SAMPLES = 1500
"""Draws in the full (slow) lane; the fast lane's FAST_SAMPLES keep power against gross bias."""
FAST_SAMPLES = 300
CRITICAL_P = 1e-4


def chi_square_critical(dof: int, p: float) -> float:
    """Upper p-quantile of χ²(dof) by the Wilson–Hilferty approximation (no scipy here)."""
    z = math.sqrt(2) * _erfinv(1 - 2 * p)
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def _erfinv(y: float) -> float:
    return float(torch.erfinv(torch.tensor(y, dtype=torch.float64)))


def exact_pairs(lm: LoadedModel, ids: list[int], sampler: Sampler) -> torch.Tensor:
    """P(t1, t2) under plain sampling with the sampler's filters, as a (V, V) table."""
    with torch.no_grad():
        first = sampler.probs(lm.model(torch.tensor([ids])).logits[0, -1])
        vocab = first.shape[-1]
        batch = torch.cat([torch.tensor([ids]).expand(vocab, -1),
                           torch.arange(vocab)[:, None]], dim=1)
        second = sampler.probs(lm.model(batch).logits[:, -1])
    return first[:, None] * second


@pytest.mark.timeout(600)
@pytest.mark.parametrize("samples", [pytest.param(FAST_SAMPLES, id="fast"),
                                     pytest.param(SAMPLES, id="full", marks=pytest.mark.slow)])
def test_draft_sampling_follows_the_target_distribution(samples: int) -> None:
    """The first two sampled tokens, drafted two at a time by a draft that is often wrong, are
    distributed as plain sampling from the target (same temperature, top-k, top-p) draws them.

    Tolerance: Pearson's χ² over the (t1, t2) cells with expected count ≥ 5 (the rest pooled)
    must stay below the χ² quantile for p = 1e-4, so a correct sampler fails this seeded test
    with probability 1e-4. Power, measured with 1000 samples against 18 dof (limit ≈ 45):
    verifying each draft token with the previous token's q row gives χ² ≈ 150, drafting the
    argmax while reporting q gives ≈ 1260. (Dropping q, i.e. the one-hot copy rule, stays
    lossless for any independent draft; it only lowers acceptance.)"""
    lm = loaded("llama", seed=3, mixing=0.2)
    draft = perturbed(lm, 0.1, seed=2)
    ids = lm.tokenizer("x = f(")["input_ids"]
    sampler = Sampler(SamplingConfig(temperature=2.0, top_k=20, top_p=0.95, seed=11), lm.device)
    expected = exact_pairs(lm, ids, sampler) * samples
    state = SequenceState(lm.model)
    drafter = DraftProposer(SequenceState(draft.model), block=2, adaptive=False, sampler=sampler,
                            width=lm.model.config.vocab_size)
    counts = torch.zeros_like(expected)
    stats = TurnStats()
    for _ in range(samples):
        state.sync(ids)
        tokens = decode(state, [drafter], StopRules(frozenset(), 3), sampler, stats=stats)
        counts[tokens[0], tokens[1]] += 1
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum().view(1)])
    wanted = torch.cat([expected[big], expected[~big].sum().view(1)])
    chi2 = float(((observed - wanted) ** 2 / wanted).sum())
    dof = int(big.sum())
    assert chi2 < chi_square_critical(dof, CRITICAL_P), f"χ²={chi2:.1f} over {dof} dof"
    acceptance = stats.drafted_tokens / stats.draft_forward_passes
    assert 0.2 < acceptance < 0.8, f"acceptance {acceptance:.2f}: one branch goes untested"


def test_the_demo_draft_pairs_only_with_the_demo_model() -> None:
    """Without --draft-model a drafting method gets the demo draft for the demo model, and a
    clear error for any other target, the default model included (another tokenizer)."""
    args = argparse.Namespace(draft_model=None, model=str(demo_model_path()), device="cpu",
                              dtype="float32", trust_remote_code=False, compile="off")
    draft = load_draft_from_args(args, "copy+draft")
    assert draft is not None and Path(draft.path) == demo_draft_model_path()
    for model in (None, "engine/models/smollm2-refine"):
        with pytest.raises(UsageError, match="needs --draft-model"):
            load_draft_from_args(argparse.Namespace(**{**vars(args), "model": model}), "draft")
    assert load_draft_from_args(argparse.Namespace(**{**vars(args), "model": None}), "copy") is None
