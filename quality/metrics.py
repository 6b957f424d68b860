"""Fidelity of a clip against a reference clip, on decoded pixels in [0, 1] ([B, 3, F, H, W]): the product's own
definitions (``fis_core.metrics``, which the FIS Compare node reports), and the FLOPs of one block of this model."""
from __future__ import annotations

import math

from comfyui_fis.fis_core.metrics import (MAX_PSNR, fidelity, pooled_psnr, psnr_per_frame,  # noqa: F401
                                          ssim_per_frame, temporal_error)


def block_flops(tokens: int, dim: int, ffn_dim: int, context_tokens: int) -> float:
    """Multiply-add FLOPs of one Wan block on ``tokens`` image tokens: projections and feed-forward
    grow with the tokens, self-attention with their square, cross-attention with tokens x context."""
    projections = 2 * tokens * (6 * dim * dim + 2 * dim * ffn_dim) + 2 * context_tokens * 2 * dim * dim
    attention = 4 * tokens * tokens * dim + 4 * tokens * context_tokens * dim
    return float(projections + attention)


def summary(values: list[float]) -> dict:
    """Mean, minimum and a normal 95% interval half-width of ``values``."""
    n = len(values)
    mean = sum(values) / n
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "min": min(values), "ci95": 1.96 * spread / math.sqrt(n)}
