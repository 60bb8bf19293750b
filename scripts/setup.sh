#!/usr/bin/env bash
# Install tunesmith and what it needs into the current Python, offline-friendly and idempotent.
# A machine without an NVIDIA GPU gets the small CPU build of torch, not the multi-GB CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
extras="${1:-}"
if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$PY" -m pip install -q torch
  else
    "$PY" -m pip install -q torch==2.13.0
  fi
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# The exact versions the suite passed with (scripts/constraints.txt); TUNESMITH_UNLOCKED=1 takes the newest
# versions pyproject.toml's bounds allow instead.
lock=(-c scripts/constraints.txt)
[ -n "${TUNESMITH_UNLOCKED:-}" ] && lock=()
"$PY" -m pip install -q "${lock[@]}" -e "$spec"
# The web UI's browser tests drive Debian's chromium (never a downloaded browser); they skip without it.
if [[ ",$extras," == *",test,"* ]] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  { { apt-get update -q && apt-get install -y -q chromium chromium-driver; } \
    || sudo -n sh -c 'apt-get update -q && apt-get install -y -q chromium chromium-driver'; } \
    >/dev/null 2>&1 || echo "note: chromium not installed; the browser tests of the web UI will be skipped" >&2
fi
