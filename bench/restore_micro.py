"""Micro-benchmark of FIS's own work around one sparse block at full-size shapes: the gather of the
computed tokens and the restore of the skipped frames, next to a plain copy of the activation (the
memory-bandwidth yardstick). Prints milliseconds per call.

    python bench/restore_micro.py            # on a CUDA GPU (on the CPU it runs tiny shapes, as a smoke test)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fis_core import FisSchedule, FrameLayout, build_plan, gather, restore, token_index  # noqa: E402
from timing import Clock  # noqa: E402  (this folder is on sys.path when run as a script)

SHAPES = {"wan14b 720p": (21, 3600, 5120), "wan14b 480p": (21, 1560, 5120), "hv15 720p": (21, 3600, 2048)}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    SHAPES = {"tiny (cpu)": (9, 16, 64)}


def median_ms(fn):
    return Clock(DEVICE).median_ms(fn, reps=20, warmup=3)


def main():
    torch.manual_seed(0)
    print("shape | copy ms | gather ms | restore ms | GB/s restore (x, y read; out written)")
    for name, (frames, tokens, channels) in SHAPES.items():
        layout = FrameLayout(0, frames, tokens)
        computed = FisSchedule((0,), 2).frames_for_block(0, frames)
        plan = build_plan(frames, computed, "linear", DEVICE)
        index = token_index(layout, plan)
        x = torch.randn(1, layout.length, channels, device=DEVICE, dtype=torch.bfloat16)
        y = torch.randn(1, index.numel(), channels, device=DEVICE, dtype=torch.bfloat16)
        copy = median_ms(lambda: x.clone())
        gather_ms = median_ms(lambda: gather(x, index))
        restore_ms = median_ms(lambda: restore(x, y, layout, plan))
        moved = (2 * x.numel() + y.numel()) * 2 / 1e9
        print(f"{name} | {copy:.2f} | {gather_ms:.2f} | {restore_ms:.2f} | {moved / restore_ms * 1e3:.0f}", flush=True)


if __name__ == "__main__":
    main()
