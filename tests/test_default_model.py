"""The shipped default/draft models and the pipeline that trains them (which never runs here)."""

from __future__ import annotations

import random
import re

import pytest
import torch

from engine.config import SpecConfig
from engine.loading import load_model
from engine.paths import demo_draft_model_path, demo_model_path
from engine.prompt_format import SYSTEM_PROMPT, fence
from engine.session import Session
from engine.training.data import (
    EDITS,
    Conversation,
    docstring_for,
    edit_points,
    extract_code,
    make_single,
)
from engine.training.tokenizer import IM_END
from engine.training.train import IGNORE, encode_conversation, weighted_loss

SNIPPET = """\
def scale(values, factor=10):
    total = 0
    result = []
    for value in values:
        result.append(value * factor)
        total += value
    print('done')
    return result, total"""

# Measured turn-2 copy share on this prompt: 95% (README model card); the floor leaves margin.
TURN2_COPY_FLOOR = 0.5


def quoted(instruction: str) -> list[str]:
    return re.findall(r"`([^`]*)`", instruction)


@pytest.mark.parametrize("seed", range(5))
def test_rename_is_exact(seed: int) -> None:
    instruction, target = EDITS["rename"](SNIPPET, random.Random(seed), ["alpha", "beta"])
    old, new = quoted(instruction) or instruction.split()[1::2]
    assert target == re.sub(rf"\b{re.escape(old)}\b", new, SNIPPET)
    assert not re.search(rf"\b{re.escape(old)}\b", target)


@pytest.mark.parametrize("seed", range(5))
def test_delete_is_exact(seed: int) -> None:
    instruction, target = EDITS["delete"](SNIPPET, random.Random(seed), [])
    line = quoted(instruction)[0] if "`" in instruction else instruction.split(": ", 1)[1]
    expected = [row for row in SNIPPET.split("\n") if row.strip() != line]
    assert target.split("\n") == expected
    assert len(expected) == SNIPPET.count("\n")


@pytest.mark.parametrize("seed", range(5))
def test_insert_is_exact(seed: int) -> None:
    instruction, target = EDITS["insert"](SNIPPET, random.Random(seed), [])
    lines, new_lines = SNIPPET.split("\n"), target.split("\n")
    assert len(new_lines) == len(lines) + 1
    added = next(i for i, (a, b) in enumerate(zip([*lines, ""], new_lines, strict=False)) if a != b)
    anchor = lines[added - 1] if " after " in instruction else lines[added]
    assert new_lines[added].strip() in instruction and anchor.strip() in instruction
    assert new_lines[:added] + new_lines[added + 1 :] == lines
    indent = len(anchor) - len(anchor.lstrip()) + (4 if anchor.endswith(":") else 0)
    if " before " in instruction:
        indent = len(anchor) - len(anchor.lstrip())
    assert new_lines[added].startswith(" " * indent) and new_lines[added][indent] != " "


@pytest.mark.parametrize("seed", range(6))
def test_replace_is_exact(seed: int) -> None:
    code = "size = 10\nprint(size, 'ok')\nreturn size * 10"
    edit = EDITS["replace"](code, random.Random(seed), ["fine"])
    if edit is None:  # the string branch found no usable literal: nothing to check
        return
    instruction, target = edit
    words = instruction.replace("`", "").rstrip(".").split()
    old, new = words[1], words[3]
    assert old in ("10", "'ok'")
    assert target == code.replace(old, new)


def test_docstring_is_exact() -> None:
    instruction, target = EDITS["docstring"](SNIPPET, random.Random(0), [])
    assert "scale" in instruction
    assert target.split("\n")[1] == '    """Scale."""'
    assert docstring_for("_parse_header") == '"""Parse header."""'


@pytest.mark.parametrize("seed", range(8))
def test_fix_pairs_broken_code_with_original(seed: int) -> None:
    conv = make_single(SNIPPET, "fix", random.Random(seed), [])
    assert conv is not None
    user, answer = conv.messages[1]["content"], conv.messages[2]["content"]
    assert extract_code(answer) == SNIPPET
    assert extract_code(user) != SNIPPET
    assert re.search(r"(SyntaxError|NameError|IndentationError)", user)


