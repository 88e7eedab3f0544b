#!/usr/bin/env bash
# Regenerates tests/fixtures/reference.json with Hugging Face transformers, an
# implementation independent of this project, on the same GGUF file (see the docstring of
# scripts/make_reference.py). Run by hand after scripts/setup:
#   scripts/make_reference.sh [make_reference.py options, e.g. --out other.json]
# It keeps a throw-away venv under target/reference-venv (or $REFERENCE_VENV) with the pinned
# reference packages; torch is not installed there but shared from .venv through a .pth file
# (so the venv is made with .venv's own interpreter).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

REQUIREMENTS="transformers==5.24.0 gguf==0.19.0 accelerate==1.15.0 numpy==2.4.6"
MODEL=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
venv=${REFERENCE_VENV:-target/reference-venv}

[ -x .venv/bin/python ] || { echo "make_reference: .venv is missing; run scripts/setup first" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "make_reference: $MODEL is missing; run scripts/setup first" >&2; exit 1; }

if [ "$(cat "$venv/requirements.txt" 2>/dev/null)" != "$REQUIREMENTS" ]; then
  echo "make_reference: building $venv ($REQUIREMENTS)" >&2
  rm -rf "$venv"
  .venv/bin/python -m venv "$venv"
  purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
  site=$("$venv/bin/python" -c "$purelib")
  .venv/bin/python -c "$purelib" > "$site/project-torch.pth"
  # shellcheck disable=SC2086 # the requirements are meant to split into words
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $REQUIREMENTS
  echo "$REQUIREMENTS" > "$venv/requirements.txt"
fi
"$venv/bin/python" scripts/make_reference.py --model "$MODEL" "$@"
