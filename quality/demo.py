"""The demo: FIS on the model shipped in ``models/``, on the CPU, with no download.

    python -m quality.demo                      # writes fis_demo.webp
    python -m quality.demo --out demo.gif --prompt "green triangle moving right, red circle moving left, dots background, camera zoom-in"

It loads the checkpoint through ComfyUI's own loader (with the 4-step LoRA), samples one clip dense and
one with the FIS node at its defaults (same prompt, same seed), writes them side by side with their
difference as an animated WebP or GIF, and prints the fidelity figures and the compute saved.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from . import host, latent, scenes
from .evaluate import savings
from .metrics import psnr_per_frame, ssim_per_frame, temporal_error
from .model import FEW_STEPS, MODELS_DIR

PROMPT = "red square moving right, cyan circle moving left, stripes background, camera pan-up"
SEED = 7
ZOOM = 4
DIFFERENCE_GAIN = 4


def side_by_side(clips: list[torch.Tensor], titles: list[str], path: Path, fps: float = 8.0):
    """Write clips [1, 3, F, H, W] in [0, 1] next to each other, titled, as an animated WebP or GIF
    (by the suffix of ``path``), enlarged ``ZOOM`` times with sharp pixels."""
    font = ImageFont.load_default(size=13)
    frames = clips[0].shape[2]
    h, w = clips[0].shape[-2] * ZOOM, clips[0].shape[-1] * ZOOM
    header, gap = 22, 4
    images = []
    for f in range(frames):
        canvas = Image.new("RGB", (len(clips) * (w + gap) - gap, h + header), "white")
        draw = ImageDraw.Draw(canvas)
        for i, (clip, title) in enumerate(zip(clips, titles)):
            array = (clip[0, :, f].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            panel = Image.fromarray(array).resize((w, h), Image.NEAREST)
            canvas.paste(panel, (i * (w + gap), header))
            draw.text((i * (w + gap) + w / 2, header / 2), title, fill="black", font=font, anchor="mm")
        images.append(canvas)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"lossless": True} if path.suffix.lower() == ".webp" else {}
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, **options)


def timed_sample(model, scene, seed, steps) -> tuple[torch.Tensor, float, host.BlockWork]:
    """The decoded clip, the seconds it took, and the block work it did."""
    started = time.perf_counter()
    with host.count_block_work(model, corrected=True) as work:
        clip = latent.to_pixels(host.sample(model, [scene], seed, steps))
    return clip, time.perf_counter() - started, work


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("fis_demo.webp"), help=".webp or .gif")
    parser.add_argument("--prompt", default=PROMPT, help="a scene description: " + scenes.Scene.parse(PROMPT).description.join("''"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--steps", type=int, default=FEW_STEPS, help=f"{FEW_STEPS} (base + 4-step LoRA) or more (base)")
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    scene = scenes.Scene.parse(args.prompt)
    host.boot(cpu=True)
    import comfy.utils
    from comfyui_fis.fis_core import format_block_list
    comfy.utils.PROGRESS_BAR_ENABLED = False
    model = host.load_model(args.steps, args.models)
    fis_model = host.with_fis(model, quality="balanced")
    host.sample(model, [scene], args.seed, 1)   # warm-up: the first call loads and patches the weights
    dense, dense_seconds, _ = timed_sample(model, scene, args.seed, args.steps)
    fis, fis_seconds, fis_work = timed_sample(fis_model, scene, args.seed, args.steps)
    difference = ((fis - dense).abs() * DIFFERENCE_GAIN).clamp(0, 1)
    side_by_side([dense, fis, difference], ["dense", "FIS (defaults)", f"|difference| x{DIFFERENCE_GAIN}"], args.out)

    psnr = psnr_per_frame(fis, dense)[0]
    saved = savings(model, fis_work, 1, args.steps)
    print(f"prompt: {scene.description} (seed {args.seed}, {args.steps} steps, {scenes.FRAMES} frames of "
          f"{scenes.SIZE}x{scenes.SIZE})")
    settings = host.resolved_settings(model, quality="balanced")
    print(f"FIS defaults (balanced): sparse blocks {format_block_list(settings.sparse_blocks)}, G={settings.groups}, "
          f"{settings.interpolation} interpolation, groups rotated across steps")
    print(f"fidelity of FIS against dense: PSNR {psnr.mean():.1f} dB (worst frame {psnr.min():.1f} dB), "
          f"SSIM {ssim_per_frame(fis, dense).mean():.4f}, temporal error {100 * temporal_error(fis, dense).item():.1f}%")
    print(f"compute saved: {100 * saved['compute_saved']:.0f}% of the transformer blocks' FLOPs "
          f"({100 * saved['tokens_skipped']:.0f}% of block tokens)")
    print(f"sampling time on this CPU: dense {dense_seconds:.1f} s, FIS {fis_seconds:.1f} s "
          f"({dense_seconds / fis_seconds:.2f}x)")
    print(f"wrote {args.out} (dense | FIS | difference) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
