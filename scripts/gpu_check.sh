#!/usr/bin/env bash
# GPU readiness check, in one go on a fresh CUDA machine: a venv of its own (a preinstalled
# CUDA torch is kept), the project from this checkout, then scripts/gpu_check.py, whose
# arguments these are (--out DIR, --shared DIR, --deadline S, --device cpu, --dry-run).
# A dry run uses the current interpreter and installs nothing. See docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" --dry-run "*) exec "${PYTHON:-python3}" scripts/gpu_check.py "$@" ;;
esac
venv=${VENV:-.venv-gpu}
# --system-site-packages: GPU images ship torch built for their CUDA; the venv sees it.
[ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check -q --retries 2 --timeout 30)
cuda="torch.cuda.is_available()"
case " $* " in *" --device cpu "*) cuda=True ;; esac
if ! "$py" -c "import sys, torch; sys.exit(not $cuda)" 2>/dev/null; then
  # no torch that sees the GPU: PyPI's Linux wheel is a CUDA build; it shadows a CPU-only one
  "${pip[@]}" install --ignore-installed torch ||
    echo "gpu_check: could not install torch; the stages will say what is missing" >&2
fi
# Editable, so the tests and scripts of this checkout are what runs. Without PyPI (an offline
# machine) the packages already present are used; stages that miss one fail and say which.
"${pip[@]}" install -e ".[test]" ||
  echo "gpu_check: pip install failed; going on with the packages already installed" >&2
exec "$py" scripts/gpu_check.py "$@"
