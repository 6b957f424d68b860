"""FIS Compare's picture: reference | accelerated | amplified difference, frame by frame, each panel labelled on
the frame (the difference with its gain and the frame's PSNR, or that it has none), as an IMAGE batch for Save
Animated WEBP."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

#: Pixels between panels (even, so that an even frame width gives an even video width for H.264).
GAP = 8
#: How much a label's box darkens the picture under it.
BOX_SHADE = 0.6


def label_mask(text: str, size: int) -> torch.Tensor:
    """White-on-black text with a margin, as coverage [h, w] in [0, 1]."""
    font = ImageFont.load_default(size=size)
    _, _, right, bottom = font.getbbox(text)
    pad = max(2, size // 4)
    image = Image.new("L", (right + 2 * pad, bottom + 2 * pad), 0)
    ImageDraw.Draw(image).text((pad, pad), text, fill=255, font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)


def stamp(panel: torch.Tensor, mask: torch.Tensor):
    """Draw a label into the top-left corner of ``panel`` [H, W, 3] in place: a dark box, white text."""
    h, w = min(mask.shape[0], panel.shape[0]), min(mask.shape[1], panel.shape[1])
    corner, coverage = panel[:h, :w], mask[:h, :w, None].to(panel.device)
    corner.mul_(1 - BOX_SHADE)
    corner.add_((1 - corner) * coverage)


def side_by_side(reference: torch.Tensor, accelerated: torch.Tensor, gain: float, frame_psnr: list[float]) -> torch.Tensor:
    """[F, H, 3 W + 2 GAP, 3]: the two clips and |accelerated - reference| x ``gain`` (clamped to 1), labelled."""
    n, h, w, c = reference.shape
    out = torch.zeros(n, h, 3 * w + 2 * GAP, c, dtype=torch.float32, device=accelerated.device)
    panels = [out[:, :, i * (w + GAP):i * (w + GAP) + w] for i in range(3)]
    panels[0].copy_(reference)
    panels[1].copy_(accelerated)
    panels[2].copy_(accelerated).sub_(panels[0]).abs_().mul_(gain).clamp_(0, 1)
    size = max(10, h // 24)
    titles = (label_mask("reference", size), label_mask("accelerated", size))
    for f in range(n):
        for panel, title in zip(panels, titles):
            stamp(panel[f], title)
        psnr = f"{frame_psnr[f]:.1f} dB" if math.isfinite(frame_psnr[f]) else "NaN or infinite pixels"
        stamp(panels[2][f], label_mask(f"|difference| x{gain:g}, {psnr}", size))
    return out
