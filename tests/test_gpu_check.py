"""The GPU check's dry run on the CPU, so the script cannot rot before a GPU comes.

It runs `scripts/gpu_check.sh --device cpu --dry-run` for real (tiny shapes, the current
interpreter): every stage gets a status, the report files exist, and the stages whose tools are
in this tree for sure (device probe, bench, server smoke) pass. Stages whose tools come from
elsewhere may fail or be skipped, but must say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = ["device", "identity-float32", "identity-bfloat16", "divergence-bfloat16",
          "costs-tiny", "replay-tiny", "bench", "server"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dry_run_reports_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--device", "cpu", "--dry-run", "--out", str(out)],
        cwd=REPO, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
        timeout=280,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    stages = {stage["name"]: stage for stage in report["stages"]}
    assert list(stages) == STAGES
    for stage in stages.values():
        assert stage["status"].split(":")[0] in ("passed", "failed", "skipped"), stage
        assert stage["status"] == "passed" or ":" in stage["status"], "a failure says why"
    for name in ("device", "bench", "server"):
        assert stages[name]["status"] == "passed", (name, stages[name]["tail"])
    assert stages["server"]["figures"]["steps_after_cancel"] <= 2
    assert (out / "bench" / "results.json").exists() and (out / "server" / "smoke.json").exists()
    markdown = (out / "report.md").read_text()
    assert all(f"## {name}\n" in markdown for name in STAGES)
    assert (out / "stages.png").read_bytes().startswith(b"\x89PNG")
    assert report["meta"]["dry_run"] and report["meta"]["total_s"] < report["meta"]["deadline_s"]
    assert done.returncode == (0 if all(s["status"] == "passed" for s in stages.values()) else 1)
