"""The GPU check on the CPU, so the script cannot rot before a GPU comes.

The stage runner is tried on real subprocesses (a failure, a timeout with a grandchild holding
the pipe, a missing tool, time running short). The dry run runs `scripts/gpu_check.sh --device
cpu --dry-run` for real (tiny shapes, the current interpreter): every stage must pass, the run
must exit 0, and the report must hold each stage's figures and files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from engine.bench.shapes import BUILTIN, vocab_size
from engine.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
GPT2_TOP_ID = 50256


def load_gpu_check() -> ModuleType:
    """scripts/ is no package: load the orchestrator from its file."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


gc = load_gpu_check()


def stage(command, needs: str | None = None):
    return gc.Stage("probe", "a probe", 10, lambda run, scale, folder: command, needs)


def a_run(tmp_path: Path, **extra) -> object:
    return gc.Run("cpu", False, tmp_path, tmp_path / "shared", **extra)


@pytest.mark.timeout(60)
def test_a_failing_stage_keeps_its_exit_status_and_output(tmp_path: Path) -> None:
    argv = [PY, "-c", "import sys; print('boom'); sys.exit(3)"]
    result = gc.run_stage(stage(argv), a_run(tmp_path), limit=30, scale=1.0)
    assert result.status == "failed: exit 3" and "boom" in result.tail
    assert (tmp_path / "probe" / "output.log").read_text().strip() == "boom"


@pytest.mark.timeout(60)
def test_a_timeout_kills_what_the_stage_started(tmp_path: Path) -> None:
    """The grandchild holds the output pipe: waiting for it would take its whole minute."""
    script = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(60)']); print('started', flush=True); time.sleep(60)")
    began = time.monotonic()
    result = gc.run_stage(stage([PY, "-c", script]), a_run(tmp_path), limit=3, scale=1.0)
    assert result.status == "failed: timed out after 3 s" and "started" in result.tail
    assert time.monotonic() - began < 30


@pytest.mark.timeout(60)
def test_missing_tools_and_skips_say_so(tmp_path: Path) -> None:
    missing = gc.run_stage(stage([PY, "-V"], needs="scripts/nowhere.py"), a_run(tmp_path), 30, 1)
    assert missing.status.startswith("failed: command not found (scripts/nowhere.py")
    skipped = gc.run_stage(stage("no GPU here"), a_run(tmp_path), 30, 1)
    assert skipped.status == "skipped: no GPU here"
    argparse = "import argparse; argparse.ArgumentParser().parse_args(['bench', 'costs'])"
    usage = gc.run_stage(stage([PY, "-c", argparse]), a_run(tmp_path), 30, 1)
    assert usage.status == "failed: command or option not found (usage error)"


@pytest.mark.timeout(60)
def test_short_time_shrinks_limits_and_sizes(tmp_path: Path) -> None:
    limit, scale = gc.share([40, 40, 80], left=80, unit=1.0, minimum=10)
    assert (limit, scale) == (20, 0.5)
    assert gc.share([40, 40, 80], left=20, unit=1.0, minimum=10) == (10, 0.25), "the floor"
    run = a_run(tmp_path, gib=80)
    costs = gc.costs_stage(gc.SHAPES[0], 40).command(run, scale, tmp_path)
    assert costs[costs.index("--contexts") + 1] == "1024,8192"
    assert gc.costs_stage(gc.BIG_SHAPE, 50).command(run, 1.0, tmp_path).startswith("needs")
    bench = gc.bench_stage().command(run, scale, tmp_path)
    tasks = [Path(arg) for arg in bench if arg.endswith(".jsonl")]
    assert len(tasks) == round(len(list((REPO / "benchmarks").glob("*.jsonl"))) / 2)
    assert all(len(path.read_text().splitlines()) == 1 for path in tasks)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("dry", [True, False], ids=["dry", "full"])
