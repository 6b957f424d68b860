"""The schedule picture: a grid of blocks x latent frames, each cell computed, interpolated, anchor or dense,
with the estimated compute saved and speed-up under it; rendered as PNG (Pillow, as ComfyUI ships it).

The node's schedule view (web/fis_schedule.js, web/fis_view.js) draws the same grid, colours and text.
"""
from __future__ import annotations

import math

from .cost import estimated_speedup
from .schedule import FisSchedule

CELL_KINDS = ("computed", "interpolated", "anchor", "dense")
COLORS = {"computed": "#3ba55d", "interpolated": "#30343e", "anchor": "#e8a33d", "dense": "#5f7ea8"}
LEGEND = {"computed": "computed", "interpolated": "interpolated", "anchor": "anchor", "dense": "dense block"}
BACKGROUND = "#202225"
TEXT = "#d8dadf"
MUTED = "#8d93a0"


def schedule_cells(schedule: FisSchedule, num_blocks: int, num_frames: int) -> list[list[str]]:
    """One row per block, one cell per latent frame: "computed", "interpolated", "anchor" (computed by every
    sparse block) or "dense" (the block computes all frames)."""
    schedule = schedule.fit_to(num_frames)
    anchors = {a % num_frames for a in schedule.anchors if -num_frames <= a < num_frames}
    rows = []
    for block in range(num_blocks):
        frames = schedule.frames_for_block(block, num_frames)
        if frames is None:
            rows.append(["dense"] * num_frames)
        else:
            rows.append(["anchor" if f in anchors else "computed" if f in frames else "interpolated"
                         for f in range(num_frames)])
    return rows


def _percent(x: float) -> str:
    return f"{math.floor(x * 100 + 0.5)}%"


def _times(x: float) -> str:
    return f"{math.floor(x * 100 + 0.5) / 100:.2f}x"


def estimate_lines(schedule: FisSchedule, num_blocks: int, num_frames: int) -> list[str]:
    """The two lines under the grid: the share of block compute saved and the cost model's speed-up."""
    fitted = schedule.fit_to(num_frames)
    saved = 1.0 - fitted.computed_fraction(num_blocks, num_frames)
    fast720 = estimated_speedup(fitted, num_blocks, num_frames, "720p")
    fast480 = estimated_speedup(fitted, num_blocks, num_frames, "480p")
    return [f"Estimate: {_percent(saved)} of the block compute saved",
            f"blocks {_times(fast720)} faster at 720p, {_times(fast480)} at 480p (H100 envelope)"]


def render_png(path, schedule: FisSchedule, num_blocks: int, num_frames: int, title: str = "",
               cell: tuple[int, int] = (18, 12), font_size: int = 13):
    """Write the schedule picture to ``path``: title, frame numbers, block numbers, the grid, the legend
    and :func:`estimate_lines`. A cell is ``cell`` (width, height) pixels, 1 of them a gap.
    Returns the grid's top-left pixel and the cell size."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    line = font_size + 6
    cw, ch = cell
    rows = schedule_cells(schedule, num_blocks, num_frames)
    lines = estimate_lines(schedule, num_blocks, num_frames)
    margin, label_w = 10, 6 + int(font.getlength(str(num_blocks - 1)))
    grid_x, grid_y = margin + label_w + 6, margin + (line if title else 0) + line
    legend_w = sum(int(font.getlength(LEGEND[k])) + 34 for k in CELL_KINDS)
    width = max(grid_x + cw * num_frames, legend_w, *(int(font.getlength(t)) for t in (title, *lines))) + 2 * margin
    height = grid_y + ch * num_blocks + line * (1 + len(lines)) + margin + 6
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((margin, margin), title, fill=TEXT, font=font)
    step = 1 if num_frames <= 12 else 5
    for f in range(0, num_frames, step):
        draw.text((grid_x + f * cw + cw / 2, grid_y - 4), str(f), fill=MUTED, font=font, anchor="ms")
    block_step = 1 if num_blocks <= 12 else 5
    for b, row in enumerate(rows):
        if b % block_step == 0 or b == num_blocks - 1:
            draw.text((grid_x - 6, grid_y + b * ch + ch / 2), str(b), fill=MUTED, font=font, anchor="rm")
        for f, kind in enumerate(row):
            x, y = grid_x + f * cw, grid_y + b * ch
            draw.rectangle((x, y, x + cw - 2, y + ch - 2), fill=COLORS[kind])
    y = grid_y + ch * num_blocks + 8
    x = margin
    for kind in CELL_KINDS:
        draw.rectangle((x, y + 2, x + 14, y + 14), fill=COLORS[kind])
        draw.text((x + 20, y + 8), LEGEND[kind], fill=TEXT, font=font, anchor="lm")
        x += int(font.getlength(LEGEND[kind])) + 34
    for i, text in enumerate(lines):
        draw.text((margin, y + line * (i + 1)), text, fill=TEXT, font=font)
    image.save(path, format="PNG")
    return {"grid": (grid_x, grid_y), "cell": cell}
