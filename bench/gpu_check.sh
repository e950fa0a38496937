#!/usr/bin/env bash
# The device check of issue 13: one short run (< 8 minutes on one H100/H200) of what CPU tests cannot check.
#
#   bash bench/gpu_check.sh              # on a GPU machine; figures under $OUT (default ./gpu_check_out)
#   bash bench/gpu_check.sh --dry-run    # the same code, tiny, on the CPU (tests/test_gpu_path.py runs this)
#
# Extra arguments go to bench/gpu_check.py (see its docstring), e.g. --images 16 --batch-sizes 1,8.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec "$PY" bench/gpu_check.py "$@"
