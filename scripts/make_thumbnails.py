"""Write the template browser's thumbnails: ``workflows/<name>.jpg`` beside each example workflow, as the front end
asks for a custom node pack's templates (the same name, ``.jpg``). Run it after adding or changing a workflow:

    python scripts/make_thumbnails.py

A card names the model and what FIS does in the workflow, over the schedule FIS follows on that model (blocks x
latent frames, from the core) or, for the A/B workflows, FIS Compare's picture. No model output: none can be
rendered where this pack is built.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT))
from fis_core import FisSchedule  # noqa: E402
from fis_core.schedule_image import BACKGROUND, MUTED, TEXT, render_png  # noqa: E402

SIZE = (640, 480)
COMPARE_PICTURE = PACK_ROOT / "web" / "docs" / "compare.png"
#: workflow -> (title, subtitle, the model's blocks and latent frames, its auto anchors), or the compare picture.
CARDS = {
    "wan22_a14b_t2v_4step_fis": ("Wan 2.2 A14B text-to-video", "4 steps, FIS on both experts: 2.9x per step", 40, 21, ()),
    "wan22_a14b_i2v_4step_fis": ("Wan 2.2 A14B image-to-video", "4 steps, FIS on both experts, the start image kept",
                                 40, 21, (0,)),
    "wan22_a14b_t2v_4step_fis_fps": ("Wan 2.2 A14B text-to-video", "4 steps, FIS + FP8 attention: 4x per step", 40, 21,
                                     ()),
    "wan22_ti2v_5b_fis": ("Wan 2.2 TI2V-5B", "20 steps, FIS: 2.3x per step at 720p", 30, 31, ()),
    "hunyuanvideo15_t2v_4step_fis": ("HunyuanVideo 1.5 text-to-video", "4 steps, FIS: 2.7x per step at 480p", 54, 21, ()),
    "hunyuanvideo15_i2v_step_distilled_fis": ("HunyuanVideo 1.5 image-to-video", "8 steps, step-distilled, FIS", 54, 21,
                                              (0,)),
    "wan22_a14b_t2v_4step_compare": ("A/B: Wan 2.2 A14B, dense | FIS + FPS", "FIS Compare: PSNR, SSIM, speed-up",
                                     COMPARE_PICTURE),
    "hunyuanvideo15_t2v_4step_compare": ("A/B: HunyuanVideo 1.5, dense | FIS", "FIS Compare: PSNR, SSIM, speed-up",
                                         COMPARE_PICTURE),
}


def picture(blocks: int, frames: int, anchors: tuple) -> "Image.Image":
    """The schedule of FIS's balanced preset (auto blocks, G=2) on a model of ``blocks`` blocks."""
    from PIL import Image
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "schedule.png"
        render_png(path, FisSchedule(tuple(range(1, blocks - 1)), 2, anchors=anchors), blocks, frames, cell=(14, 6))
        return Image.open(path).copy()


def card(title: str, subtitle: str, content) -> "Image.Image":
    from PIL import Image, ImageDraw, ImageFont
    image = Image.new("RGB", SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((20, 14), title, fill=TEXT, font=ImageFont.load_default(size=36))
    draw.text((20, 62), subtitle, fill=MUTED, font=ImageFont.load_default(size=24))
    top, room = 104, (SIZE[0] - 20, SIZE[1] - 114)
    scale = min(room[0] / content.width, room[1] / content.height, 1.0 if content.height > room[1] / 2 else 2.0)
    shown = content.resize((int(content.width * scale), int(content.height * scale)), Image.LANCZOS)
    image.paste(shown, ((SIZE[0] - shown.width) // 2, top + (room[1] - shown.height) // 2))
    return image


def main():
    from PIL import Image
    for name, (title, subtitle, *model) in CARDS.items():
        content = Image.open(model[0]).convert("RGB") if len(model) == 1 else picture(*model)
        path = PACK_ROOT / "workflows" / f"{name}.jpg"
        card(title, subtitle, content).save(path, quality=85)
        print(f"wrote {path.relative_to(PACK_ROOT)}")


if __name__ == "__main__":
    main()