@pytest.fixture(scope="module")
def default_lm(monkeypatch_module: pytest.MonkeyPatch):
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    return load_model(demo_model_path(), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_shipped_models_fit_their_budgets() -> None:
    sizes = {
        p.name: sum(f.stat().st_size for f in p.iterdir())
        for p in (demo_model_path(), demo_draft_model_path())
    }
    assert sizes["demo"] <= 40 * 2**20
    assert sizes["draft"] <= 10 * 2**20


def test_default_model_loads_offline_with_eos(default_lm) -> None:
    tok = default_lm.tokenizer
    eos = tok.convert_tokens_to_ids(IM_END)
    assert default_lm.model.config.model_type == "llama"
    assert default_lm.model.config.eos_token_id == eos
    assert default_lm.model.generation_config.eos_token_id == eos
    assert default_lm.eos_token_ids == {eos}
    draft = load_model(demo_draft_model_path(), device="cpu")
    assert draft.tokenizer.get_vocab() == tok.get_vocab()


def test_tokenizer_round_trip_and_chat_template(default_lm) -> None:
    tok = default_lm.tokenizer
    text = SNIPPET + "\n\tname = 'é'  # non-ASCII still round-trips\n"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{fence(SNIPPET)}\nRename `total` to `acc`."},
        {"role": "assistant", "content": fence(SNIPPET.replace("total", "acc"))},
        {"role": "user", "content": "Now delete the line `print('done')`."},
    ]
    prompt = tok.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert full.startswith(prompt)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert tok(full, add_special_tokens=False)["input_ids"] == list(ids)


def test_labels_cover_only_assistant_turns(default_lm) -> None:
    tok = default_lm.tokenizer
    conv = make_single(SNIPPET, "delete", random.Random(0), [])
    assert isinstance(conv, Conversation)
    ids, labels, weights = encode_conversation(tok, conv, edit_weight=4.0)
    trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])
    assert trained == conv.messages[2]["content"] + IM_END
    assert labels[0] == IGNORE
    assert all((w > 0) == (lab != IGNORE) for w, lab in zip(weights, labels, strict=True))
    lines, kept = SNIPPET.split("\n"), extract_code(conv.messages[2]["content"]).split("\n")
    gone = next(i for i, (a, b) in enumerate(zip(lines, kept, strict=False)) if a != b)
    edited = tok.decode([t for t, w in zip(ids, weights, strict=True) if w == 4.0])
    assert edited.strip() and lines[gone + 1].strip().startswith(edited.strip()), edited


@pytest.mark.parametrize(
    ("before", "after", "marked"),
    [
        ("a = 1\nb = 2\nc = 3", "a = 1\nc = 3", ["c "]),  # a deletion: where copying resumes
        ("x = f(y)\nz = f", "x = g(y)\nz = g", ["g(y", "g"]),  # a rename, every occurrence
        ("a\nb", "a\nprint(a)\nb", ["print(a)\nb"]),  # an inserted line and the next unit
        ("a\nb", "a", ["\n"]),  # the last line deleted: the end of the answer is the edit
    ],
)
def test_edit_points_mark_where_the_answer_stops_copying(
    before: str, after: str, marked: list[str]
) -> None:
    assert [(after + "\n")[a:b] for a, b in edit_points(before, after)] == marked


def test_an_identifier_tokenizes_the_same_in_instructions_and_code(default_lm) -> None:
    tok = default_lm.tokenizer

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    name = ids("deepcopy")
    for context in ("`deepcopy`", " deepcopy(x)", "(deepcopy,", "\n    deepcopy"):
        found = ids(context)
        assert any(found[i : i + len(name)] == name for i in range(len(found))), context


def test_weighted_loss_with_unit_weights_is_the_usual_loss(default_lm) -> None:
    conv = make_single(SNIPPET, "rename", random.Random(1), ["alpha"])
    assert conv is not None
    ids, labels, weights = encode_conversation(default_lm.tokenizer, conv, edit_weight=1.0)
    ids_t, labels_t = torch.tensor([ids]), torch.tensor([labels])
    out = default_lm.model(input_ids=ids_t, labels=labels_t)
    ours = weighted_loss(out.logits, labels_t, torch.tensor([weights]))
    assert torch.allclose(ours, out.loss, atol=1e-5)


def test_held_out_refine_session_copies(default_lm, held_out_function: str) -> None:
    session = Session(default_lm, SpecConfig(method="copy"), system=SYSTEM_PROMPT)
    first = session.send(
        f"{fence(held_out_function)}\nRename `append` to `add_item`.", max_new_tokens=96)
    assert first.text.strip()
    second = session.send("Now delete the line `memo[id(x)] = y`.", max_new_tokens=96)
    assert second.text.strip()
    assert second.stats.cache_reused
    assert second.stats.copied_share >= TURN2_COPY_FLOOR
