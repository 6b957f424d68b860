"""Corrected interpolation: a skipped frame's interpolated update, corrected by a linear map fitted on the computed frames.

A block's update ``u = y - x`` depends on each frame's own input, which the frame's neighbours do not share, so
the update interpolated from them misses part of it. The corrected restore adds ``(x_f - interp(x)_f) A`` to a
skipped frame f: the part of its input its neighbours do not predict, mapped by A. A is fitted per block, per
model call and per batch entry by ridge least squares on the computed frames, where both input and update are
known: every computed frame whose computed neighbours lie on both sides gives ``dx = x_c - interp(x)_c`` and
``du = u_c - interp(u)_c`` over its tokens, and ``A = argmin |du - dx A|^2 + lambda |A|^2``.

How cheap the fit is, is a :class:`CorrectionForm`. By default A is block-diagonal, one map per 128 channels (a
14B video model's 5120 channels give 40 maps of 128 x 128, the size of a head): the full C x C map would cost
10% of a sparse block's FLOPs there (26% of its time, measured in TF32), these 0.1% (about 3% of its time) and
keep most of its fidelity (``quality.correction_forms``). The fit reads at most 4096 tokens per batch entry (an
even subsample of the fit frames' tokens: 32 samples per unknown of a 128-channel map).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from . import correction_kernel

if TYPE_CHECKING:
    from .frames import FramePlan

#: Ridge strength relative to the mean diagonal of ``dx^T dx``.
RIDGE = 0.1
#: Tokens per batch entry the apply handles at once, at most: one large frame at a time, several small ones (fewer
#: kernel launches where a frame is small, temporaries of about one 720p frame at most).
APPLY_TOKENS = 4096


@dataclass(frozen=True)
class CorrectionForm:
    """How the correction's maps are fitted: the cheap form, chosen by the study of ``quality.correction_forms``
    (README, "Quality"). The defaults are the shipped form."""

    #: channels per block of the block-diagonal map (all of them where they do not divide evenly)
    map_channels: int = 128
    #: tokens per batch entry the fit reads, at most (an even subsample; 32 per unknown of a 128-channel map)
    fit_tokens: int = 4096
    #: the dtype of the fit's Gram and cross product operands (the residuals before them, the sums and the solve
    #: after them are fp32): bfloat16 runs the products on a GPU's bf16 tensor cores (fp32 sums); None: bfloat16
    #: where the fit runs fused (:mod:`.correction_kernel`), float32 on the torch path (the CPU)
    fit_dtype: torch.dtype | None = None

    def __post_init__(self):
        if not all(isinstance(v, int) and v >= 1 for v in (self.map_channels, self.fit_tokens)):
            raise ValueError(f"correction form: map_channels and fit_tokens must be integers of at least 1; got {self}")
        if self.fit_dtype not in (None, torch.float32, torch.bfloat16):
            raise ValueError(f"correction form: fit_dtype must be None, torch.float32 or torch.bfloat16; got {self.fit_dtype}")

    def channels_per_map(self, channels: int) -> int:
        """The channels of one map for a block of ``channels`` channels."""
        return self.map_channels if channels % self.map_channels == 0 else channels

    def token_stride(self, fit_frames: int, tokens_per_frame: int) -> int:
        """The fit reads every this-many-th token of each fit frame: at most ``fit_tokens`` per batch entry."""
        return max(1, -(-fit_frames * tokens_per_frame // self.fit_tokens))

    def products_dtype(self, fused: bool) -> torch.dtype:
        """The products' operand dtype on the fused path (``fused``) or the torch path."""
        return self.fit_dtype or (torch.bfloat16 if fused else torch.float32)


