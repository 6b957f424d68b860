"""Gather a frame subset out of a token sequence, and restore the full sequence after a sparse block.

A :class:`FramePlan` holds, on the device, everything a sparse block needs; it is built once per
(layout, subset, dtype) and reused by every block and step. The gather is one indexed copy. The
restore is two small matrix products along the frame axis, written straight into the output:

    out_frames = frame_mix @ x_frames + update_mix @ y_frames

``update_mix`` copies a computed frame's output and spreads the computed updates over the skipped
frames; ``frame_mix`` gives a skipped frame its own input minus the inputs of the frames it borrows
from, so that it gets ``x_s + sum_j w_sj (y_j - x_j)``. That reads the input once, the block's output
once, and writes the result once, with no temporaries and in fp32 accumulation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .layout import FrameLayout
from .schedule import INTERPOLATIONS


def interpolation_sources(computed: tuple[int, ...], num_frames: int, mode: str) -> tuple[list[int], list[int], list[int], list[float]]:
    """For each frame not in ``computed``: the positions (within ``computed``) of the two frames it is
    interpolated from and the weight of the second.

    ``linear`` takes the nearest computed frame on each side, weighted by distance; outside the first
    or last computed frame it holds the nearest one. ``nearest`` takes the closest computed frame
    (the earlier one on a tie). Returns ``(skipped, lo, hi, weight)``.
    """
    if mode not in INTERPOLATIONS:
        raise ValueError(f"interpolation: '{mode}' is unknown; choose one of {', '.join(INTERPOLATIONS)}")
    computed_set = set(computed)
    skipped = [f for f in range(num_frames) if f not in computed_set]
    lo, hi, weight = [], [], []
    for f in skipped:
        before = max((i for i, c in enumerate(computed) if c < f), default=None)
        after = min((i for i, c in enumerate(computed) if c > f), default=None)
        if before is None or after is None:
            lo.append(after if before is None else before)
            hi.append(lo[-1])
            weight.append(0.0)
        elif mode == "nearest":
            near = before if f - computed[before] <= computed[after] - f else after
            lo.append(near)
            hi.append(near)
            weight.append(0.0)
        else:
            lo.append(before)
            hi.append(after)
            weight.append((f - computed[before]) / (computed[after] - computed[before]))
    return skipped, lo, hi, weight


def mixing_matrices(computed: tuple[int, ...], num_frames: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frame_mix [F, F], update_mix [F, k])`` in float64 such that the restored frames are
    ``frame_mix @ x_frames + update_mix @ y_computed`` (see the module docstring)."""
    skipped, lo, hi, weight = interpolation_sources(computed, num_frames, mode)
    frame_mix = torch.zeros(num_frames, num_frames, dtype=torch.float64)
    update_mix = torch.zeros(num_frames, len(computed), dtype=torch.float64)
    for position, frame in enumerate(computed):
        update_mix[frame, position] = 1.0
    for frame, low, high, w in zip(skipped, lo, hi, weight):
        frame_mix[frame, frame] = 1.0
        if mode == "none":
            continue
        for position, share in ((low, 1.0 - w), (high, w)):
            frame_mix[frame, computed[position]] -= share
            update_mix[frame, position] += share
    return frame_mix, update_mix


def _aligned(matrix: torch.Tensor, device, dtype) -> torch.Tensor:
    """``matrix`` on ``device`` with its rows padded to a multiple of 8 elements (16-byte aligned rows
    let the matrix units take it), returned as a view of the original width."""
    rows, cols = matrix.shape
    padded = torch.zeros(rows, -(-cols // 8) * 8, dtype=dtype)
    padded[:, :cols] = matrix
    return padded.to(device)[:, :cols]


@dataclass(frozen=True)
class FramePlan:
    """Device-side data for computing the ``computed`` frames of ``frames`` and restoring the rest.

    It depends on the frames alone, not on where they lie in a token sequence (see :func:`token_index`),
    so one plan serves every block of a group, HunyuanVideo's double and single blocks alike.
    """

    frames: int
    computed: tuple[int, ...]
    mode: str
    frame_index: torch.Tensor   # the computed frames
    frame_mix: torch.Tensor     # [F, F], see mixing_matrices
    update_mix: torch.Tensor    # [F, k]


def build_plan(frames: int, computed: tuple[int, ...], mode: str, device, dtype=torch.float32) -> FramePlan:
    """Build the mixing matrices for ``computed`` of ``frames`` with interpolation ``mode`` on ``device``."""
    if not computed or min(computed) < 0 or max(computed) >= frames or list(computed) != sorted(set(computed)):
        raise ValueError(f"computed frames {computed} must be sorted, unique and within 0-{frames - 1}")
    frame_mix, update_mix = mixing_matrices(tuple(computed), frames, mode)
    return FramePlan(frames, tuple(computed), mode, frame_index=torch.tensor(computed).to(device),
                     frame_mix=_aligned(frame_mix, device, dtype), update_mix=_aligned(update_mix, device, dtype))


def token_index(layout: FrameLayout, plan: FramePlan) -> torch.Tensor:
    """Positions in a ``layout`` sequence of the tokens a sparse block computes: the prefix, the chosen
    frames, the suffix (built on the plan's device, with no host sync)."""
    device, T = plan.frame_index.device, layout.tokens_per_frame
    frame_tokens = (plan.frame_index.view(-1, 1) * T + torch.arange(T, device=device)).flatten() + layout.prefix
    suffix_start = layout.prefix + layout.frames * T
    return torch.cat([torch.arange(layout.prefix, device=device), frame_tokens,
                      torch.arange(suffix_start, suffix_start + layout.suffix, device=device)])


def kept_before(layout: FrameLayout, computed: tuple[int, ...], position: int) -> int:
    """How many computed tokens lie before ``position`` of the full sequence (host-side, no sync)."""
    T = layout.tokens_per_frame
    count = min(max(position, 0), layout.prefix)
    count += sum(min(max(position - layout.prefix - f * T, 0), T) for f in computed)
    suffix_start = layout.prefix + layout.frames * T
    return count + min(max(position - suffix_start, 0), layout.suffix)


def gather(x: torch.Tensor, index: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The tokens of ``x`` at ``index`` (tokens along ``dim``), as one contiguous tensor."""
    return x.index_select(dim, index)


def restore(x: torch.Tensor, y_sub: torch.Tensor, layout: FrameLayout, plan: FramePlan) -> torch.Tensor:
    """The full output of a sparse block.

    ``x`` [B, L, C] is the block's input (untouched), ``y_sub`` its output on the gathered tokens of
    ``layout``. Computed tokens take their output; a skipped frame keeps its input plus the block's
    update (output minus input) interpolated from the computed frames (``none``: its input alone).
    """
    k, T, batch = len(plan.computed), layout.tokens_per_frame, x.shape[0]
    x_frames = x[:, layout.frame_tokens].reshape(batch, layout.frames, -1)
    y_frames = y_sub[:, layout.prefix:layout.prefix + k * T].reshape(batch, k, -1)
    restored = torch.matmul(plan.frame_mix, x_frames)
    restored.baddbmm_(plan.update_mix.expand(batch, -1, -1), y_frames)
    restored = restored.view(batch, layout.frames * T, *x.shape[2:])
    if layout.prefix == 0 and layout.suffix == 0:
        return restored
    return torch.cat([y_sub[:, :layout.prefix], restored, y_sub[:, layout.prefix + k * T:]], dim=1)
