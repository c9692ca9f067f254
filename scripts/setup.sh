#!/usr/bin/env bash
# Create .venv and install sharebert with everything it uses, on a machine with or without a GPU.
#   scripts/setup.sh          # runtime: torch, deepspeed, datasets, wandb, sharebert
#   scripts/setup.sh --dev    # the same plus the test tools
# Where no NVIDIA GPU is present, a CPU build of torch is installed (a plain `pip install torch`
# would pull a multi-GB CUDA build). SHAREBERT_TORCH overrides the torch requirement.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
extras="all"
[ "${1:-}" = "--dev" ] && extras="all,test"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip setuptools wheel

have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

install_torch() {
  if "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then return; fi
  if [ -n "${SHAREBERT_TORCH:-}" ]; then
    pip install -q "$SHAREBERT_TORCH"
  elif have_gpu; then
    pip install -q torch
  else
    # A local CPU wheel (pip's find-links) when the machine carries one, else PyTorch's CPU index.
    pip install -q "torch==2.13.0+cpu" 2>/dev/null \
      || pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  fi
}

install_torch
# DeepSpeed's setup.py imports torch, so it is built against the torch installed above.
"$VENV/bin/python" -c "import deepspeed" >/dev/null 2>&1 \
  || pip install -q --no-build-isolation "deepspeed>=0.17,<0.20"
pip install -q -e ".[$extras]"
echo "sharebert installed in $VENV: $("$VENV/bin/sharebert" --version)"
