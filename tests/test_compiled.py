"""The compiled, static-cache decode path (engine/compiled.py) gives `generate`'s tokens, and
anything it cannot take decodes eagerly after one warning.

Compiling takes tens of seconds per width on a small CPU, so the fast lane runs the static
path with `torch.compile` replaced by the model itself: every bookkeeping step (bucketing and
padding, crops that move the write position back, a cache that grows across turns, eager
passes on the static cache) is checked over every attention family. The slow lane compiles for
real, on two buckets, on COPYSPEC_TEST_DEVICE (default cpu; on CUDA that is CUDA graphs), for
llama and qwen2 or the families COPYSPEC_COMPILED_FAMILIES names (comma-separated, or `all`:
about a minute each here).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

import engine.compiled
from engine.chat import render_ids
from engine.cli import build_parser
from engine.compiled import bucket, compiles, use_compile
from engine.config import COMPILE, SpecConfig
from engine.decode import StopRules, decode
from engine.loading import LoadedModel
from engine.options import load_from_args
from engine.proposers import Proposal, Proposer
from engine.sequence import SequenceState
from engine.stats import TurnStats
from engine.turn import build_proposers

from architectures import ATTENTION_FAMILIES, tiny

DEVICE = os.environ.get("COPYSPEC_TEST_DEVICE", "cpu")
COMPILED = os.environ.get("COPYSPEC_COMPILED_FAMILIES", "llama,qwen2")
COMPILED_FAMILIES = ATTENTION_FAMILIES if COMPILED == "all" else tuple(COMPILED.split(","))
MAX_NEW = 40
TURNS = (
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef add(",
    "Again, with add first and sub second: def add(a, b):\n    return a + b\n",
    "Once more, for these too:\n" + "def mul(a, b):\n    return a * b\n" * 8,
)
"""A chat whose answers repeat its prompts, so copies are proposed, accepted and rejected."""
SPEC = SpecConfig(block=4, max_block=24)
"""Short copies, so verify widths land both inside and beyond the compiled buckets."""


def reference(lm: LoadedModel, ids: list[int], max_new_tokens: int = MAX_NEW) -> list[int]:
    inputs = torch.tensor([ids], device=lm.device)
    output = lm.model.generate(
        inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
        max_new_tokens=max_new_tokens, pad_token_id=lm.tokenizer.eos_token_id,
    )
    return output[0, len(ids) :].tolist()


class Counting:
    """A proposer, observed: how many of its proposals were accepted in part or not at all."""

    def __init__(self, inner: Proposer) -> None:
        self.inner, self.source = inner, inner.source
        self.attempts = self.rejected = 0

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        return dataclasses.replace(self.inner.propose(state, limit), proposer=self)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.attempts += 1
        self.rejected += accepted < len(proposal.tokens)
        self.inner.feedback(proposal, accepted)


class Chat:
    """A multi-turn chat with copy speculation on one `SequenceState`, as a session runs it
    (reserve, sync reusing the cached prefix, decode), recording what the path did."""

    def __init__(self, lm: LoadedModel) -> None:
        self.lm, self.state = lm, SequenceState(lm.model)
        self.prompts: list[list[int]] = []
        self.answers: list[list[int]] = []
        self.capacities: list[int] = []
        self.stats = TurnStats()
        self.copier = Counting(build_proposers(SPEC)[0])

    def run(self) -> Chat:
        messages: list[dict[str, str]] = []
        for text in TURNS:
            messages.append({"role": "user", "content": text})
            ids = render_ids(self.lm.tokenizer, messages)
            self.state.reserve(len(ids) + MAX_NEW)
            self.state.sync(ids)
            rules = StopRules(self.lm.eos_token_ids, MAX_NEW)
            tokens = decode(self.state, [self.copier], rules, stats=self.stats)
            self.prompts.append(ids)
            self.answers.append(tokens)
            if self.state.static is not None:
                self.capacities.append(self.state.static.capacity)
            answer = self.lm.tokenizer.decode(tokens, skip_special_tokens=True)
            messages.append({"role": "assistant", "content": answer})
        return self


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """`torch.compile` hands the model back: the static path runs eagerly, in milliseconds."""
    monkeypatch.setattr(torch, "compile", lambda model, **_: model)


def assert_lossless(lm: LoadedModel, chat: Chat) -> None:
    """Every turn is generate's greedy output, and the eager path's."""
    use_compile(lm.model, "off")
    eager = Chat(lm).run()
    assert eager.state.static is None
    assert chat.prompts == eager.prompts
    assert chat.answers == eager.answers
    for ids, tokens in zip(chat.prompts, chat.answers, strict=True):
        assert tokens == reference(lm, ids)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
@pytest.mark.usefixtures("uncompiled")
def test_the_static_path_is_lossless_over_a_chat(family: str) -> None:
    lm = tiny(family, seed=1, mixing=0.12)
    use_compile(lm.model, "on")
    chat = Chat(lm).run()
    assert chat.state.static is not None, "the static path was not taken"
    assert chat.stats.copied_tokens > 0
    assert chat.copier.rejected > 0, "no copy was ever rejected, so crops went untested"
    assert len(set(chat.capacities)) > 1, "the cache never grew across turns"
    assert_lossless(lm, chat)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("uncompiled")
def test_padding_never_passes_a_learned_position_table() -> None:
    """GPT-2 cut to 96 position rows, decoding up to its last one: passes whose bucket would
    reach past them run eagerly on the static cache (padding there would index no row)."""
    lm = tiny("gpt2", seed=1, mixing=0.12)
    rows = 96
    table = lm.model.transformer.wpe.weight.detach()[:rows]
    lm.model.transformer.wpe = torch.nn.Embedding.from_pretrained(table)
    lm.model.config.n_positions = rows
    ids = lm.tokenizer("def add(a, b):\n    return a + b\n" * 2)["input_ids"]
    budget = rows - len(ids)
    use_compile(lm.model, "on")
    state = SequenceState(lm.model)
    state.sync(ids)
    tokens = decode(state, build_proposers(SPEC), StopRules(lm.eos_token_ids, budget))
    assert state.static is not None, "a pass failed and decoding went eager"
    assert len(state.tokens) == rows
    assert tokens == reference(lm, ids, budget)


@pytest.mark.timeout(60)
def test_a_failing_compile_decodes_eagerly_after_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(model: torch.nn.Module, **_: object) -> Callable[..., object]:
        def run(*args: object, **kwargs: object) -> object:
            raise RuntimeError("inductor exploded\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    lm = tiny("llama", seed=1, mixing=0.12)
    use_compile(lm.model, "on")
    with caplog.at_level(logging.WARNING, logger="engine.compiled"):
        first = Chat(lm).run()
        second = Chat(lm).run()
    assert first.state.static is None and second.state.static is None
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().endswith(
        "compiled decoding is off (RuntimeError: inductor exploded); decoding eagerly")
    assert first.answers == second.answers
    assert_lossless(lm, first)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("family", "why"), [
    ("lfm2", "cannot be rewound"),
    ("llama", "does not support torch.compile"),
])
def test_what_it_cannot_take_decodes_eagerly_after_one_warning(
    family: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    lm = tiny(family, seed=1, mixing=0.12)
    if family == "llama":
        lm.model._can_compile_fullgraph = False  # as remote code that never claimed support
    use_compile(lm.model, "on")
    with caplog.at_level(logging.WARNING, logger="engine.compiled"):
        states = [SequenceState(lm.model) for _ in range(2)]
    assert all(state.static is None for state in states)
    assert len(caplog.records) == 1
    assert why in caplog.records[0].getMessage()
    assert "decoding eagerly" in caplog.records[0].getMessage()


def test_auto_compiles_where_it_was_measured_to_pay_and_on_and_off_are_obeyed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert COMPILE == "auto"
    assert not compiles("auto", cpu), "on a CPU it did not pay (docs/performance.md)"
    monkeypatch.setattr(engine.compiled, "AUTO_COMPILES", frozenset({"cuda"}))
    assert (compiles("auto", cpu), compiles("auto", cuda)) == (False, True)
    assert compiles("on", cpu) and compiles("on", cuda)
    assert not compiles("off", cpu) and not compiles("off", cuda)
    lm = tiny("llama")
    assert SequenceState(lm.model).static is None  # the default, on this CPU
    with pytest.raises(ValueError, match="auto, on, off"):
        use_compile(lm.model, "yes")


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("uncompiled")
def test_the_flag_reaches_the_model(tiny_model_dir: Path) -> None:
    parser = build_parser()
    assert parser.parse_args(["generate", "--prompt", "x"]).compile == COMPILE
    assert parser.parse_args(["bench", "--compile", "on"]).compile == "on"
    for setting, compiled in (("on", True), ("off", False)):
        args = parser.parse_args(["generate", "--prompt", "x", "--model", str(tiny_model_dir),
                                  "--compile", setting])
        lm = load_from_args(args)
        assert (SequenceState(lm.model).static is not None) is compiled


def test_widths_pad_up_to_their_bucket() -> None:
    assert [bucket(w) for w in (1, 2, 3, 5, 17, 256)] == [1, 2, 4, 8, 32, 256]
    assert bucket(257) is None


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("family", COMPILED_FAMILIES)
def test_compiled_decoding_is_lossless_over_a_chat(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Really compiled (inductor on a CPU), two buckets to keep compiling bounded: copies of
    up to 7 tokens verify padded to 8, longer ones eagerly on the static cache. One graph per
    bucket and cache size: moving the write position never recompiles."""
    monkeypatch.setattr(engine.compiled, "BUCKETS", (1, 8))
    lm = tiny(family, DEVICE, seed=1, mixing=0.12)
    use_compile(lm.model, "on")
    graphs = counters["stats"]["unique_graphs"]
    chat = Chat(lm).run()
    assert chat.state.static is not None, "compiling failed: decoding went eager"
    assert counters["stats"]["unique_graphs"] - graphs == 2 * len(set(chat.capacities))
    assert chat.stats.copied_tokens > 0
    assert chat.copier.rejected > 0
    assert_lossless(lm, chat)
