#!/usr/bin/env bash
# Train (or finish) several recipes one after another; safe to stop and rerun: each resumes from its checkpoint.
#   training/queue.sh gogh scream wave ...
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
for name in "$@"; do
  recipe=training/recipes/$name.toml
  out=$(sed -n 's/^out = "\(.*\)"/\1/p' "$recipe")
  if [ -f "$out" ] && [ -f "runs/$name/checkpoint.pt" ] && [ "$out" -nt "runs/$name/checkpoint.pt" ]; then
    echo "== $name: done ($out)"; continue
  fi
  echo "== $name: training ($(date +%H:%M))"
  "$py" -m stylecam.training.train --recipe "$recipe" --resume || { echo "== $name: failed or stopped"; exit 1; }
done