def test_every_copyspec_stage_parses_and_fits_its_shape(tmp_path: Path, dry: bool) -> None:
    """Each `copyspec` command the check runs on a big GPU is one the CLI accepts, naming a
    shape it can build, with a tokenizer whose ids fit that shape: a usage error found only
    on the GPU costs its stage."""
    shared = tmp_path / "shared"
    (shared / "tokenizers" / "gpt2").mkdir(parents=True)
    (shared / "replay").mkdir()
    for name in ("w", *gc.DECODE_WORKLOADS):
        (shared / "replay" / f"{name}.jsonl").write_text("{}\n")
    run = gc.Run("cuda", dry, tmp_path / "out", shared, gib=139)
    commands = [stage.command(run, 1.0, tmp_path / stage.name) for stage in gc.stages(run)]
    cli = [argv[3:] for argv in commands if isinstance(argv, list) and argv[1:3] == ["-m",
                                                                                     "engine.cli"]]
    assert len(cli) == (4 if dry else 8), "costs, replay, decode per shape (and 32B costs), bench"
    decoded = []
    for argv in cli:
        args = build_parser().parse_args(argv)
        if args.run.__name__ in ("run_replay", "run_decode"):
            uses_gpt2 = args.tokenizer == shared / "tokenizers" / "gpt2"
            assert uses_gpt2 == (args.model_shape != BUILTIN), "GPT-2's ids pass the built-in's"
        if args.run.__name__ == "run_decode":
            decoded.append(args.model_shape)
            assert (args.compile, args.eager_first, args.trace_only) == ("on", True, dry)
            assert sorted(path.stem for path in args.workload) == sorted(gc.DECODE_WORKLOADS)
        if getattr(args, "model_shape", BUILTIN) != BUILTIN:
            assert vocab_size(args.model_shape) > GPT2_TOP_ID
    assert decoded == ([BUILTIN] if dry else gc.SHAPES), "the compiled path on 1.5B and 7B"


@pytest.mark.timeout(10)
def test_a_tools_report_sits_below_its_stage() -> None:
    markdown = "# Costs\n\n```python\n# a comment\n```\n## Table\n"
    assert gc.demoted(markdown) == "### Costs\n\n```python\n# a comment\n```\n#### Table\n"


STAGES = ["device", "identity-float32", "divergence-bfloat16",
          "costs-builtin", "replay-builtin", "bench", "server", "decode-builtin"]


@pytest.mark.slow
@pytest.mark.timeout(720)
def test_dry_run_reports_every_stage(tmp_path: Path) -> None:
    """105 s at a load average of 6 on 2 cores, 30 s of it the decode stage. The deadline is
    a ceiling for a machine shared by many: at a load of 15 on 2 cores each stage's Python
    took 15-55 s just to import torch and transformers, and the run took 5-6 minutes."""
    out = tmp_path / "gpu"
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--device", "cpu", "--dry-run", "--out", str(out),
         "--deadline", "600"],
        cwd=REPO, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
        timeout=660,
    )
    report = json.loads((out / "report.json").read_text())
    stages = {stage["name"]: stage for stage in report["stages"]}
    assert list(stages) == STAGES
    for stage in stages.values():
        assert stage["status"] == "passed", (stage["name"], stage["status"], stage["tail"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert stages["identity-float32"]["figures"]["passed"] > 0
    assert set(stages["costs-builtin"]["figures"]["suggested_max_block"]) == {"128", "512"}
    replay = stages["replay-builtin"]["figures"]
    assert replay["plain tok/s"] > 0 and replay["ours (default) tok/s"] > 0
    assert stages["server"]["figures"]["steps_after_cancel"] <= 2
    decoded = stages["decode-builtin"]["figures"]
    for path in ("eager", "compiled"):  # the compiled path did not fall back to eager
        assert decoded[f"{path} identical"] == "2/2"
        for workload in gc.DECODE_WORKLOADS:
            rates = decoded[f"{path} {workload} tok/s plain/PLD/ours"].split(" / ")
            assert len(rates) == 3 and min(float(rate) for rate in rates) > 0
    for name, files in [("costs-builtin", ["costs.json", "costs.md", "costs.png"]),
                        ("replay-builtin", ["replay.json", "replay.md", "replay.png"]),
                        ("bench", ["results.json"]), ("server", ["smoke.json"]),
                        ("decode-builtin", ["decode.json", "decode.md"])]:
        assert all((out / name / file).exists() for file in files), name
    markdown = (out / "report.md").read_text()
    assert all(f"## {name}\n" in markdown for name in STAGES)
    assert "#### Timed: builtin" in markdown, "the replay's own report, inline"
    assert (out / "stages.png").read_bytes().startswith(b"\x89PNG")
    assert report["meta"]["dry_run"] and report["meta"]["total_s"] < report["meta"]["deadline_s"]
