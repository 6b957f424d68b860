#!/usr/bin/env bash
# The model shaped more like Wan (issue 26) in one lent GPU call: trained (~6 min), then studied in the time left,
# most important first (quality/wan_shaped.py says what is measured and why it fits: FLOP arithmetic there).
#
#   OUT=DIR bash quality/gpu_wan_shaped.sh        # on an H100 or H200, within the call's 600 s
#
# The checkpoint stays on the machine (/tmp/fis_wan_shaped: it is not shipped and is too large to come back); $OUT
# gets the study (wan_shaped_study.json, wan_shaped_front.png, wan_shaped_tables.md), training's train_log.json,
# loss_curve.png and samples.png, and this run's log: 7 files. It expects the host where the device notes put it
# (.devcarry/comfyui.tar.xz, not in git) and the host's requirements the device lacks: .devcarry/studydeps.tar.xz
# (quality/pack_study_carry.sh makes it and completes the host) or .devcarry/backends.tar.xz, whichever is carried.
# It checks the host's imports before training and stops in seconds, naming them, if one fails. BUDGET: the seconds
# it may use from its start (default 585 of the call's 600); TRAIN_MINUTES: quality.train's budget (default 6).
set -uo pipefail
START=$(date +%s)
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fis_wan_shaped_out}
UNPACKED=/tmp/fis_wan_shaped_host          # afresh: a warm machine may hold another call's host
rm -rf "$UNPACKED" && mkdir -p "$OUT" "$UNPACKED/site"
tar -xJf .devcarry/comfyui.tar.xz -C "$UNPACKED"
for deps in .devcarry/backends.tar.xz .devcarry/studydeps.tar.xz; do
  [ -f "$deps" ] && tar -xJf "$deps" -C "$UNPACKED/site"
done
export PYTHONPATH="$UNPACKED/site" COMFYUI_PATH="$UNPACKED/ComfyUI" PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "unpacked in $(( $(date +%s) - START )) s"
  python3 -m quality.wan_shaped --out "$OUT" --until $(( START + ${BUDGET:-585} )) --train-minutes "${TRAIN_MINUTES:-6}" "$@"
} 2>&1 | tee "$OUT/wan_shaped.log"
