"""Per-tile FP8 (e4m3) quantisation, as the kernel does it.

Q, K and V get one scale per (batch item, tile, head): the tile's absolute maximum over its tokens and
channels maps to 448, e4m3's largest value. The softmax probabilities P lie in [0, 1] and get the fixed
scale 1/448, so the kernel quantises ``P * 448`` and divides the product by 448.
"""
from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
#: The smallest scale: float32's smallest normal number, so that an all-zero tile divides by no zero.
SCALE_FLOOR = torch.finfo(torch.float32).tiny


def quantize_tiles(x: torch.Tensor, tile_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [B, slots, H, D] in tile order -> (e4m3 values [B, slots, H, D], float32 scales [B, tiles, H])."""
    b, n, h, d = x.shape
    tiles = x.view(b, n // tile_tokens, tile_tokens, h, d)
    amax = tiles.abs().amax(dim=(2, 4)).float()
    scale = (amax / FP8_MAX).clamp(min=SCALE_FLOOR)
    values = (tiles.float() / scale[:, :, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return values.view(b, n, h, d), scale


def dequantize_tiles(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 values that ``quantize_tiles`` stands for."""
    b, n, h, d = values.shape
    tiles = values.view(b, scale.shape[1], -1, h, d).float() * scale[:, :, None, :, None]
    return tiles.view(b, n, h, d)


def fake_quantize_tiles(x: torch.Tensor, tile_tokens: int) -> torch.Tensor:
    """``x`` rounded through per-tile e4m3, in float32."""
    return dequantize_tiles(*quantize_tiles(x, tile_tokens))


def fake_quantize_probabilities(p: torch.Tensor) -> torch.Tensor:
    """Probabilities in [0, 1] rounded through e4m3 with the fixed scale 1/448, in float32."""
    return (p * FP8_MAX).to(FP8).float() / FP8_MAX
