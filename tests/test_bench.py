"""`copyspec bench` end to end on a tiny model: every method and turn recorded, identity
enforced, plots written, and bad input refused with a clear message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.bench.methods import Runner, SessionRunner, TurnOutcome, build_runners
from engine.bench.run import IdentityError, identity_pass
from engine.bench.tasks import Task, TaskFileError, load_tasks
from engine.cli import main
from engine.config import SpecConfig
from engine.loading import LoadedModel, load_model

TASKS = [
    {"id": "two-turns", "system": "You edit code.",
     "turns": ["def add(a, b):\n    return a + b\nrename add to plus", "now add a docstring"]},
    {"id": "one-turn", "turns": ["x = 1\ny = 2\nprint(x + y)\n"]},
]
MAX_NEW = 16


def write_tasks(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    return write_tasks(tmp_path / "refinement.jsonl", TASKS)


def test_bench_end_to_end(tiny_model_dir: Path, tasks_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    status = main([
        "bench", "--model", str(tiny_model_dir), "--tasks", str(tasks_file),
        "--methods", "greedy,pld,copy,copy-fixed", "--gamma", "1,3", "--block", "5",
        "--policy", "recent,oldest", "--repeats", "1", "--max-new-tokens", str(MAX_NEW),
        "--out", str(out), "--threads", "1",
    ])
    assert status == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    methods = {"greedy", "pld", "copy", "copy-fixed", "copy[gamma=1]", "copy-fixed[K=5]",
               "copy[policy=oldest]"}
    assert set(results["methods"]) == methods
    seen = {(r["method"], r["task"], r["turn"]) for r in results["records"]}
    assert seen == {(m, t["id"], turn) for m in methods for t in TASKS
                    for turn in range(1, len(t["turns"]) + 1)}
    assert results["identity"]["passed"] is True
    assert all(r["stats"]["new_tokens"] > 0 for r in results["records"])
    assert "| refinement | 2 |" in (out / "results.md").read_text(encoding="utf-8")
    for png in ("tokens_per_turn", "speed_vs_context", "ablation_gamma", "ablation_block",
                "ablation_policy"):
        assert (out / f"{png}.png").stat().st_size > 1000


class ShortGreedy:
    """A deliberately wrong method, through the public runner interface: greedy with a
    smaller token budget than the bench asks for, so its answers stop early."""

    name = "short-greedy"

    def __init__(self, lm: LoadedModel) -> None:
        self.config: dict[str, object] = {"engine": "test"}
        self.inner = SessionRunner("greedy", lm, SpecConfig("greedy"))

    def run(self, task: Task, max_new_tokens: int) -> Iterator[TurnOutcome]:
        yield from self.inner.run(task, max_new_tokens // 2)


def test_identity_failure_is_loud(copying_llama: LoadedModel, tasks_file: Path) -> None:
    tasks = load_tasks(tasks_file)
    runners: list[Runner] = [*build_runners(copying_llama, ["greedy"]), ShortGreedy(copying_llama)]
    with pytest.raises(IdentityError) as failure:
        identity_pass(copying_llama, tasks, runners, MAX_NEW, lambda _what: None)
    error = failure.value
    assert (error.method, error.task, error.turn) == ("short-greedy", "two-turns", 1)
    assert error.position == MAX_NEW // 2
    assert "IDENTITY FAILURE" in str(error) and "'two-turns'" in str(error)


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"turns": ["hi"]}', "'id' must be a non-empty string"),
    ('{"id": "a", "turns": []}', "'turns' must be a non-empty list"),
    ('{"id": "a", "turns": ["ok", 3]}', "turn 2 must be a non-empty string"),
    ('{"id": "a", "turns": ["ok"], "sytem": "x"}', "unknown key(s) sytem"),
    ('{"id": "a", "turns": ["ok"], "system": null}', "'system' must be a string"),
    ('{"id": "x", "turns": ["ok"]}', "duplicate task id 'x' (first on line 1)"),
])
def test_bad_task_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": "x", "turns": ["fine"]}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError) as failure:
        load_tasks(path)
    assert f"{path}:3: " in str(failure.value) and message in str(failure.value)


def test_bad_tasks_file_exits_2(tiny_model_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "turns": "not a list"}\n', encoding="utf-8")
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(bad)]) == 2
    assert f"{bad}:1: 'turns' must be a non-empty list" in capsys.readouterr().err


def test_draft_methods_with_a_model_need_a_draft_model(
    tiny_model_dir: Path, tasks_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["bench", "--model", str(tiny_model_dir), "--tasks", str(tasks_file),
                   "--methods", "greedy,draft", "--out", str(tmp_path / "out")])
    assert status == 2
    assert "needs --draft-model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


CHAT = ["def add(a, b):\n    return a + b\nrename add to plus", "now add a docstring"]


@pytest.mark.timeout(120)
def test_a_chat_gets_the_same_answer_in_the_bench_as_from_generate(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A task without `system` gets `copyspec generate`'s default system prompt: every bench
    method answers each turn with generate's tokens. The same chat with no system prompt
    answers otherwise on this model, so a bench that dropped the default would fail here."""
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(CHAT), encoding="utf-8")
    assert main(["generate", "--chat-file", str(chat), "--model", str(tiny_model_dir),
                 "--json", "--max-new-tokens", str(MAX_NEW), "--threads", "1"]) == 0
    generated = [turn["token_ids"] for turn in json.loads(capsys.readouterr().out)["turns"]]
    tasks = load_tasks(write_tasks(tmp_path / "chat.jsonl", [
        {"id": "default", "turns": CHAT}, {"id": "none", "system": "", "turns": CHAT}]))
    lm = load_model(tiny_model_dir, device="cpu")
    for runner in build_runners(lm, ["greedy", "copy"]):
        default, none = ([o.token_ids for o in runner.run(task, MAX_NEW)] for task in tasks)
        assert default == generated, runner.name
        assert none != generated, runner.name
