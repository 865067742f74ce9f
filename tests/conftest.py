"""Shared fixtures: tiny random models built once per test session.

Tiny models run fastest on one thread: with two, a forward pass on a busy 2-core machine
was measured 20x slower (52 ms against 2.5 ms), so tests and the servers they start use one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"

import pytest
import torch

torch.set_num_threads(1)


def private_cache() -> Path:
    """Point XDG_CACHE_HOME, for this process and every server it starts, at a folder of this
    session's own, removed at its end: no run reads what an earlier one left in the user's
    cache (the engine's measured cost curves, for one) nor leaves anything there. What setup
    put there on purpose stays in view: the Hugging Face cache (HF_HOME names it) and the
    fetched weights (linked). Runs before transformers is imported."""
    user = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    os.environ.setdefault("HF_HOME", str(user / "huggingface"))
    remove_orphaned_caches()
    private = Path(tempfile.mkdtemp(prefix=f"copyspec-cache-{os.getpid()}-"))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    weights = user / "copyspec" / "weights"
    if weights.is_dir():
        (private / "copyspec").mkdir()
        (private / "copyspec" / "weights").symlink_to(weights, target_is_directory=True)
    os.environ["XDG_CACHE_HOME"] = str(private)
    return private


def remove_orphaned_caches() -> None:
    """The private caches of test runs killed before their exit handler ran: the process id
    in the name is gone."""
    for folder in Path(tempfile.gettempdir()).glob("copyspec-cache-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


private_cache()
sys.path.insert(0, str(Path(__file__).parent))

from engine.gate import GATE_VARIABLE  # noqa: E402
from engine.loading import LoadedModel  # noqa: E402

from tiny_models import loaded, save  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def stream_gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every server a test starts honours the stream gate (copyspec_lsp/adapters/gate.py); it
    stays open unless a test closes it with lsp_fixtures.held_stream(). Its folder is this
    session's own under pytest's temp root, which pytest prunes even after a killed run: no run
    sees a gate an earlier one left closed, and none leaves a folder behind for good."""
    gate = tmp_path_factory.mktemp("gate") / "closed"
    os.environ[GATE_VARIABLE] = str(gate)
    return gate


@pytest.fixture(scope="session")
def held_out_function() -> str:
    """A function from copy.py, a file the built-in model never trained on (its held-out split)."""
    return """\
def _deepcopy_list(x, memo, deepcopy=deepcopy):
    y = []
    memo[id(x)] = y
    append = y.append
    for a in x:
        append(deepcopy(a, memo))
    return y"""


@pytest.fixture(scope="session")
def copying_llama() -> LoadedModel:
    """A tiny Llama whose greedy output cycles, so copies are proposed and accepted often."""
    return loaded("llama", seed=0, mixing=0.1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, copying_llama: LoadedModel) -> Path:
    """The copying Llama saved as a local model directory, as a user would have one."""
    return save(copying_llama, tmp_path_factory.mktemp("tiny-llama"))
