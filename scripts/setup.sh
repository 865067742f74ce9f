#!/usr/bin/env bash
# Set up .venv (or $VENV) with PyTorch, the project, its test extras, and the editor test
# dependencies. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# torch first and pinned: a bare requirement would pull a multi-GB CUDA build on a CPU machine.
# An existing torch (say a CUDA build on a GPU machine) is kept; pyproject only asks torch>=2.4.
"$venv/bin/python" -c "import torch" 2>/dev/null || "${pip[@]}" install torch==2.13.0
"${pip[@]}" install -e ".[test]"
# The replay bench's SuffixDecoding peer (C++ build); the bench skips it when this fails.
"${pip[@]}" install -e ".[replay]" || echo "note: arctic-inference did not install; bench replay runs without SuffixDecoding"
if [ -f editors/vscode/package-lock.json ]; then
  (cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error)
fi
