"""The pure-PyTorch path: tile-sparse attention with the kernel's arithmetic, in float32.

It quantises Q, K (less its mean key) and V per tile (``fp8``), masks the skipped tile pairs and the padding keys, and computes
the softmax with P rounded to e4m3 before the product with V. It runs anywhere (the CPU tests, GPUs
without FP8 or Triton), a chunk of query tiles at a time. Unlike the kernel it computes the skipped pairs
and then masks them, so it saves no time.
"""
from __future__ import annotations

import math

import torch

from .quant import fake_quantize_probabilities, fake_quantize_tiles
from .tiles import TileLayout

PRECISIONS = ("fp8", "bf16")


def tile_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
                             keep: torch.Tensor | None, precision: str, scale: float | None = None,
                             chunk_elements: int = 2 ** 26) -> torch.Tensor:
    """Attention of ``q``, ``k``, ``v`` [B, slots, H, D] in ``layout``'s tile order; ``keep`` is the tile-pair
    pattern ([Tq, Tk] or [B, H, Tq, Tk], None for dense). Returns [B, slots, H, D] in ``q``'s dtype."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: '{precision}' is unknown; choose one of {', '.join(PRECISIONS)}")
    b, n, h, d = q.shape
    dtype = q.dtype
    size = layout.tile_tokens
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    if precision == "fp8":                      # K smoothed: less its mean key, as the kernel quantises it
        k = k.float() - k.float().index_select(1, layout.slot_of_token(k.device)).mean(1, keepdim=True)
        q, k, v = (fake_quantize_tiles(x, size) for x in (q, k, v))
    q, k, v = (x.float().transpose(1, 2) for x in (q, k, v))          # [B, H, slots, D]
    key_valid = layout.key_valid(q.device)
    if keep is not None and keep.ndim == 2:
        keep = keep[None, None]
    out = torch.empty_like(q)
    tiles_per_chunk = max(1, chunk_elements // (b * h * n * size))
    for first in range(0, layout.num_tiles, tiles_per_chunk):
        rows = slice(first * size, min(first + tiles_per_chunk, layout.num_tiles) * size)
        s = (q[:, :, rows] @ k.transpose(-1, -2)) * scale
        allowed = key_valid.expand(s.shape[-2], n)
        if keep is not None:
            pairs = keep[..., first:first + tiles_per_chunk, :].to(q.device)
            allowed = allowed & pairs.repeat_interleave(size, -2).repeat_interleave(size, -1)
        s = s.masked_fill(~allowed, float("-inf"))
        p = torch.exp(s - s.amax(-1, keepdim=True))
        denominator = p.sum(-1, keepdim=True)
        if precision == "fp8":
            p = fake_quantize_probabilities(p)
        out[:, :, rows] = (p @ v) / denominator
    return out.transpose(1, 2).to(dtype)
