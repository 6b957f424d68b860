"""Fidelity of a clip against a reference clip, on decoded pixels in [0, 1] ([B, 3, F, H, W]), and the
FLOPs of one block of this model."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_PSNR = 100.0


def psnr_per_frame(clip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each frame [B, F] (peak 1; identical frames count as :data:`MAX_PSNR`)."""
    mse = (clip.float() - reference.float()).pow(2).mean(dim=(1, 3, 4))
    return (10 * torch.log10(1.0 / mse.clamp(min=1e-10))).clamp(max=MAX_PSNR)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim_per_frame(clip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM of each frame [B, F] (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5, K1 0.01,
    K2 0.03, no padding), averaged over pixels and colour channels."""
    b, c, f, h, w = clip.shape
    x = clip.float().permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    y = reference.float().permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    window = _gaussian_window().to(x.device).expand(c, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim.mean(dim=(1, 2, 3)).view(b, f)


def temporal_error(clip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """How far the clip's motion is from the reference's, per clip [B]: the norm of the difference
    between their consecutive-frame differences over the norm of the reference's (0: the same motion)."""
    motion = clip.float().diff(dim=2)
    reference_motion = reference.float().diff(dim=2)
    return (motion - reference_motion).flatten(1).norm(dim=1) / reference_motion.flatten(1).norm(dim=1).clamp(min=1e-8)


def fidelity(clip: torch.Tensor, reference: torch.Tensor) -> dict:
    """Per clip (lists over the batch): mean squared error, mean and worst-frame PSNR, mean SSIM,
    temporal error."""
    psnr = psnr_per_frame(clip, reference)
    mse = (clip.float() - reference.float()).pow(2).flatten(1).mean(1)
    return {"mse": mse.tolist(), "psnr": psnr.mean(1).tolist(), "psnr_min_frame": psnr.amin(1).tolist(),
            "ssim": ssim_per_frame(clip, reference).mean(1).tolist(),
            "temporal_error": temporal_error(clip, reference).tolist()}


def block_flops(tokens: int, dim: int, ffn_dim: int, context_tokens: int) -> float:
    """Multiply-add FLOPs of one Wan block on ``tokens`` image tokens: projections and feed-forward
    grow with the tokens, self-attention with their square, cross-attention with tokens x context."""
    projections = 2 * tokens * (6 * dim * dim + 2 * dim * ffn_dim) + 2 * context_tokens * 2 * dim * dim
    attention = 4 * tokens * tokens * dim + 4 * tokens * context_tokens * dim
    return float(projections + attention)


def pooled_psnr(mse: list[float]) -> float:
    """PSNR of a set of clips: 10 log10(1 / their mean squared error). Unlike a mean of PSNRs, a clip
    identical to its reference (infinite PSNR) counts as zero error, not as a capped large number."""
    return min(MAX_PSNR, 10 * math.log10(1.0 / max(sum(mse) / len(mse), 1e-10)))


def summary(values: list[float]) -> dict:
    """Mean, minimum and a normal 95% interval half-width of ``values``."""
    n = len(values)
    mean = sum(values) / n
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "min": min(values), "ci95": 1.96 * spread / math.sqrt(n)}
