#!/usr/bin/env bash
# Creates .venv with scd and its dependencies; a no-op when pyproject.toml has not changed since the last run.
# Torch is installed first, pinned, so that pip does not resolve an unpinned `torch` to a multi-GB CUDA build on a
# CPU-only machine. Set SCD_TORCH (e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128") to choose.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
stamp=.venv/.scd-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q ${SCD_TORCH:-torch==2.13.0}
.venv/bin/python -m pip install -q -e ".[dev,cluster]"
echo "$want" > "$stamp"
