"""`copyspec bench` end to end on a tiny model: every method and turn recorded, identity
enforced, plots written, and bad input refused with a clear message; `copyspec bench decode` on
the built-in model, eager and on the static-cache path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine.bench.methods import Runner, SessionRunner, TurnOutcome, build_runners
from engine.bench.run import IdentityError, identity_pass
from engine.bench.tasks import Task, TaskFileError, load_tasks
from engine.bench.workloads import chain_record
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


# --- copyspec bench decode -----------------------------------------------------------------

VERSIONS = [
    "def total(items):\n    result = 0\n    for item in items:\n        result += item\n"
    "    return result\n",
    "def total(values):\n    result = 0\n    for value in values:\n        result += value\n"
    "    return result\n",
    "def total(values):\n    \"\"\"Sum of values.\"\"\"\n    result = 0\n    for value in values:\n"
    "        result += value\n    return result\n",
]


@pytest.fixture
def decode_workloads(tmp_path: Path) -> list[Path]:
    """A whole-file rewrite (one turn) and a two-turn chain, in the replay's record format."""
    whole = chain_record("r", "f.py", "total", VERSIONS[:2], [("a", "rename items")])
    chain = chain_record("r", "f.py", "total", VERSIONS,
                         [("a", "rename items"), ("b", "add a docstring")])
    paths = [tmp_path / "single_file.jsonl", tmp_path / "multi_turn.jsonl"]
    for path, record in zip(paths, (whole, chain), strict=True):
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return paths


def decode_command(workloads: list[Path], out: Path, *extra: str) -> list[str]:
    return ["bench", "decode", "--workload", *map(str, workloads), "--model-shape", "builtin",
            "--device", "cpu", "--threads", "1", "--max-target-tokens", "24",
            "--identity-tokens", "12", "--out", str(out), *extra]


@pytest.mark.timeout(120)
def test_decode_times_every_method_per_request_after_identity(
    decode_workloads: list[Path], tmp_path: Path
) -> None:
    """Real forwards of the built-in model through the engine's decode loop: each method
    writes each request's (cut) target, plain decoding only its first tokens; the figures
    add up, and real decoding gave plain's tokens for every method."""
    out = tmp_path / "out"
    assert main(decode_command(decode_workloads, out, "--plain-tokens", "5")) == 0
    report = json.loads((out / "decode.json").read_text(encoding="utf-8"))
    assert set(report["paths"]) == {"eager"}
    eager = report["paths"]["eager"]
    requests = eager["requests"]
    pairs = ["single_file/0/1", "multi_turn/0/1", "multi_turn/0/2"]
    assert sorted((r["pair_id"], r["method"]) for r in requests) == sorted(
        (pair, method) for pair in pairs for method in ("plain", "HF prompt lookup", "ours"))
    for pair in pairs:
        rows = {r["method"]: r for r in requests if r["pair_id"] == pair}
        assert rows["plain"]["tokens"] == rows["plain"]["passes"] == 5
        assert 0 < rows["HF prompt lookup"]["tokens"] == rows["ours"]["tokens"] <= 24
        assert 0 < rows["ours"]["passes"] <= rows["ours"]["tokens"]
    total = eager["summary"]["all"]
    ours = total["ours"]
    assert ours["tok_s"] == pytest.approx(ours["tokens"] / ours["seconds"], rel=0.01)
    assert total["ours / plain"] == pytest.approx(ours["tok_s"] / total["plain"]["tok_s"],
                                                  rel=0.01)
    assert [check["identical"] for check in eager["identity"]] == [
        {"HF prompt lookup": True, "ours": True}] * 2
    assert f"| all | 3 | {total['plain']['tok_s']:.1f} |" in (out / "decode.md").read_text()


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The static-cache path with the model's own forward for the compiled one: compiling for
    real takes minutes here (the GPU check's dry run traces it; tests/test_compiled.py
    compiles it for real in the slow lane)."""
    monkeypatch.setattr(torch, "compile", lambda model, **_: model)


@pytest.mark.timeout(120)
def test_decode_runs_eager_then_compiled_in_one_process(
    decode_workloads: list[Path], tmp_path: Path, uncompiled: None
) -> None:
    out = tmp_path / "out"
    assert main(decode_command(decode_workloads, out, "--compile", "on", "--eager-first")) == 0
    paths = json.loads((out / "decode.json").read_text(encoding="utf-8"))["paths"]
    assert list(paths) == ["eager", "compiled"]
    for result in paths.values():
        assert all(all(check["identical"].values()) for check in result["identity"])
    assert "## Compiled" in (out / "decode.md").read_text(encoding="utf-8")


@pytest.mark.timeout(120)
def test_decode_fails_when_the_compiled_path_falls_back(
    decode_workloads: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Asked to compile, a run that decoded eagerly says so and exits 1, its figures kept."""
    def broken(model: object, **_: object) -> object:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    out = tmp_path / "out"
    assert main(decode_command(decode_workloads, out, "--compile", "on")) == 1
    assert "--compile on decoded eagerly" in capsys.readouterr().err
    assert list(json.loads((out / "decode.json").read_text())["paths"]) == ["eager"]
