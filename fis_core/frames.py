"""Gather a frame subset out of a token sequence, and restore the full sequence after a sparse block.

A :class:`FramePlan` holds, on the device, every index a sparse block needs; it is built once per
(layout, subset) and reused by every block and step. Gathers and scatters are single indexed copies
along the token axis; the interpolation of skipped frames is one batched ``lerp``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class FramePlan:
    """Device-side indices for computing ``computed`` frames of ``layout`` and restoring the rest."""

    layout: FrameLayout
    computed: tuple[int, ...]
    mode: str
    token_index: torch.Tensor      # positions of all computed tokens (prefix, chosen frames, suffix)
    computed_index: torch.Tensor   # the computed frames
    skipped_index: torch.Tensor    # the frames left out
    lo_index: torch.Tensor         # per skipped frame: source positions within the computed frames
    hi_index: torch.Tensor
    weight: torch.Tensor           # [1, S, 1, 1] float64 weight of the hi source

    @property
    def num_tokens(self) -> int:
        return self.token_index.numel()

    def shifted(self, extra_prefix: int) -> "FramePlan":
        """The same subset behind ``extra_prefix`` more always-computed tokens (e.g. text before the image)."""
        index = torch.cat([torch.arange(extra_prefix, device=self.token_index.device), self.token_index + extra_prefix])
        return replace(self, layout=self.layout.with_prefix(extra_prefix), token_index=index)

    def kept_before(self, position: int) -> int:
        """How many computed tokens lie before ``position`` of the full sequence (host-side, no sync)."""
        layout, T = self.layout, self.layout.tokens_per_frame
        count = min(max(position, 0), layout.prefix)
        count += sum(min(max(position - layout.prefix - f * T, 0), T) for f in self.computed)
        suffix_start = layout.prefix + layout.frames * T
        return count + min(max(position - suffix_start, 0), layout.suffix)


def build_plan(layout: FrameLayout, computed: tuple[int, ...], mode: str, device: torch.device) -> FramePlan:
    """Build the indices for one (layout, computed frames, interpolation) on ``device``."""
    if not computed or min(computed) < 0 or max(computed) >= layout.frames or list(computed) != sorted(set(computed)):
        raise ValueError(f"computed frames {computed} must be sorted, unique and within 0-{layout.frames - 1}")
    skipped, lo, hi, weight = interpolation_sources(computed, layout.frames, mode)
    T = layout.tokens_per_frame
    frame_tokens = (torch.tensor(computed).view(-1, 1) * T + torch.arange(T).view(1, -1)).flatten() + layout.prefix
    suffix_start = layout.prefix + layout.frames * T
    token_index = torch.cat([torch.arange(layout.prefix), frame_tokens, torch.arange(suffix_start, suffix_start + layout.suffix)])

    def on_device(values, dtype=torch.long):
        return torch.tensor(values, dtype=dtype).to(device)

    return FramePlan(layout, tuple(computed), mode,
                     token_index=token_index.to(device),
                     computed_index=on_device(list(computed)),
                     skipped_index=on_device(skipped),
                     lo_index=on_device(lo),
                     hi_index=on_device(hi),
                     weight=on_device(weight, torch.float64).view(1, -1, 1, 1))


def gather(x: torch.Tensor, plan: FramePlan, dim: int = 1) -> torch.Tensor:
    """The computed tokens of ``x`` (tokens along ``dim``), as one contiguous tensor."""
    return x.index_select(dim, plan.token_index)


def _frames_view(x: torch.Tensor, layout: FrameLayout, frames: int) -> torch.Tensor:
    """[B, L, C] -> [B, frames, T, C] view of the frame tokens (``frames`` counted from ``layout.prefix``)."""
    T = layout.tokens_per_frame
    return x[:, layout.prefix:layout.prefix + frames * T].unflatten(1, (frames, T))


def restore(x: torch.Tensor, y_sub: torch.Tensor, plan: FramePlan, x_sub: torch.Tensor | None = None) -> torch.Tensor:
    """The full output of a sparse block.

    ``x`` [B, L, C] is the block's input, ``y_sub`` its output on the gathered tokens. Computed tokens
    take their output; a skipped frame keeps its input plus the block's update (output minus input)
    interpolated from the computed frames (``none``: the input alone). ``x_sub`` is the gathered input
    if the block left it intact; otherwise it is gathered again.
    """
    layout, k = plan.layout, len(plan.computed)
    out = torch.empty_like(x)
    out.index_copy_(1, plan.token_index, y_sub)
    if plan.skipped_index.numel() == 0:
        return out
    x_frames = _frames_view(x, layout, layout.frames)
    out_frames = _frames_view(out, layout, layout.frames)
    skipped_in = x_frames.index_select(1, plan.skipped_index)
    if plan.mode != "none":
        y_computed = _frames_view(y_sub, layout, k)
        x_computed = _frames_view(x_sub, layout, k) if x_sub is not None else x_frames.index_select(1, plan.computed_index)
        delta = y_computed - x_computed
        lo = delta.index_select(1, plan.lo_index)
        if plan.mode == "linear":
            lo = lo.lerp_(delta.index_select(1, plan.hi_index), plan.weight.to(delta.dtype))
        skipped_in += lo
    out_frames.index_copy_(1, plan.skipped_index, skipped_in)
    return out
