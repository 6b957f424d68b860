"""End-to-end fidelity of FPS attention (FP8 and tile sparsity) on the model trained here.

The same prompts, noise and dense clips as :mod:`quality.evaluate`, at 4 steps (base + 4-step LoRA);
FPS runs its PyTorch reference path on the CPU, the same arithmetic as the GPU kernel (per-tile e4m3
Q, K, V; P in e4m3; kept tile pairs only). The model's self-attention sees 17 frames of 8x8 tokens.

    python -m quality.fps_eval                  # 32 prompts: docs/fps_quality.json, a table on stdout
"""
from __future__ import annotations

import argparse
import json
import time

from . import host
from .evaluate import DOCS, FIS_DEFAULT, Runner, Setting, fidelity_cells, prompts
from .model import FEW_STEPS, MODELS_DIR

NO_EXACT_STEPS = {"dense_steps": ""}
FIS_DEFAULT_WIDGETS: dict = {}

#: name -> the evaluation's widgets: the FPS node's, and the FIS node's where FIS runs on top
FPS_SETTINGS = {
    "FP8, no sparsity": {"fps": {"sparsity": 0.0, **NO_EXACT_STEPS}},
    "BF16, 50% window": {"fps": {"precision": "bf16", "sparsity": 0.5, **NO_EXACT_STEPS}},
    "FP8, 50% window": {"fps": {"sparsity": 0.5, **NO_EXACT_STEPS}},
    "FP8, 50% window, exact 40-60% (node default)": {"fps": {"sparsity": 0.5}},
    "FP8, 50% window, 1-frame tiles (1x8x8)": {"fps": {"sparsity": 0.5, "tile": "1x8x8", **NO_EXACT_STEPS}},
    "FP8, 50% top-k": {"fps": {"sparsity": 0.5, "pattern": "topk", **NO_EXACT_STEPS}},
    "FP8, 75% window": {"fps": {"sparsity": 0.75, **NO_EXACT_STEPS}},
    "FP8, no sparsity + FIS default": {"fps": {"sparsity": 0.0, **NO_EXACT_STEPS}, "fis": FIS_DEFAULT_WIDGETS},
    "FP8, 50% window + FIS default": {"fps": {"sparsity": 0.5, **NO_EXACT_STEPS}, "fis": FIS_DEFAULT_WIDGETS},
}


def run(prompt_count: int, log=print) -> dict:
    """FIS alone, then every FPS setting, against dense; returns what ``docs/fps_quality.json`` holds."""
    runner = Runner(FEW_STEPS, prompts(prompt_count), MODELS_DIR)
    fis = runner.measure(FIS_DEFAULT)                               # FIS alone, for comparison
    rows = [fis]
    log(f"  {fis['name']}: PSNR {fis['psnr']:.2f} dB")
    for name, widgets in FPS_SETTINGS.items():
        result = runner.measure(Setting(name, "fps", widgets))
        rows.append(result)
        log(f"  {name}: PSNR {result['psnr']:.2f} dB")
    other = runner.another_seed()
    return {"prompts": prompt_count, "steps": FEW_STEPS, "date": time.strftime("%Y-%m-%d"), "settings": rows,
            "another_seed": other}


def table(results: dict) -> str:
    lines = [f"FPS on the model trained here: {results['prompts']} prompts, {results['steps']} steps, each against "
             "dense at the same seed (CPU, the reference path's arithmetic):", "",
             "| setting | PSNR (dB) | worst frame (dB) | SSIM | temporal error |", "| --- | --- | --- | --- | --- |"]
    for row in results["settings"] + [{"name": "*dense, another seed (a different video)*", **results["another_seed"]}]:
        lines.append(f"| {row['name']} | {fidelity_cells(row)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--out", default=str(DOCS / "fps_quality.json"))
    args = parser.parse_args(argv)
    results = run(args.prompts, host.boot_study())
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
