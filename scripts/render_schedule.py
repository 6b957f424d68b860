"""Render the FIS schedule picture as PNG (the README's and the FIS help page's web/docs/schedule.png by default), with
Pillow (as ComfyUI ships it): the grid, colours and text of the core's picture module, as the node's schedule view
draws them.

    python scripts/render_schedule.py [--blocks 40 --frames 21 --sparse-blocks auto --groups 2 ...] [--out file.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from host_path import PACK_ROOT, import_pack

import_pack()
from comfyui_fis.fis_core import FisSchedule, parse_block_list, parse_frame_list  # noqa: E402
from comfyui_fis.fis_core.schedule_image import CELL_KINDS, COLORS, LEGEND, estimate_lines, schedule_cells  # noqa: E402

BACKGROUND = "#202225"
TEXT = "#d8dadf"
MUTED = "#8d93a0"

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


README_PICTURE = dict(blocks=10, frames=9, sparse_blocks="1-8", groups=2, pattern="interleave", anchor_frames="0")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in README_PICTURE.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--out", type=Path, default=PACK_ROOT / "web" / "docs" / "schedule.png")
    args = parser.parse_args(argv)
    spec = args.sparse_blocks.strip().lower()
    blocks = tuple(range(1, args.blocks - 1)) if spec == "auto" else parse_block_list(spec, args.blocks)
    schedule = FisSchedule(blocks, args.groups, args.pattern, parse_frame_list(args.anchor_frames))
    title = (f"{args.blocks} blocks (rows) x {args.frames} latent frames (columns): sparse_blocks={args.sparse_blocks}, "
             f"groups={args.groups}, {args.pattern}, anchor_frames={args.anchor_frames or 'none'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cell = (30, 18) if args.frames <= 12 else (18, 12)
    geometry = render_png(args.out, schedule, args.blocks, args.frames, title=title, cell=cell)
    print(f"wrote {args.out}")
    return geometry


if __name__ == "__main__":
    main()
