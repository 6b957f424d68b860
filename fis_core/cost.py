"""A cost model of FIS: the time of a model forward estimated from the measured cost of one block.

The table is the measured median time of one Wan-14B block (dim 5120, 40 heads, bf16, 512 text tokens)
on an NVIDIA H100 80GB, computing all 21 latent frames (81 video frames) or a subset of them
(ComfyUI 0.33, torch 2.11, 2026-11-22). Attention dominates, so a block on half the frames costs
about a third. Other frame counts and other models are scaled by the share of frames computed:
an estimate, not a measurement.
"""
from __future__ import annotations

from .schedule import FisSchedule

ENVELOPE_FRAMES = 21
#: milliseconds of one Wan-14B block on the H100, by resolution and number of latent frames computed
BLOCK_MS = {
    "720p": {21: 404.3, 11: 131.37, 7: 62.76, 5: 38.08},
    "480p": {21: 96.36, 11: 35.04, 7: 18.17, 5: 11.78},
}


def block_ms(share_of_frames: float, resolution: str = "720p") -> float:
    """Estimated time of one block computing ``share_of_frames`` (0-1] of the frames, interpolated
    piecewise-linearly between the measured points (and zero frames at zero cost)."""
    table = BLOCK_MS[resolution]
    frames = share_of_frames * ENVELOPE_FRAMES
    points = [(0, 0.0)] + sorted(table.items())
    for (f0, ms0), (f1, ms1) in zip(points, points[1:]):
        if frames <= f1:
            return ms0 + (ms1 - ms0) * (frames - f0) / (f1 - f0)
    return table[ENVELOPE_FRAMES] * frames / ENVELOPE_FRAMES


def forward_ms(schedule: FisSchedule, num_blocks: int, num_frames: int, resolution: str = "720p") -> float:
    """Estimated time of the transformer blocks of one forward under ``schedule``."""
    schedule = schedule.fit_to(num_frames)
    total = 0.0
    for block in range(num_blocks):
        frames = schedule.frames_for_block(block, num_frames)
        total += block_ms(1.0 if frames is None else len(frames) / num_frames, resolution)
    return total


def estimated_speedup(schedule: FisSchedule, num_blocks: int, num_frames: int = ENVELOPE_FRAMES,
                      resolution: str = "720p") -> float:
    """Dense block time over FIS block time for ``schedule`` (the ideal: FIS's own work counted as free)."""
    dense = block_ms(1.0, resolution) * num_blocks
    return dense / forward_ms(schedule, num_blocks, num_frames, resolution)
