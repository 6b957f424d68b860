"""Does FIS cost less on a deeper model? The same measurements on the shipped 8-block model and on another
checkpoint trained by ``quality.train`` (e.g. ``--layers 24``), same prompts and noise, 4 steps.

    python -m quality.train --device cuda --minutes 7 --layers 24 --out DEEP     # on a GPU
    python -m quality.depth --models DEEP                                        # CPU: docs/quality_depth.json

For each model: the three presets, FIS as it was before the fidelity work (linear, fixed groups), the default's
number of sparse blocks taken from the front, G=3, and another seed for scale.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import host
from .evaluate import DOCS, FIS_BEFORE, FIS_DEFAULT, FIS_FASTEST, FIS_FAITHFUL, Runner, Setting, prompts
from .model import FEW_STEPS, MODELS_DIR


def settings(num_blocks: int) -> list[Setting]:
    sparse = num_blocks - 2                                   # auto: all but the first and the last
    return [FIS_DEFAULT, FIS_FAITHFUL, FIS_FASTEST, FIS_BEFORE,
            Setting(f"first {sparse} blocks (naive, equal compute)", "fis", {"sparse_blocks": f"0-{sparse - 1}"}),
            Setting("FIS G=3", "fis", {"groups": 3})]


def study(models_dir: Path, prompt_count: int, log=print) -> dict:
    """The measurements on the model in ``models_dir``."""
    runner = Runner(FEW_STEPS, prompts(prompt_count), models_dir)
    train_log = json.loads((Path(models_dir) / "train_log.json").read_text())
    rows = []
    for setting in settings(runner.num_blocks):
        rows.append(runner.measure(setting))
        log(f"{runner.num_blocks} blocks, {setting.name}: saved {100 * rows[-1]['compute_saved']:.0f}%, "
            f"PSNR {rows[-1]['psnr']:.2f} dB")
    return {"models": str(models_dir), "blocks": runner.num_blocks, "base_steps": train_log["base"]["steps"],
            "base_loss": train_log["base"]["loss"][-1]["loss"], "lora_steps": train_log["lora"]["steps"],
            "settings": rows, "another_seed": runner.another_seed()}


def table(results: list[dict]) -> str:
    lines = ["| model | training (base steps, last loss) | setting | compute saved | PSNR (dB) | SSIM | temporal error |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        model = f"{result['blocks']} blocks"
        training = f"{result['base_steps']}, {result['base_loss']:.3f}"
        for row in result["settings"] + [{"name": "*another seed*", "compute_saved": None, **result["another_seed"]}]:
            s = row["summary"]
            saved = "-" if row["compute_saved"] is None else f"{100 * row['compute_saved']:.0f}%"
            lines.append(f"| {model} | {training} | {row['name']} | {saved} | {row['psnr']:.1f} | "
                         f"{s['ssim']['mean']:.4f} | {100 * s['temporal_error']['mean']:.1f}% |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="folder of the other checkpoint (quality.train --out)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--out", type=Path, default=DOCS / "quality_depth.json")
    args = parser.parse_args(argv)
    log = host.boot_study()
    results = [study(folder, args.prompts, log) for folder in (MODELS_DIR, args.models)]
    args.out.write_text(json.dumps({"prompts": args.prompts, "steps": FEW_STEPS, "date": time.strftime("%Y-%m-%d"),
                                    "results": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
