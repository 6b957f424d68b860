"""Gather a frame subset out of a token sequence, and restore the full sequence after a sparse block.

A :class:`FramePlan` holds, on the device, what a sparse block needs beyond its token positions; it is
built once per (frames, subset, interpolation) and reused by every block and step. The gather is one
indexed copy; the restore is one kernel that writes every frame once (see :mod:`.restore_kernel`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .correction import CorrectionForm, apply_maps, fit_maps
from .layout import FrameLayout
from .restore_kernel import restore_frames
from .schedule import INTERPOLATIONS, check_choice


def interpolation_sources(computed: tuple[int, ...], num_frames: int, mode: str) -> tuple[list[int], list[int], list[int], list[float]]:
    """For each frame not in ``computed``: the positions (within ``computed``) of the two frames it is
    interpolated from and the weight of the second.

    ``linear`` (and ``corrected``, which starts from it) takes the nearest computed frame on each side, weighted
    by distance; outside the first or last computed frame it holds the nearest one. ``nearest`` takes the closest computed frame
    (the earlier one on a tie). Returns ``(skipped, lo, hi, weight)``.
    """
    check_choice("interpolation", mode, INTERPOLATIONS)
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


def fit_sources(computed: tuple[int, ...]) -> tuple[list[list[int]], list[float]]:
    """The frames the corrected interpolation fits its map on: each computed frame with computed frames on
    both sides, as ``[its position, the low neighbour's, the high neighbour's]`` among ``computed``, and the
    high neighbour's weight (by distance)."""
    rows = [[i, i - 1, i + 1] for i in range(1, len(computed) - 1)]
    weights = [(computed[i] - computed[i - 1]) / (computed[i + 1] - computed[i - 1]) for i, _, _ in rows]
    return rows, weights


@dataclass(frozen=True)
class FramePlan:
    """Device-side data for computing the ``computed`` frames of ``frames`` and restoring the rest.

    It depends on the frames alone, not on where they lie in a token sequence (see :func:`token_index`),
    so one plan serves every block of a group, whatever the block puts in front of the frames.
    """

    frames: int
    computed: tuple[int, ...]
    mode: str
    frame_index: torch.Tensor   # the computed frames
    table: torch.Tensor         # [F, 5] int32: per frame its row in the block output, its two sources
    weight: torch.Tensor        # [F] float64: weight of the high source
    fit: torch.Tensor | None = None          # corrected: [m, 3] positions of the fit frames and their neighbours
    fit_weight: torch.Tensor | None = None   # [m] their high neighbour's weight
    corrected: tuple[tuple[int, int, int, float], ...] = ()  # skipped frames to correct: (frame, low, high, weight)
    form: CorrectionForm = CorrectionForm()  # how the correction's maps are fitted

    @property
    def corrects(self) -> bool:
        """Whether the restore adds the fitted correction (``corrected``, with frames to fit on)."""
        return self.fit is not None


def build_plan(frames: int, computed: tuple[int, ...], mode: str, device,
               form: CorrectionForm = CorrectionForm()) -> FramePlan:
    """Build the restore tables for ``computed`` of ``frames`` with interpolation ``mode`` (``corrected``: fitted
    in ``form``) on ``device``."""
    if not computed or min(computed) < 0 or max(computed) >= frames or list(computed) != sorted(set(computed)):
        raise ValueError(f"computed frames {computed} must be sorted, unique and within 0-{frames - 1}")
    table = [[-1, -1, -1, -1, -1] for _ in range(frames)]
    weights = [0.0] * frames
    for position, frame in enumerate(computed):
        table[frame][0] = position
    for frame, lo, hi, weight in zip(*interpolation_sources(tuple(computed), frames, mode)):
        if mode != "none":
            table[frame][1:] = [computed[lo], lo, computed[hi], hi]
            weights[frame] = weight
    plan = FramePlan(frames, tuple(computed), mode, frame_index=torch.tensor(computed).to(device),
                     table=torch.tensor(table, dtype=torch.int32).to(device),
                     weight=torch.tensor(weights, dtype=torch.float64).to(device))
    fit, fit_weight = fit_sources(tuple(computed))
    skipped = [f for f in range(frames) if table[f][0] < 0 and table[f][2] >= 0]
    if mode != "corrected" or not fit or not skipped:
        return plan
    return replace(plan, fit=torch.tensor(fit).to(device), fit_weight=torch.tensor(fit_weight).to(device),
                   corrected=tuple((f, table[f][1], table[f][3], weights[f]) for f in skipped), form=form)


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


def restore(x: torch.Tensor, y_sub: torch.Tensor, layout: FrameLayout, plan: FramePlan, carry=None) -> torch.Tensor:
    """The full output of a sparse block.

    ``x`` [B, L, C] is the block's input (untouched), ``y_sub`` its output on the gathered tokens of
    ``layout``. Computed tokens take their output; a skipped frame keeps its input plus the block's
    update (output minus input) interpolated from the computed frames (``none``: its input alone), plus, with
    ``corrected``, the fitted correction of :mod:`.correction` (``carry``: its sums over earlier calls).
    """
    k, T, batch = len(plan.computed), layout.tokens_per_frame, x.shape[0]
    x_frames = x[:, layout.frame_tokens].reshape(batch, layout.frames, -1)
    y_frames = y_sub[:, layout.prefix:layout.prefix + k * T].reshape(batch, k, -1)
    restored = restore_frames(x_frames, y_frames, plan.table, plan.weight)
    if plan.corrects:
        x4, shape = x_frames.view(batch, layout.frames, T, -1), (batch, -1, T, x.shape[-1])
        maps = fit_maps(x4, y_frames.view(shape), plan.fit, plan.fit_weight, plan.frame_index, carry, plan.form)
        apply_maps(restored.view(shape), x4, maps, plan)
    restored = restored.view(batch, layout.frames * T, *x.shape[2:])
    if layout.prefix == 0 and layout.suffix == 0:
        return restored
    return torch.cat([y_sub[:, :layout.prefix], restored, y_sub[:, layout.prefix + k * T:]], dim=1)
