#!/usr/bin/env bash
# The whole test suite: lint, the Python tests (fast lane first, then the slow lane: the full
# χ² sampling tests and the long end-to-end runs), and both editors.
# `bash scripts/test.sh fast` stops after the fast Python lane (`-m "not slow"`).
# Every suite runs even when an earlier one failed; the summary lists each with its time, and
# the exit status is non-zero when any failed, so one red suite never hides another.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "test.sh: setup failed (see above)" >&2; exit 1; }
venv=${VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

results=()
failed=0
suite() { # name, command...
  local name=$1 started=$SECONDS status
  shift
  echo "=== $name"
  if "$@"; then status=passed; else status="FAILED (exit $?)"; failed=$((failed + 1)); fi
  results+=("$(printf '%-28s %-18s %5d s' "$name" "$status" $((SECONDS - started)))")
}

suite "lint (ruff)" ruff check .
suite "python fast lane" python -m pytest -q -m "not slow"
if [ "${1:-all}" != fast ]; then
  suite "python slow lane" python -m pytest -q -m slow
  if [ -f editors/vscode/package.json ]; then
    # npm run package: the VSIX users install (copyspec-vscode-<version>.vsix), which the
    # real-VS-Code suite below installs too.
    suite "vscode (npm test, VSIX)" bash -c "cd editors/vscode && npm test && npm run -s package"
  fi
  if [ -f editors/nvim/tests/run.sh ]; then
    suite "neovim" bash editors/nvim/tests/run.sh
  fi
  # The extension in a real VS Code (code-server + headless chromium); installs its own rig
  # (apt, npm) on first use and fails loudly when it cannot.
  if [ -f editors/vscode/e2e/run.sh ]; then
    suite "vscode e2e (code-server)" bash editors/vscode/e2e/run.sh
  fi
fi

echo "=== summary"
printf '  %s\n' "${results[@]}"
echo "suites: $((${#results[@]} - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
