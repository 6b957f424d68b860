"""Render the FIS schedule picture as PNG (the README's and the FIS help page's web/docs/schedule.png by default).

    python scripts/render_schedule.py [--blocks 40 --frames 21 --sparse-blocks auto --groups 2 ...] [--out file.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT))
from fis_core import FisSchedule, parse_block_list, parse_frame_list  # noqa: E402
from fis_core.schedule_image import render_png  # noqa: E402

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
