"""The schedule picture: a grid of blocks x latent frames, each cell computed, interpolated, anchor or dense,
with the estimated compute saved and speed-up under it.

The node's schedule view (web/fis_view.js) draws what the server computes here (``GET /fis/schedule``), and
``scripts/render_schedule.py`` renders the same grid, colours and text as PNG.
"""
from __future__ import annotations

import math

from .cost import estimated_speedup
from .schedule import FisSchedule

CELL_KINDS = ("computed", "interpolated", "anchor", "dense")
COLORS = {"computed": "#3ba55d", "interpolated": "#30343e", "anchor": "#e8a33d", "dense": "#5f7ea8"}
LEGEND = {"computed": "computed", "interpolated": "interpolated", "anchor": "anchor", "dense": "dense block"}


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


def dense_step_lines(dense_first_step: bool, dense_final_step: bool, per_step: float) -> list[str]:
    """Lines for a preset's dense steps (faithful: the first and the final one): the estimate is for the others, so a
    whole run's speed-up depends on its steps (each dense step at 1x, the others at ``per_step``, the 720p estimate)."""
    steps = [name for name, dense in (("first", dense_first_step), ("final", dense_final_step)) if dense]
    if not steps:
        return []

    def run(n: int) -> str:
        return _times(n / (len(steps) + (n - len(steps)) / per_step))
    return [f"the {' and '.join(steps)} sampling step{'s run' if len(steps) > 1 else ' runs'} dense; the estimate is "
            f"for the others", f"a whole run at 720p: about {run(4)} in 4 steps, {run(8)} in 8, {run(20)} in 20"]
