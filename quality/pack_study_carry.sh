#!/usr/bin/env bash
# What quality/gpu_wan_shaped.sh needs carried to the device beyond the repo, within its 64 MiB: run once here.
#
#   bash quality/pack_study_carry.sh      # then carry .devcarry/comfyui.tar.xz and .devcarry/studydeps.tar.xz
#
# - .devcarry/comfyui.tar.xz gets what the study loads and a host packed for the speed benchmarks may lack:
#   comfy_extras/ (ModelSamplingSD3, EasyCache) and comfy/text_encoders/{spiece,bpe}_tokenizer.py (comfy.sd imports
#   them), from the host at $COMFYUI_PATH or ~/ComfyUI (0.33.0, the device's).
# - .devcarry/studydeps.tar.xz: the host's requirements the device image lacks, from .devcarry/backends.tar.xz
#   without the attention kernels the study does not use (FlashAttention-3, SageAttention, comfy-kitchen's CUDA
#   library: the study runs torch's SDPA and comfy-kitchen falls back to its Triton and eager code), and PyAV for
#   the device's Python 3.12 (ComfyUI's nodes import it): ~26 MB where backends.tar.xz is 43.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${COMFYUI_PATH:-$HOME/ComfyUI}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/host"
tar -xJf .devcarry/comfyui.tar.xz -C "$work/host"
tar -cf - -C "$(dirname "$HOST")" --exclude=__pycache__ "$(basename "$HOST")/comfy_extras" \
  "$(basename "$HOST")/comfy/text_encoders/spiece_tokenizer.py" "$(basename "$HOST")/comfy/text_encoders/bpe_tokenizer.py" \
  | tar -xf - -C "$work/host" --transform "s#^$(basename "$HOST")/#ComfyUI/#"
tar -cJf .devcarry/comfyui.tar.xz -C "$work/host" ComfyUI

mkdir "$work/site"
tar -xJf .devcarry/backends.tar.xz -C "$work/site" --exclude='./fa3_fwd*' --exclude='fa3_fwd*' --exclude='./sageattention' \
  --exclude=sageattention --exclude='*/comfy_kitchen/backends/cuda/_C.abi3.so' --exclude='comfy_kitchen/backends/cuda/_C.abi3.so'
python3 -m pip download av --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  -d "$work/wheels" --quiet
python3 -m zipfile -e "$work"/wheels/av-*.whl "$work/site"
tar -cJf .devcarry/studydeps.tar.xz -C "$work/site" .
ls -l .devcarry/comfyui.tar.xz .devcarry/studydeps.tar.xz
