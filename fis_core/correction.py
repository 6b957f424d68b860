"""Corrected interpolation: a skipped frame's interpolated update, corrected by a linear map fitted on the computed frames.

A block's update ``u = y - x`` depends on each frame's own input, which the frame's neighbours do not share, so
the update interpolated from them misses part of it. The corrected restore adds ``(x_f - interp(x)_f) A`` to a
skipped frame f: the part of its input its neighbours do not predict, mapped by A. A is fitted per block, per
model call and per batch entry by ridge least squares on the computed frames, where both input and update are
known: every computed frame whose computed neighbours lie on both sides gives ``dx = x_c - interp(x)_c`` and
``du = u_c - interp(u)_c`` over its tokens, and ``A = argmin |du - dx A|^2 + lambda |A|^2``.

A is block-diagonal, one map per :data:`MAP_CHANNELS` channels (a Wan-14B block's 5120 channels give 40 maps of
128 x 128, the size of a head): the full C x C map would cost a quarter of a sparse block on Wan-14B, these cost a
few percent and keep most of its fidelity. The fit reads at most :data:`FIT_TOKENS` tokens per batch entry (an
even subsample of the fit frames' tokens: 128 unknowns per output channel need far fewer than 30,000 samples).
"""
from __future__ import annotations

import torch

#: Channels per block of the block-diagonal map.
MAP_CHANNELS = 128
#: Tokens per batch entry the fit reads, at most.
FIT_TOKENS = 16384
#: Ridge strength relative to the mean diagonal of ``dx^T dx``.
RIDGE = 0.1
#: Skipped frames corrected at a time (bounds the temporaries to a few frames' size).
APPLY_CHUNK = 4


def map_channels(channels: int) -> int:
    """The channels of one map for a block of ``channels`` channels: :data:`MAP_CHANNELS`, or all of them
    where they do not divide evenly."""
    return MAP_CHANNELS if channels % MAP_CHANNELS == 0 else channels


def _residual(frames: torch.Tensor, center, lo, hi, weight: torch.Tensor) -> torch.Tensor:
    """``frames[center] - lerp(frames[lo], frames[hi], weight)`` in fp32, along axis 1 (frames)."""
    pick = lambda index: frames.index_select(1, index).float()  # noqa: E731
    low = pick(lo)
    return pick(center) - torch.lerp(low, pick(hi), weight.view(1, -1, 1, 1).to(low.dtype))


def fit_maps(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, fit_weight: torch.Tensor,
             frame_index: torch.Tensor) -> torch.Tensor:
    """The maps A [B, n, c, c] (fp32; n maps of c channels) of one sparse block.

    ``x`` [B, F, T, C] are the block's input frames, ``y`` [B, k, T, C] its output on the computed frames
    (``frame_index`` [k] says which). ``fit`` [m, 3] holds per fit frame its position among the computed frames
    and those of its low and high neighbours, ``fit_weight`` [m] the high neighbour's weight.
    """
    batch, _, tokens, channels = x.shape
    stride = max(1, -(-fit.shape[0] * tokens // FIT_TOKENS))
    token_index = torch.arange(0, tokens, stride, device=x.device)
    x_computed = x.index_select(1, frame_index).index_select(2, token_index)
    u_computed = y.index_select(2, token_index).float() - x_computed.float()
    center, lo, hi = fit.unbind(1)
    dx = _residual(x_computed, center, lo, hi, fit_weight)
    du = _residual(u_computed, center, lo, hi, fit_weight)
    c = map_channels(channels)
    dx = dx.reshape(batch, -1, channels // c, c).transpose(1, 2)      # [B, n, N, c]
    du = du.reshape(batch, -1, channels // c, c).transpose(1, 2)
    gram = dx.transpose(2, 3) @ dx
    cross = dx.transpose(2, 3) @ du
    diagonal = gram.diagonal(dim1=2, dim2=3)
    ridge = RIDGE * diagonal.mean(dim=2, keepdim=True) + torch.finfo(gram.dtype).tiny
    gram = gram + torch.diag_embed(ridge.expand_as(diagonal))
    return torch.linalg.solve(gram, cross)


def apply_maps(out: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, skipped: torch.Tensor, lo: torch.Tensor,
               hi: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Add ``(x_f - lerp(x_lo, x_hi, w)) A`` to each skipped frame f of ``out`` [B, F, T, C] (in place).

    ``skipped``, ``lo``, ``hi`` [s] are frame numbers, ``weight`` [s] the high source's weight; ``x`` is the
    block's input [B, F, T, C], ``maps`` from :func:`fit_maps`.
    """
    batch, _, tokens, channels = x.shape
    n, c = maps.shape[1], maps.shape[2]
    maps = maps.to(x.dtype) if x.dtype != torch.float64 else maps.double()
    for start in range(0, skipped.shape[0], APPLY_CHUNK):
        part = slice(start, start + APPLY_CHUNK)
        dx = _residual(x, skipped[part], lo[part], hi[part], weight[part]).to(maps.dtype)
        s = dx.shape[1]
        correction = dx.reshape(batch, s * tokens, n, c).transpose(1, 2) @ maps   # [B, n, s T, c]
        correction = correction.transpose(1, 2).reshape(batch, s, tokens, channels)
        out.index_add_(1, skipped[part], correction.to(out.dtype))
    return out


def correction_flops(fit_frames: int, skipped_frames: int, tokens_per_frame: int, channels: int) -> float:
    """Multiply-add FLOPs of the correction of one sparse block for one batch entry: the residuals, the Gram and
    cross products of the fit, the solves and the apply (see the module's docstring)."""
    c = map_channels(channels)
    n = channels // c
    fit_tokens = min(fit_frames * tokens_per_frame, FIT_TOKENS) if fit_frames else 0
    residuals = 2 * 3 * channels * (2 * fit_tokens + skipped_frames * tokens_per_frame)
    products = 2 * 2 * fit_tokens * channels * c
    solves = n * (c ** 3 / 3 + 2 * c ** 3)
    apply = 2 * skipped_frames * tokens_per_frame * channels * c
    return float(residuals + products + solves + apply) if fit_frames else 0.0
