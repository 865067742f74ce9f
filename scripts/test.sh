#!/usr/bin/env bash
# The whole test suite: lint, the Python tests (fast lane first, then the slow lane: the full
# χ² sampling tests and the long end-to-end runs), and both editors.
# `bash scripts/test.sh fast` stops after the fast Python lane (`-m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ruff check .
python -m pytest -q -m "not slow"
if [ "${1:-all}" = fast ]; then
  exit 0
fi
python -m pytest -q -m slow
if [ -f editors/vscode/package.json ]; then
  (cd editors/vscode && npm test)
fi
if [ -f editors/nvim/tests/run.sh ]; then
  bash editors/nvim/tests/run.sh
fi
# The extension in a real VS Code (code-server + headless chromium); installs its own rig
# (apt, npm) on first use and fails loudly when it cannot.
if [ -f editors/vscode/e2e/run.sh ]; then
  bash editors/vscode/e2e/run.sh
fi
