"""Does a calibrated block choice beat ``auto``? The FIS Calibrate node run on one prompt of the shipped model, then
its choice and ``auto`` at equal compute (the same number of sparse blocks, G=2, corrected, rotated) measured on
other prompts, 4 steps, against dense.

    python -m quality.calibration_study            # docs/calibration_study.json and a table
    python -m quality.calibration_study --models DEEP --out docs/calibration_study_24blocks.json   # another checkpoint
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from . import host
from .evaluate import DOCS, NOISE_SEED, Runner, Setting, prompts
from .model import FEW_STEPS, MODELS_DIR

PROFILE = "quality_study"


def calibrate(model, scene) -> dict:
    """Run the FIS Calibrate node over one prompt at 4 steps; the profile is saved as :data:`PROFILE` and returned."""
    from comfyui_fis.nodes import FISCalibrate
    from comfyui_fis.nodes.calibration.profiles import load_profile
    host.sample(FISCalibrate().calibrate(model, PROFILE)[0], [scene], NOISE_SEED, FEW_STEPS)
    return load_profile(PROFILE, "profile_name")


def study(prompt_count: int, log=print, models_dir: Path = MODELS_DIR) -> dict:
    """Calibrate on the first evaluation prompt, measure on the next ``prompt_count``, on the model in ``models_dir``."""
    import folder_paths
    folder_paths.set_user_directory(tempfile.mkdtemp(prefix="fis_profiles_"))
    prompt_set = prompts(prompt_count + 1)
    runner = Runner(FEW_STEPS, prompt_set[1:], models_dir)
    profile = calibrate(runner.model, prompt_set[0])
    auto = Setting("auto (all but the first and last)", "fis", {})
    profiled = Setting("calibrated (profile, as many blocks as auto)", "fis", {"sparse_blocks": f"profile:{PROFILE}"})
    rows = []
    for setting in (auto, profiled):
        rows.append(runner.measure(setting))
        log(f"{setting.name}: blocks {rows[-1]['blocks']}, saved {100 * rows[-1]['compute_saved']:.0f}%, "
            f"PSNR {rows[-1]['psnr']:.2f} dB")
    return {"blocks": runner.num_blocks, "calibration_prompt": prompt_set[0].description, "profile_defect": profile["defect"],
            "prompts": [p.description for p in prompt_set[1:]], "date": time.strftime("%Y-%m-%d"), "settings": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=16, help="evaluation prompts (other than the calibration one)")
    parser.add_argument("--models", type=Path, default=MODELS_DIR, help="folder of the checkpoint (quality.train --out)")
    parser.add_argument("--out", type=Path, default=DOCS / "calibration_study.json")
    args = parser.parse_args(argv)
    result = study(args.prompts, host.boot_study(), models_dir=args.models)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
