"""The SmolLM2 refinement adapter: its examples, its training command and loading it merged.

Training runs on a tiny random Llama (tests/tiny_models.py) instead of SmolLM2, so the suite
stays fast; the code path is the one the real run takes.
"""

from __future__ import annotations

import io
import json
import random
import tokenize
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from engine.chat import render_ids
from engine.cli import main as cli_main
from engine.loading import load_model
from engine.paths import ModelLoadError, locate_model
from engine.prompt_format import SYSTEM_PROMPT, edit_request, fence
from engine.training import adapter
from engine.training.adapter_data import KINDS, Answer, ExampleSource, edit_rename, functions
from engine.training.adapter_eval import adds_and_keeps
from engine.training.data import is_held_out, split_files

from tiny_models import build_tokenizer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def files() -> tuple[list[Path], list[Path]]:
    """A few training files and the held-out ones."""
    train, held_out = split_files()
    return random.Random(0).sample(train, 12), held_out


@pytest.fixture(scope="module")
def held_out_functions(files: tuple[list[Path], list[Path]]) -> frozenset[str]:
    return frozenset(functions(files[1]))


@pytest.fixture(scope="module")
def source(files: tuple[list[Path], list[Path]], held_out_functions: frozenset[str]
           ) -> ExampleSource:
    return ExampleSource(files[0], exclude=held_out_functions)


def tokens(code: str) -> list[tokenize.TokenInfo]:
    return [t for t in tokenize.generate_tokens(io.StringIO(code).readline)
            if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENDMARKER)]


def changed_tokens(before: str, after: str) -> list[tuple[str, str, int]]:
    """(old, new, token type) where two codes of the same token count differ."""
    a, b = tokens(before), tokens(after)
    assert len(a) == len(b)
    return [(x.string, y.string, x.type) for x, y in zip(a, b, strict=True) if x.string != y.string]


def check_edit(answer: Answer) -> None:
    """The target is the reference with exactly the kind's edit made."""
    before, after, kind = answer.reference, answer.target, answer.kind
    old_lines, new_lines = before.split("\n"), after.split("\n")
    if kind.startswith("rename_"):
        changes = changed_tokens(before, after)
        assert changes and len({(old, new) for old, new, _ in changes}) == 1
        old, new, kind_of_token = changes[0]
        assert kind_of_token == tokenize.NAME and new not in {t.string for t in tokens(before)}
        assert old not in {t.string for t in tokens(after)}
    elif kind == "literal":
        [(_, _, kind_of_token)] = changed_tokens(before, after)
        assert kind_of_token in (tokenize.NUMBER, tokenize.STRING)
    elif kind == "delete_line":
        assert len(new_lines) == len(old_lines) - 1 and set(new_lines) <= set(old_lines)
    elif kind == "insert_line":
        assert len(new_lines) == len(old_lines) + 1 and set(old_lines) <= set(new_lines)
    elif kind in ("docstring", "type_hints"):
        assert adds_and_keeps(kind, before, after)
    else:
        assert kind == "no_change" and after == before


def test_examples_are_the_servers_prompts_with_the_exact_edit_as_answer(
    source: ExampleSource,
) -> None:
    rng = random.Random(3)
    for kind in KINDS:
        for _ in range(6):
            example = source.example(rng, kind)
            system, user, answer = example.messages
            assert system == {"role": "system", "content": SYSTEM_PROMPT}
            assert user["role"] == "user" and answer["role"] == "assistant"
            instruction = user["content"].removeprefix(fence(example.reference) + "\n")
            assert "\n" not in instruction
            assert user["content"] == edit_request(example.reference, instruction)
            assert answer["content"] == fence(example.target)
            [edit] = example.answers
            assert edit.kind == kind
            check_edit(edit)
    follow_up = source.example(rng, "rename_local", turns=3)
    assert len(follow_up.answers) > 1 and len(follow_up.messages) == 1 + 2 * len(follow_up.answers)
    for number, edit in enumerate(follow_up.answers):
        if number:  # a follow-up is the instruction alone, on the previous answer
            request = follow_up.messages[2 * number + 1]
            assert request["role"] == "user" and "```" not in request["content"]
            assert edit.reference == follow_up.answers[number - 1].target
        assert follow_up.messages[2 * number + 2]["content"] == fence(edit.target)
        check_edit(edit)


def test_rows_are_the_rendered_chat_with_loss_on_the_answers_only(
    source: ExampleSource,
) -> None:
    tok = build_tokenizer()
    example = source.example(random.Random(5), "rename_parameter", turns=2)
    row = adapter.encode(tok, example, edit_weight=3.0)
    # the whole conversation as the template renders it (the final newline comes after the
    # end-of-turn token, where generation stops)
    assert tok.decode(row.ids) + "\n" == tok.apply_chat_template(example.messages, tokenize=False)
    first_prompt = render_ids(tok, example.messages[:2])  # what a session sends on turn 1
    assert row.ids[: len(first_prompt)] == first_prompt
    assert set(row.weights[: len(first_prompt)]) == {0.0} and row.weights[len(first_prompt)] > 0
    answers = [t for t, w in zip(row.ids, row.weights, strict=True) if w > 0]
    assert tok.decode(answers) == "".join(
        m["content"] + tok.eos_token for m in example.messages if m["role"] == "assistant")
    weighted = [w for w in row.weights if w > 1]
    assert 0 < len(weighted) < len(answers) / 2  # the renamed spots, not the copied rest


