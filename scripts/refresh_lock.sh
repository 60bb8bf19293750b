#!/usr/bin/env bash
# Rebuild scripts/constraints.txt from the newest versions pyproject.toml allows: a venv built from nothing,
# the README's test command in it, and only if that passes, its `pip freeze` (less torch and tunesmith) as the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
TUNESMITH_UNLOCKED=1 bash scripts/setup.sh test
python3 -m pytest -q
{ sed -n '1,3p' scripts/constraints.txt
  pip freeze --exclude-editable | grep -viE '^(torch|tunesmith)==' | sort -f; } > "$venv/lock.txt"
mv "$venv/lock.txt" scripts/constraints.txt
echo "scripts/constraints.txt refreshed from $venv"
