"""Edge cases: EOS inside an accepted block, stop strings, and loading errors that name paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.config import SpecConfig
from engine.decode import StopRules, _apply_stops
from engine.loading import LoadedModel, ModelLoadError, load_model
from engine.sequence import SequenceState
from engine.turn import generate_ids, run_turn

from tiny_models import loaded


@pytest.fixture(scope="module")
def cycling() -> tuple[LoadedModel, list[int], list[int]]:
    """A copying model, a prompt that already holds its greedy cycle, and the continuation."""
    lm = loaded("llama", seed=0, mixing=0.1)
    ids = lm.tokenizer("def add(a, b):\n")["input_ids"]
    ids = ids + generate_ids(lm, ids, SpecConfig(method="greedy"), 40)[0]
    return lm, ids, generate_ids(lm, ids, SpecConfig(method="greedy"), 40)[0]


def generated_until(lm: LoadedModel, ids: list[int], eos: int) -> list[int]:
    """Plain greedy decoding by transformers, ended by `eos`: what every path must reproduce."""
    output = lm.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=40,
                               eos_token_id=eos, pad_token_id=eos)
    return output[0, len(ids):].tolist()


def test_eos_inside_an_accepted_copy_is_cut_there(cycling) -> None:
    lm, ids, continuation = cycling
    eos = continuation[5]
    cut = continuation.index(eos)
    rules = StopRules(frozenset({eos}), max_new_tokens=40)
    tokens, stats = run_turn(SequenceState(lm.model), ids, lm, SpecConfig(block=16), rules)
    assert tokens == continuation[: cut + 1] == generated_until(lm, ids, eos)
    assert stats.stop_reason == "eos"
    assert stats.copied_tokens > 0 and stats.forward_passes < len(tokens)


def test_copied_tokens_are_those_the_eos_cut_kept(cycling) -> None:
    """A copy accepted past the EOS counts only the tokens left before the cut, so the copied
    share of a turn that ends at end-of-turn stays at most 1."""
    lm, ids, _ = cycling
    blocks: list[list[int]] = []
    run_turn(SequenceState(lm.model), ids, lm, SpecConfig(block=16), StopRules(frozenset(), 40),
             on_tokens=blocks.append)
    assert len(blocks[0]) > 2  # the first pass accepts a copy of several tokens
    eos = blocks[0][0]
    rules = StopRules(frozenset({eos}), max_new_tokens=40)
    tokens, stats = run_turn(SequenceState(lm.model), ids, lm, SpecConfig(block=16), rules)
    assert tokens == [eos] == generated_until(lm, ids, eos)
    assert (stats.new_tokens, stats.forward_passes, stats.copy_attempts) == (1, 1, 1)
    assert stats.copied_tokens == 1 and stats.copied_share == 1.0


def test_stop_string_ends_the_turn_after_the_token_that_completes_it(cycling) -> None:
    lm, ids, continuation = cycling
    text = lm.tokenizer.decode(continuation)
    stop = text[6:8]
    rules = StopRules(frozenset(), 40, stop_strings=[stop], decode_text=lm.tokenizer.decode)
    tokens, stats = run_turn(SequenceState(lm.model), ids, lm, SpecConfig(), rules)
    decoded = lm.tokenizer.decode(tokens)
    assert decoded.endswith(stop) and decoded.count(stop) == 1
    assert stats.stop_reason == "stop_string"
    assert tokens == continuation[: len(tokens)]


def test_a_stop_string_before_an_eos_in_one_accepted_block_ends_the_turn_there() -> None:
    """One accepted block can complete a stop string and then hold an EOS (a prediction copied
    whole does): the stop string comes first, so the block is cut there, as plain decoding,
    one token at a time, would have stopped. Token i stands for letter i here."""
    rules = StopRules(frozenset({9}), 40, stop_strings=["bc"],
                      decode_text=lambda ids: "".join("abcdefghij"[i] for i in ids))
    assert _apply_stops([0, 1, 2, 3, 9], [], rules) == ([0, 1, 2], "stop_string")
    assert _apply_stops([3, 9, 1, 2], [], rules) == ([3, 9], "eos")
    assert _apply_stops([3, 4], [1], rules) == ([3, 4], "")
    assert _apply_stops([3, 4], [0] * 39, rules) == ([3], "length")


def test_missing_model_path_is_named() -> None:
    with pytest.raises(ModelLoadError, match="/no/such/model"):
        load_model("/no/such/model", device="cpu")


def test_broken_model_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_model(tmp_path, device="cpu")


def test_uncached_hub_id_fails_offline_with_its_name() -> None:
    with pytest.raises(ModelLoadError, match="nobody/not-a-model"):
        load_model("nobody/not-a-model", device="cpu")


def test_bad_device_and_dtype_are_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="device"):
        load_model(tiny_model_dir, device="tpu")
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model(tiny_model_dir, device="cpu", dtype="int3")


def test_saved_model_loads_offline_and_decodes_the_same(
    tiny_model_dir: Path, copying_llama: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = load_model(tiny_model_dir, device="cpu")
    assert lm.dtype == torch.float32 and lm.device.type == "cpu"
    assert lm.eos_token_ids == copying_llama.eos_token_ids
    ids = lm.tokenizer("def add(a, b):")["input_ids"]
    assert generate_ids(lm, ids)[0] == generate_ids(copying_llama, ids)[0]
