#!/usr/bin/env bash
# MT-Bench on a SmolLM2 LoRA run, graded by a local judge that `tunesmith serve` runs: the whole path of
# `tunesmith eval RUN --suite mtbench --judge URL --base` with nothing outside this machine.
#   bash bench/mtbench_smollm2.sh            (repository root; ../shared beside it; ~15 min on 2 CPU cores)
# The judge is the 135M chat model itself: it shows the plumbing (answers, single grades, pairwise in both
# orders, per-category tables, report), not a trustworthy grade; a judge that parses the rubric reliably
# needs a larger model behind the same URL.
set -euo pipefail
OUT=${OUT:-/tmp/tunesmith-mtbench}
PORT=${PORT:-8765}
GGUF=$(ls ../shared/fixtures/smollm2-135m-instruct/*.gguf)
mkdir -p "$OUT"
python -m tunesmith serve "judge=$GGUF" --port "$PORT" > "$OUT/judge.log" 2>&1 &
judge=$!
trap 'kill $judge 2>/dev/null || true' EXIT
python -m tunesmith train bench/mtbench_smollm2.yaml "output=$OUT/runs" --overwrite
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null && break; sleep 2; done
python -m tunesmith eval "$OUT/runs/mtbench-smollm2" --suite mtbench --judge "http://127.0.0.1:$PORT/v1" \
  --judge-model judge --base --limit 1 --max-new-tokens 48 --data-dir ../shared/data
echo "report: $OUT/runs/mtbench-smollm2/report.html"
