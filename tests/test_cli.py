"""`copyspec generate` end to end in a subprocess, as a script would run it (bad arguments:
test_cli_errors.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import SpecConfig
from engine.loading import load_model
from engine.prompt_format import SYSTEM_PROMPT
from engine.session import Session
from engine.shaping import Shaper


def copyspec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.slow  # an interpreter that imports torch: seconds, a minute when busy
def test_chat_file_answers_every_turn_like_a_session(tiny_model_dir: Path, tmp_path: Path) -> None:
    turns = ["def f(x):\n    return x\n\nRename x to y.", "Now add a docstring."]
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(turns))
    run = copyspec(
        "generate", "--model", str(tiny_model_dir), "--chat-file", str(chat),
        "--max-new-tokens", "30", "--device", "cpu", "--json",
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    session = Session(load_model(tiny_model_dir, device="cpu"), SpecConfig(), SYSTEM_PROMPT)
    expected = [session.send(turn, max_new_tokens=30) for turn in turns]
    assert [t["token_ids"] for t in out["turns"]] == [r.token_ids for r in expected]
    assert out["text"] == expected[-1].text
    assert out["turns"][1]["stats"]["cache_reused"] is True


@pytest.mark.slow  # an interpreter that imports torch: seconds, a minute when busy
def test_streams_text_to_stdout(tiny_model_dir: Path) -> None:
    run = copyspec(
        "generate", "--model", str(tiny_model_dir), "--prompt", "def f(x):",
        "--max-new-tokens", "20", "--device", "cpu", "--method", "greedy",
    )
    assert run.returncode == 0, run.stderr
    lm = load_model(tiny_model_dir, device="cpu")
    expected = Session(lm, SpecConfig(method="greedy"), SYSTEM_PROMPT)
    assert run.stdout.rstrip("\n") == expected.send("def f(x):", max_new_tokens=20).text
    assert "forward passes" in run.stderr


def test_code_only_prints_the_shaped_answer(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Streamed and --json output both hold exactly the shaper's code for the raw answer."""
    args = ["generate", "--model", str(tiny_model_dir), "--prompt", "def f(x):",
            "--max-new-tokens", "40", "--device", "cpu", "--code-only"]
    assert main(args) == 0
    streamed = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    session = Session(load_model(tiny_model_dir, device="cpu"), SpecConfig(), SYSTEM_PROMPT)
    raw = session.send("def f(x):", max_new_tokens=40).text
    assert out["text"] == Shaper()(raw, final=True)
    assert streamed.rstrip("\n") == out["text"]


@pytest.mark.parametrize("command", ["train-default-model", "eval-default-model"])
def test_training_commands_reach_their_own_parsers(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    expected = "--per-kind" if command == "eval-default-model" else "--minutes"
    assert expected in capsys.readouterr().out


@pytest.mark.slow
def test_chat_turns_get_a_header_and_a_quiet_stats_line(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(["def f(x):\n    return x\n\nRename x to y.", "Add a docstring."]))
    run = copyspec("generate", "--model", str(tiny_model_dir), "--chat-file", str(chat),
                   "--max-new-tokens", "12", "--device", "cpu")
    assert run.returncode == 0, run.stderr
    headers = [line for line in run.stdout.splitlines() if line.startswith("── turn")]
    assert headers == ["── turn 1/2: Rename x to y.", "── turn 2/2: Add a docstring."]
    stats = run.stderr.splitlines()
    assert len(stats) == 2, run.stderr  # nothing else: no loading bars, no library warnings
    for line in stats:
        assert line.startswith("[") and "copied (τ=" in line, line
        assert "draft" not in line, line
        assert line.startswith(("[cut off at --max-new-tokens 12,", "[finished,")), line


@pytest.mark.timeout(60)
def test_cost_aware_drafting_is_a_flag_of_generate_bench_and_serve(tiny_model_dir: Path) -> None:
    """One default (SpecConfig's), switched off by --no-cost-aware in every tool's spec."""
    from engine.bench.methods import build_runners
    from engine.cli import build_parser, spec_from_args
    from engine.serve.cli import options_from_args

    parser = build_parser()
    generate = ["generate", "--prompt", "x"]
    assert spec_from_args(parser.parse_args(generate), "copy").cost_aware is SpecConfig.cost_aware
    off = parser.parse_args([*generate, "--no-cost-aware"])
    assert spec_from_args(off, "copy") == SpecConfig("copy", cost_aware=False)
    assert options_from_args(parser.parse_args(["serve"])).spec() == SpecConfig()
    serve = options_from_args(parser.parse_args(["serve", "--no-cost-aware"]))
    assert serve.spec() == SpecConfig(cost_aware=False)
    bench = parser.parse_args(["bench", "--no-cost-aware"])
    lm = load_model(str(tiny_model_dir), "cpu")
    runners = build_runners(lm, ["greedy", "copy", "copy-fixed"], cost_aware=bench.cost_aware)
    assert [r.config["cost_aware"] for r in runners] == [True, False, False], "greedy drafts none"


@pytest.mark.timeout(60)
def test_serve_compiles_as_told(tiny_model_dir: Path) -> None:
    """--compile reaches the service's model, as it does generate's and bench's."""
    from engine.cli import build_parser
    from engine.sequence import SequenceState
    from engine.serve.cli import options_from_args

    for setting, compiled in (("on", True), ("off", False)):
        args = build_parser().parse_args(["serve", "--model", str(tiny_model_dir),
                                          "--device", "cpu", "--compile", setting])
        engine = options_from_args(args).build()
        try:
            assert (SequenceState(engine.lm.model).static is not None) is compiled
        finally:
            engine.close()
