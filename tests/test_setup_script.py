"""scripts/setup.sh returns at once when nothing changed since its last successful run, and
otherwise gets to work. The venv here is fake (its `python` only logs its calls and fails), so
the test never installs anything; everything else is the real script."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]


def fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 1\n')
    python.chmod(0o755)
    return venv, log


def setup(venv: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True,
                          text=True, timeout=50, env={**os.environ, "VENV": str(venv)})
    return done, time.perf_counter() - started


def key() -> str:
    """What the script hashes: pyproject.toml, itself, and the npm lock file."""
    parts = ["pyproject.toml", "scripts/setup.sh", "editors/vscode/package-lock.json"]
    data = b"".join((ROOT / p).read_bytes() for p in parts if (ROOT / p).exists())
    return hashlib.sha256(data).hexdigest()


def test_nothing_changed_means_no_pip_and_no_npm(tmp_path: Path) -> None:
    venv, log = fake_venv(tmp_path)
    (venv / ".copyspec-setup").write_text(key() + "\n")
    done, seconds = setup(venv)
    assert done.returncode == 0, done.stderr
    assert not log.exists(), log.read_text()  # python (so pip) never ran
    assert done.stdout == "" and seconds < 5


def test_a_changed_project_runs_the_steps_and_says_so(tmp_path: Path) -> None:
    venv, log = fake_venv(tmp_path)
    (venv / ".copyspec-setup").write_text("an older key\n")
    done, _ = setup(venv)
    assert done.returncode != 0  # the fake python fails the first install step
    assert "-c import torch" in log.read_text()
    assert "setup [" in done.stdout and "installing torch" in done.stdout
    assert (venv / ".copyspec-setup").read_text() == "an older key\n", "no stamp on failure"
