#!/usr/bin/env bash
# One lent GPU call, all of a round's measurements: the kernel check, the attention table, FIS and FIS + FPS on
# the fastest attention backend, each as a ratio against dense on the same backend in the same run.
#
#   bash bench/gpu_session.sh      # the kernel check, the attention table, the correction's cost, speed rows and the
#                                  # end-to-end row on the fastest backend (~10 min on an H100 or H200)
#   SPAN_ONLY=1 bash bench/gpu_session.sh   # bench/span_keys.py alone: G=3's span-keys attention (~3 min)
#
# It expects the host and the attention backends unpacked where the device tool's notes put them (.devcarry/, not
# in git: comfyui.tar.xz holds a ComfyUI checkout, backends.tar.xz site-packages with sageattention, fa3-fwd,
# comfy-kitchen's CUDA build and the host's missing requirements). Results go to $OUT (default bench/out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT" /tmp/site /tmp/host
rm -rf /tmp/host/ComfyUI && tar -xJf .devcarry/comfyui.tar.xz -C /tmp/host
[ -f /tmp/site/.unpacked ] || { tar -xJf .devcarry/backends.tar.xz -C /tmp/site && touch /tmp/site/.unpacked; }
export PYTHONPATH=/tmp/site COMFYUI_PATH=/tmp/host/ComfyUI PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [ -n "${SPAN_ONLY:-}" ]; then python3 bench/span_keys.py --out "$OUT/span_keys.json"; exit; fi

fastest_backend() {   # the fastest backend a ComfyUI user can switch on, by the attention table at Wan-14B 720p
  python3 - "$OUT/attention.json" <<'EOF'
import json, sys
usable = {"SDPA flash": "sdpa", "SageAttention as ComfyUI": "sage", "comfy-kitchen int8": "ck", "FlashAttention-3 bf16": "fa3"}
rows = [r for r in json.load(open(sys.argv[1]))["rows"] if r["shape"] == "wan14b-720p" and "ms" in r]
best = min((r for r in rows if any(r["backend"].startswith(k) for k in usable)), key=lambda r: r["ms"])
print(next(v for k, v in usable.items() if best["backend"].startswith(k)))
EOF
}

# In order of what matters most: a call cut short at its time limit keeps what it wrote to $OUT.
if [ -z "${SPEED_ONLY:-}" ]; then   # SPEED_ONLY=1 FAST=...: the speed rows alone (the tables came back from a call before)
  python3 bench/fps_kernel.py --check-only --out "$OUT/fps_check.json"
  python3 bench/attention.py --out "$OUT/attention.json"
  python3 bench/correction_cost.py --out "$OUT/correction_cost.json"
  python3 bench/run_memory.py --out "$OUT/run_memory.json"
fi
FAST=${FAST:-$(fastest_backend 2>/dev/null || echo sdpa)}; echo "fastest backend: $FAST"
# The fused correction (on by default) for the speed rows only where it builds and agrees with the torch path here.
python3 bench/fused_check.py || { export FIS_FUSED_CORRECTION=0; echo "fused correction: off for the speed rows"; }
python3 bench/speed.py --attention "$FAST" --models wan14b --res 720p --settings default,fps75+G2 \
  --reps 2 --warmup 0 --out "$OUT/speed_wan14b_720p.json"
python3 bench/end_to_end.py --attention "$FAST" --res 720p --steps 4 --settings balanced --out "$OUT/end_to_end.json"
python3 bench/speed.py --attention "$FAST" --models wan14b,wan5b,hv15 --res 480p --settings default \
  --reps 2 --warmup 0 --no-block-times --out "$OUT/speed_480p.json"
python3 bench/speed.py --attention "$FAST" --models wan5b,hv15 --res 720p --settings default \
  --reps 2 --warmup 0 --no-block-times --out "$OUT/speed_720p.json"
python3 bench/speed.py --attention sdpa --models wan14b --res 720p --settings default \
  --reps 2 --warmup 0 --no-block-times --out "$OUT/speed_wan14b_720p_sdpa.json"
