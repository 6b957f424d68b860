"""FIS and EasyCache stacked: what a workflow with many steps gets from both. EasyCache skips whole model calls when
the model's output changes slowly (many steps), FIS makes each call it does not skip cheaper. Same prompts, noise
and measure as ``quality.evaluate`` (each clip against dense at the same seed, block FLOPs counted, the correction's
included); EasyCache samples one prompt at a time, as it decides per batch.

    python -m quality.stacking                 # 32 prompts: docs/quality_stacking.json

The rows of either alone are those of ``docs/quality_results.json`` (same checkpoint, prompts and noise).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import host
from .evaluate import DOCS, Runner, Setting, fidelity_cells, prompts
from .model import FEW_STEPS, MODELS_DIR

MANY_STEPS = 20


def settings(steps: int) -> list[Setting]:
    """EasyCache (thresholds where it skips at this step count) after a FIS preset; at many steps also after FIS with
    its groups fixed across steps (not rotated), which tells whether the rotation is what EasyCache reacts to."""
    pairs = [("faithful", 0.3)] if steps == FEW_STEPS else [("balanced", 0.1), ("faithful", 0.1), ("faithful", 0.2)]
    stacked = [Setting(f"FIS {preset} + EasyCache {threshold}", "fis+easycache",
                       {"fis": {"quality": preset}, "easycache": {"reuse_threshold": threshold}})
               for preset, threshold in pairs]
    if steps != FEW_STEPS:
        stacked.append(Setting("FIS balanced, groups fixed (not rotated) + EasyCache 0.1", "fis+easycache",
                               {"fis": {"rotate": False}, "easycache": {"reuse_threshold": 0.1}}))
    return stacked


def table(results: dict) -> str:
    lines = ["| steps | setting | compute saved | model calls skipped | PSNR (dB) | worst frame (dB) | SSIM | temporal error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for steps, rows in results["steps"].items():
        lines += [f"| {steps} | {row['name']} | {100 * row['compute_saved']:.0f}% | {100 * row['model_calls_skipped']:.0f}% "
                  f"| {fidelity_cells(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--steps", default=f"{FEW_STEPS},{MANY_STEPS}")
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument("--out", type=Path, default=DOCS / "quality_stacking.json")
    args = parser.parse_args(argv)
    log = host.boot_study()
    results = {"prompts": args.prompts, "date": time.strftime("%Y-%m-%d"), "steps": {}}
    for steps in (int(s) for s in args.steps.split(",")):
        runner = Runner(steps, prompts(args.prompts), args.models)
        rows = results["steps"][str(steps)] = []
        for setting in settings(steps):
            rows.append(runner.measure(setting))
            log(f"{steps} steps, {setting.name}: saved {100 * rows[-1]['compute_saved']:.0f}%, "
                f"PSNR {rows[-1]['psnr']:.2f} dB")
        args.out.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