def test_held_out_functions_never_reach_training(
    files: tuple[list[Path], list[Path]], held_out_functions: frozenset[str],
    source: ExampleSource,
) -> None:
    train, held_out = files
    assert held_out and not any(is_held_out(p) for p in train)
    assert all(is_held_out(p) for p in held_out)
    assert held_out_functions and not held_out_functions & set(source.codes)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """Two training steps on the tiny Llama, run from an empty working directory."""
    work = tmp_path_factory.mktemp("work")
    out = work / "adapter"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert adapter.main(["--out", str(out), "--base", str(tiny_model_dir), "--steps", "2",
                             "--accumulate", "1", "--max-files", "4", "--max-lines", "6",
                             "--max-tokens", "1000", "--threads", "1", "--log-every", "1"]) == 0
    return out


def test_training_writes_only_its_adapter_to_out(trained: Path, tiny_model_dir: Path) -> None:
    assert sorted(p.name for p in trained.parent.iterdir()) == ["adapter"]
    assert sorted(p.name for p in trained.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "training.json"]
    record = json.loads((trained / "training.json").read_text())
    assert record["compute"]["optimizer_steps"] == 2 and record["compute"]["answer_tokens"] > 0
    assert [p["step"] for p in record["loss_curve"]] == [1, 2]
    weights = load_file(trained / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in weights.items())
    config = json.loads((trained / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)


def test_loading_merges_the_adapter_into_the_same_logits(
    trained: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Two steps barely move the weights: large random ones make a skipped merge visible.
    directory = tmp_path / "adapter"
    directory.mkdir()
    (directory / "adapter_config.json").write_text((trained / "adapter_config.json").read_text())
    torch.manual_seed(0)
    weights = load_file(trained / "adapter_model.safetensors")
    save_file({k: torch.randn_like(v.float()).half() * 0.1 for k, v in weights.items()},
              str(directory / "adapter_model.safetensors"))
    merged = load_model(directory, device="cpu", dtype="float32")
    assert merged.path == str(directory) and not isinstance(merged.model, PeftModel)
    base = load_model(tiny_model_dir, device="cpu", dtype="float32")
    ids = torch.tensor([base.tokenizer("def f(x):\n    return x")["input_ids"]])
    with torch.no_grad():
        plain = base.model(input_ids=ids).logits
        unmerged = PeftModel.from_pretrained(base.model, directory).eval()(input_ids=ids).logits
        logits = merged.model(input_ids=ids).logits
    assert (unmerged - plain).abs().max() > 1.0  # the adapter matters
    torch.testing.assert_close(logits, unmerged, rtol=1e-4, atol=1e-4)
    assert torch.equal(logits.argmax(-1), unmerged.argmax(-1))


def test_missing_base_weights_name_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "adapter"
    directory.mkdir()
    config = {"base_model_name_or_path": "smollm2"}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelLoadError, match=r"python -m engine\.fetch smollm2"):
        locate_model(str(directory))
    with pytest.raises(SystemExit) as exit_status:
        cli_main(["generate", "--model", str(directory), "--prompt", "x"])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert "python -m engine.fetch smollm2" in error and len(error.strip().splitlines()) == 1


def test_training_resumes_from_an_adapter(trained: Path, tiny_model_dir: Path,
                                          tmp_path: Path) -> None:
    out = tmp_path / "more"
    assert adapter.main(["--out", str(out), "--base", str(tiny_model_dir), "--resume",
                         str(trained), "--steps", "1", "--accumulate", "1", "--max-files", "4",
                         "--max-lines", "6", "--max-tokens", "1000", "--threads", "1"]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["resumed_from"] == json.loads((trained / "training.json").read_text())
    before = load_file(trained / "adapter_model.safetensors")
    after = load_file(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    changes = [(after[k].float() - before[k].float()).abs().max().item() for k in before]
    assert 0 < max(changes) < 0.1  # one small step on from the trained weights, not afresh


def test_kind_weights_draw_the_named_kinds_and_refuse_bad_specs(
        capsys: pytest.CaptureFixture[str]) -> None:
    weights = adapter.kind_weights("delete_line=3, no_change=0")
    assert weights["delete_line"] == 3.0 and weights["no_change"] == 0.0
    assert all(weights[k] == 1.0 for k in KINDS if k not in ("delete_line", "no_change"))
    for spec, said in [("renames=2", "unknown kind 'renames'"),
                       ("delete_line=many", "is not kind=number"),
                       ("literal=-1", "negative weight"),
                       (",".join(f"{k}=0" for k in KINDS), "every weight is 0")]:
        with pytest.raises(SystemExit):
            adapter.parse_args(["--out", "x", "--steps", "1", "--kind-weights", spec])
        assert said in capsys.readouterr().err


def test_a_rename_to_a_keyword_is_not_made() -> None:
    """The name pool holds the stdlib's common words, keywords among them: `self.class` made
    a target that does not parse, and the next turn's edit crashed training on it."""
    code = "def reset(self):\n    self.total = 0\n    return self.total\n"
    made = [edit_rename(code, "rename_attribute", random.Random(seed), ["class"])
            for seed in range(40)]
    assert any(m is None for m in made)  # the pool's keyword was drawn: no edit
    assert any(m is not None for m in made)  # a variation of the name was drawn instead
    for m in made:
        if m is not None:
            compile(m[1], "<rename>", "exec")  # raises SyntaxError on a target that does not parse
