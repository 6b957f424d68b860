"""What a sampling run keeps on the GPU, and what it gives back when it ends, at a full-size model's shapes.

The corrected restore of ``--blocks`` sparse blocks (38: Wan-14B's ``auto``) over ``--steps`` steps on random bf16
tokens (Wan-14B 720p: 21 latent frames of 3600 tokens, 5120 channels), the fit sums carried over the steps as FIS
carries them within a run (``FitSums``) and the plans and fit rows in the run's ``ShapeCache``: the GPU memory
allocated beyond the run's inputs at its end, with that state held (what stayed until the next run started, before
the run state had an end), and after it is released (what the sampler wrapper now does when the run ends). Pure
torch: needs no ComfyUI.

    python bench/run_memory.py --out bench/out/run_memory.json
    python bench/run_memory.py --tiny        # a tiny shape on the CPU: checks the script, no memory figures
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from host_path import import_pack  # noqa: E402


def allocated_mb(device) -> float:
    if device.type != "cuda":
        return 0.0
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**20


def run_memory(frames: int, tokens: int, channels: int, blocks: int, steps: int, batch: int, device) -> dict:
    """The memory a run of ``blocks`` corrected sparse blocks over ``steps`` steps holds at its end, and after release."""
    from comfyui_fis.fis_core import CorrectionForm, FitSums, FrameLayout, build_plan, restore, token_index
    from comfyui_fis.fis_core.shape_cache import ShapeCache
    layout = FrameLayout(0, frames, tokens)
    x = torch.randn(batch, frames * tokens, channels, device=device, dtype=torch.bfloat16)
    before = allocated_mb(device)
    fit_sums, shapes = FitSums(), ShapeCache()
    for step in range(steps):
        computed = tuple(range(step % 2, frames, 2))        # G=2, rotated
        plan = shapes.get(("plan", computed), lambda: build_plan(frames, computed, "corrected", device))
        rows = shapes.get(("rows", computed), lambda: plan.fit_rows(tokens))
        y = x.index_select(1, token_index(layout, plan)) * 1.01
        for block in range(blocks):
            restore(x, y, layout, plan, (fit_sums, (block, ())), rows)
        del y
    held = allocated_mb(device) - before
    fit_sums.clear()
    shapes.clear()
    released = allocated_mb(device) - before
    form = CorrectionForm()
    c = form.channels_per_map(channels)
    sums_mb = 2 * blocks * batch * (channels // c) * c * c * 4 / 2**20    # a Gram and a cross sum per map, fp32
    return {"frames": frames, "tokens": tokens, "channels": channels, "blocks": blocks, "steps": steps, "batch": batch,
            "held_mb": held, "released_mb": released, "fit_sums_mb_computed": sums_mb}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=38)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1, help="batch entries (2: CFG's cond and uncond in one batch)")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape on the CPU: checks the script, no figures")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "run_memory.json"))
    args = parser.parse_args(argv)
    import_pack()
    device = torch.device("cpu" if args.tiny else "cuda")
    shape = (9, 64, 256) if args.tiny else (21, 3600, 5120)
    with torch.inference_mode():
        row = run_memory(*shape, args.blocks, args.steps, args.batch, device)
    result = {"what": __doc__.split("\n\n")[0], "date": datetime.date.today().isoformat(),
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "rows": [row]}
    print(f"{result['device']}: {row['blocks']} sparse blocks x {row['steps']} steps, batch {row['batch']}: "
          f"{row['held_mb']:.1f} MB held at the run's end ({row['fit_sums_mb_computed']:.1f} MB of fit sums computed), "
          f"{row['released_mb']:.1f} MB after release")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
