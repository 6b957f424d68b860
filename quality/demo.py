"""The demo: FIS on the model shipped in ``models/``, on the CPU, with no download.

    python -m quality.demo                      # writes fis_demo.webp
    python -m quality.demo --out demo.gif --prompt "green triangle moving right, red circle moving left, dots background, camera zoom-in"

It loads the checkpoint through ComfyUI's own loader (with the 4-step LoRA), samples one clip dense and
one with the FIS node at its defaults (same prompt, same seed), each behind an FIS Timer, writes them side
by side with their difference as an animated WebP or GIF, and prints the FIS Compare node's report of the
two and the compute saved. ``--compare PNG`` also writes the node's side-by-side of the worst frame.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from . import host, latent, scenes
from .evaluate import savings
from .metrics import psnr_per_frame
from .model import FEW_STEPS, MODELS_DIR

PROMPT = "red square moving right, cyan circle moving left, stripes background, camera pan-up"
SEED = 7
ZOOM = 4
#: Enlargement of the frames in FIS Compare's picture (``--compare``): 256 pixels, where its labels read as on video.
PICTURE_ZOOM = 8
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


def timed_sample(model, scene, seed, steps) -> tuple[torch.Tensor, object, host.BlockWork]:
    """The decoded clip, its sampling time as the FIS Timer node measured it, and the block work it did."""
    from comfyui_fis.fis_core import CorrectionForm
    from comfyui_fis.nodes import FISTimer
    timed, timing = FISTimer().time(model)
    with host.count_block_work(timed, CorrectionForm()) as work:
        clip = latent.to_pixels(host.sample(timed, [scene], seed, steps))
    return clip, timing, work


def as_images(clip: torch.Tensor) -> torch.Tensor:
    """A clip [1, 3, F, H, W] as a ComfyUI IMAGE batch [F, H, W, 3]."""
    return clip[0].permute(1, 2, 3, 0)


def compare_picture(dense: torch.Tensor, fis: torch.Tensor, path: Path):
    """FIS Compare's side-by-side of the worst frame as PNG, the clips enlarged ``PICTURE_ZOOM`` times first (the
    node sizes its labels for video frames)."""
    from comfyui_fis.nodes.compare.side_by_side import side_by_side as compare_panels
    frame = psnr_per_frame(fis, dense)[0]
    worst = int(frame.argmin())
    zoomed = [as_images(c)[worst:worst + 1].repeat_interleave(PICTURE_ZOOM, 1).repeat_interleave(PICTURE_ZOOM, 2)
              for c in (dense, fis)]
    panels = compare_panels(*zoomed, DIFFERENCE_GAIN, frame[worst:worst + 1].tolist())[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((panels * 255).round().byte().numpy()).save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("fis_demo.webp"), help=".webp or .gif")
    parser.add_argument("--prompt", default=PROMPT, help="a scene description: " + scenes.Scene.parse(PROMPT).description.join("''"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--steps", type=int, default=FEW_STEPS, help=f"{FEW_STEPS} (base + 4-step LoRA) or more (base)")
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument("--compare", type=Path, help="also write FIS Compare's side-by-side of the worst frame (.png)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    scene = scenes.Scene.parse(args.prompt)
    host.boot(cpu=True)
    import comfy.utils
    from comfyui_fis.fis_core import format_block_list
    from comfyui_fis.nodes import FISCompare
    comfy.utils.PROGRESS_BAR_ENABLED = False
    model = host.load_model(args.steps, args.models)
    fis_model = host.with_fis(model, quality="balanced")
    host.sample(model, [scene], args.seed, 1)   # warm-up: the first call loads and patches the weights
    dense, dense_timing, _ = timed_sample(model, scene, args.seed, args.steps)
    fis, fis_timing, fis_work = timed_sample(fis_model, scene, args.seed, args.steps)
    difference = ((fis - dense).abs() * DIFFERENCE_GAIN).clamp(0, 1)
    side_by_side([dense, fis, difference], ["dense", "FIS (defaults)", f"|difference| x{DIFFERENCE_GAIN}"], args.out)
    report = FISCompare().compare(as_images(dense), as_images(fis), DIFFERENCE_GAIN, dense_timing, fis_timing)["result"][1]
    if args.compare:
        compare_picture(dense, fis, args.compare)

    saved = savings(model, fis_work, 1, args.steps)
    shape = host.shape_of(model)
    print(f"prompt: {scene.description} (seed {args.seed}, {args.steps} steps, {shape.frames} frames of "
          f"{shape.size}x{shape.size})")
    settings = host.resolved_settings(model, quality="balanced")
    print(f"FIS defaults (balanced): sparse blocks {format_block_list(settings.sparse_blocks)}, G={settings.groups}, "
          f"{settings.interpolation} interpolation, groups rotated across steps")
    print(f"FIS Compare (reference: dense, accelerated: FIS; sampling time on this CPU):\n{report}")
    print(f"compute saved: {100 * saved['compute_saved']:.0f}% of the transformer blocks' FLOPs "
          f"({100 * saved['tokens_skipped']:.0f}% of block tokens)")
    print(f"wrote {args.out} (dense | FIS | difference){f' and {args.compare}' if args.compare else ''} "
          f"in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
