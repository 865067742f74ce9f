"""The test gate's one definition: a file whose existence holds a streaming turn open.

Tests that act mid-stream (cancel, drop a stream, type) set COPYSPEC_TEST_GATE=<path> for the
servers they start, so a turn cannot finish before they act however fast the model is. The
language server holds per request (copyspec_lsp/adapters/gate.py); `copyspec serve` holds its
turn after each streamed text (engine/serve/engine.py). Without the variable (always, outside
tests) nothing holds.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

GATE_VARIABLE = "COPYSPEC_TEST_GATE"
POLL_SECONDS = 0.005


def gate_path() -> Path | None:
    """The gate file named by the environment, if any."""
    path = os.environ.get(GATE_VARIABLE)
    return Path(path) if path else None


def hold_while_closed(gate: Path | None, stop: threading.Event) -> None:
    """Wait while the gate file exists, unless `stop` is set (a decoding thread's wait)."""
    while gate is not None and gate.exists() and not stop.wait(POLL_SECONDS):
        pass