class FitSums:
    """A block's Gram and cross sums over the model calls of one sampling run, by a key the caller chooses (the
    batch's cond/uncond layout): each call fits on its own frames and on those of the block's earlier steps,
    which holds the map steadier (+0.6-0.8 dB on the model trained here). ``clear`` starts a run afresh."""

    def __init__(self):
        self._sums: dict = {}

    def add(self, key, gram: torch.Tensor, cross: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sums so far under ``key`` plus these (kept for the next call); other shapes start afresh."""
        earlier = self._sums.get(key)
        if earlier is not None and earlier[0].shape == gram.shape:
            gram, cross = gram + earlier[0], cross + earlier[1]
        self._sums[key] = (gram, cross)
        return gram, cross

    def clear(self):
        self._sums.clear()


def _residual(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``center - lerp(low, high, weight)`` of ``rows`` [B, m, 3, ...] (center, low, high along axis 2)."""
    weight = weight.view(1, -1, *([1] * (rows.dim() - 3))).to(rows.dtype)
    return rows[:, :, 0] - torch.lerp(rows[:, :, 1], rows[:, :, 2], weight)


def _per_map(rows: torch.Tensor, c: int, dtype: torch.dtype) -> torch.Tensor:
    """Tokens [B, ..., C] as [B, n, N, c] in ``dtype``: the n maps' channel blocks, each over all N tokens (contiguous)."""
    channels = rows.shape[-1]
    blocks = rows.reshape(rows.shape[0], -1, channels // c, c).transpose(1, 2)
    return torch.empty(blocks.shape, dtype=dtype, device=rows.device).copy_(blocks)   # one copy, cast included


def fit_rows(fit: torch.Tensor, frame_index: torch.Tensor, tokens: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows the torch path's fit reads, as token positions of the block's input frames and of its output on the
    computed frames (``fit``, ``frame_index`` as :func:`fit_maps` takes them; ``tokens`` per frame, every
    ``stride``-th of them). They depend on shapes alone: a caller that runs many blocks of one shape finds them once
    and hands them to :func:`fit_maps`."""
    m = fit.shape[0]
    token_index = torch.arange(0, tokens, stride, device=fit.device)
    x_rows = (frame_index[fit].view(m, 3, 1) * tokens + token_index).flatten()
    y_rows = (fit.view(m, 3, 1) * tokens + token_index).flatten()
    return x_rows, y_rows


def _fit_products(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, fit_weight: torch.Tensor,
                  frame_index: torch.Tensor, stride: int, c: int, dtype: torch.dtype,
                  rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch path of :func:`.correction_kernel.fit_products`: only the rows the fit reads (``rows``, else
    :func:`fit_rows` found here) are gathered (one indexed copy each of x and y); the residuals are fp32, the
    products' operands ``dtype``."""
    batch, frames, tokens, channels = x.shape
    m = fit.shape[0]
    x_rows, y_rows = rows if rows is not None else fit_rows(fit, frame_index, tokens, stride)
    shape = (batch, m, 3, x_rows.shape[0] // (3 * m), channels)
    xs = x.reshape(batch, -1, channels).index_select(1, x_rows).view(shape).float()
    ys = y.reshape(batch, -1, channels).index_select(1, y_rows).view(shape).float()
    dx = _residual(xs, fit_weight)
    du = _residual(ys, fit_weight) - dx          # the residual of u = y - x
    dx, du = _per_map(dx, c, dtype), _per_map(du, c, dtype)
    return (dx.mT @ dx).float(), (dx.mT @ du).float()


def fit_maps(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, fit_weight: torch.Tensor,
             frame_index: torch.Tensor, carry: tuple[FitSums, object] | None = None,
             form: CorrectionForm = CorrectionForm(), rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The maps A [B, n, c, c] (fp32; n maps of c channels) of one sparse block.

    ``x`` [B, F, T, C] are the block's input frames, ``y`` [B, k, T, C] its output on the computed frames
    (``frame_index`` [k] says which). ``fit`` [m, 3] holds per fit frame its position among the computed frames
    and those of its low and high neighbours, ``fit_weight`` [m] the high neighbour's weight. The Gram and cross
    products and the solve run fused where :func:`.correction_kernel.fused` says (one kernel each), else in torch
    (``rows``: the rows it reads, :func:`fit_rows`, where the caller keeps them). With ``carry`` (sums, key) the fit
    also takes the sums of the block's earlier calls under that key.
    """
    tokens, channels = x.shape[2], x.shape[3]
    c, stride = form.channels_per_map(channels), form.token_stride(fit.shape[0], tokens)
    fused = correction_kernel.fused(x, c)
    if fused:
        gram, cross = correction_kernel.fit_products(x, y, fit, fit_weight, frame_index, stride, c,
                                                     form.products_dtype(True) == torch.bfloat16)
    else:
        gram, cross = _fit_products(x, y, fit, fit_weight, frame_index, stride, c, form.products_dtype(False), rows)
    if carry is not None:
        gram, cross = carry[0].add(carry[1], gram, cross)
    return ridge_solve(gram, cross, fused)


def ridge_solve(gram: torch.Tensor, cross: torch.Tensor, fused: bool) -> torch.Tensor:
    """The maps ``A = (G + ridge I)^-1 X`` [B, n, c, c] of the Gram and cross sums ``gram`` and ``cross`` [B, n, c, c]
    (fp32), ``ridge = RIDGE mean(diag G) + tiny`` per map: one kernel where the fit runs ``fused``
    (:func:`.correction_kernel.ridge_solve`), else torch's Cholesky solve."""
    if fused:
        return correction_kernel.ridge_solve(gram, cross, RIDGE)
    diagonal = gram.diagonal(dim1=2, dim2=3)
    ridge = RIDGE * diagonal.mean(dim=2, keepdim=True) + torch.finfo(gram.dtype).tiny
    gram = gram + torch.diag_embed(ridge.expand_as(diagonal))
    factor, _ = torch.linalg.cholesky_ex(gram)      # SPD by the ridge; _ex: no host-device sync on the check
    # The two triangular solves of the Cholesky solve, written out: one batched cuBLAS call each for all the maps,
    # where some torch versions' cholesky_solve loops over the batch on the GPU (cuSOLVER's potrs, one map a call).
    half = torch.linalg.solve_triangular(factor, cross, upper=False)
    return torch.linalg.solve_triangular(factor.mT, half, upper=True)


def frame_runs(corrected: tuple, most: int) -> tuple[tuple[int, int, int, float, int, int], ...]:
    """``corrected``'s frames as runs ``(frame, low, high, weight, stride, count)``: ``count`` (at most ``most``)
    skipped frames ``stride`` apart whose low and high neighbours are ``stride`` apart too, with one weight (G=2
    interleaved: every other frame, between its two neighbours), so that a run is one strided view of each. A loop
    over the skipped frames in plain Python (microseconds; not cached, so torch.compile traces it without a warning)."""
    runs: list[list] = []
    for frame, low, high, weight in corrected:
        if runs:
            first, first_low, first_high, first_weight, stride, count = runs[-1]
            step = frame - first if count == 1 else stride
            if (step > 0 and count < most and weight == first_weight and frame == first + step * count
                    and low == first_low + step * count and high == first_high + step * count):
                runs[-1][4:] = [step, count + 1]
                continue
        runs.append([frame, low, high, weight, 1, 1])
    return tuple(tuple(run) for run in runs)


def apply_maps(out: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, plan: FramePlan) -> torch.Tensor:
    """Add ``(x_f - lerp(x_lo, x_hi, w)) A`` to each skipped frame f of ``out`` [B, F, T, C] (in place).

    ``plan``'s ``corrected`` holds ``(f, lo, hi, w)`` per skipped frame; ``x`` is the block's input [B, F, T, C],
    ``maps`` from :func:`fit_maps`. The residual's product runs in the model's dtype (the correction is added to
    an output of that precision). Fused (:func:`.correction_kernel.fused`): one kernel over the plan's restore
    table. Else in torch, Python numbers (frame views, no gathers and no host-device syncs): strided views of up
    to :data:`APPLY_TOKENS` tokens of evenly spaced frames at a time (:func:`frame_runs`).
    """
    batch, _, tokens, channels = x.shape
    n, c = maps.shape[1], maps.shape[2]
    if correction_kernel.fused(x, c):
        correction_kernel.apply_maps(out, x, maps, plan.table, plan.weight)
        return out
    maps = maps.to(x.dtype)
    for frame, low, high, weight, stride, count in frame_runs(plan.corrected, max(1, APPLY_TOKENS // tokens)):
        frames, lows, highs = (slice(f, f + stride * (count - 1) + 1, stride) for f in (frame, low, high))
        dx = x[:, frames] - torch.lerp(x[:, lows], x[:, highs], weight)                      # [B, count, T, C]
        correction = dx.view(batch, count * tokens, n, c).transpose(1, 2) @ maps            # [B, n, count*T, c]
        out[:, frames] += correction.transpose(1, 2).reshape(batch, count, tokens, channels)
    return out


def correction_flops(fit_frames: int, skipped_frames: int, tokens_per_frame: int, channels: int,
                     form: CorrectionForm = CorrectionForm()) -> float:
    """Multiply-add FLOPs of the correction of one sparse block for one batch entry: the residuals, the Gram and
    cross products of the fit, the solves and the apply (see the module's docstring; a bf16 FLOP counts as one)."""
    c = form.channels_per_map(channels)
    n = channels // c
    fit_tokens = fit_frames * -(-tokens_per_frame // form.token_stride(fit_frames, tokens_per_frame))
    residuals = 2 * 3 * channels * (2 * fit_tokens + skipped_frames * tokens_per_frame)
    products = 2 * 2 * fit_tokens * channels * c
    solves = n * (c ** 3 / 3 + 2 * c ** 3)
    apply = 2 * skipped_frames * tokens_per_frame * channels * c
    return float(residuals + products + solves + apply) if fit_frames else 0.0
