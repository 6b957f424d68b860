"""Fidelity of a clip against a reference clip, on pixels in [0, 1] ([B, 3, F, H, W]).

One set of definitions for the README's quality tables (``quality/``) and the FIS Compare node, so that a figure
measured on a user's model means what the tables mean. A clip with NaN or infinite pixels (a broken run: an FP8
overflow, a bad LoRA) has no PSNR: its figures are NaN, never a capped 100 dB.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_PSNR = 100.0
#: SSIM's Gaussian window (Wang et al. 2004): frames smaller than this have no SSIM.
SSIM_WINDOW = 11
#: Frames blurred at once in SSIM: bounds its memory on long high-resolution clips (720p: about 1 GB a chunk).
SSIM_CHUNK_FRAMES = 8


def mean_squared_error(clip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each clip [B], over all its frames, pixels and channels."""
    return (clip.float() - reference.float()).pow(2).flatten(1).mean(1)


def nonfinite_frames(clip: torch.Tensor) -> torch.Tensor:
    """Which frames [B, F] hold a NaN or infinite pixel (summed in float64, which no float32 pixels overflow)."""
    return ~clip.sum(dim=(1, 3, 4), dtype=torch.float64).isfinite()


def psnr_per_frame(clip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each frame [B, F] (peak 1; identical frames count as :data:`MAX_PSNR`; NaN where the error is
    not finite)."""
    mse = (clip.float() - reference.float()).pow(2).mean(dim=(1, 3, 4))
    psnr = (10 * torch.log10(1.0 / mse.clamp(min=1e-10))).clamp(max=MAX_PSNR)
    return psnr.where(mse.isfinite(), math.nan)


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def _ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of each image [N] of two batches [N, C, H, W]."""
    c = x.shape[1]
    window = _gaussian_window().to(x.device).expand(c, 1, SSIM_WINDOW, SSIM_WINDOW)

    def blur(t):
        return F.conv2d(t, window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim.mean(dim=(1, 2, 3))


def ssim_per_frame(clip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM of each frame [B, F] (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5, K1 0.01,
    K2 0.03, no padding), averaged over pixels and colour channels."""
    b, c, f, h, w = clip.shape
    chunks = [_ssim(clip[:, :, i:i + SSIM_CHUNK_FRAMES].float().transpose(1, 2).reshape(-1, c, h, w),
                    reference[:, :, i:i + SSIM_CHUNK_FRAMES].float().transpose(1, 2).reshape(-1, c, h, w)).view(b, -1)
              for i in range(0, f, SSIM_CHUNK_FRAMES)]
    return torch.cat(chunks, dim=1)


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
    return {"mse": mean_squared_error(clip, reference).tolist(), "psnr": psnr.mean(1).tolist(),
            "psnr_min_frame": psnr.amin(1).tolist(), "ssim": ssim_per_frame(clip, reference).mean(1).tolist(),
            "temporal_error": temporal_error(clip, reference).tolist()}


def pooled_psnr(mse: list[float]) -> float:
    """PSNR of a set of clips: 10 log10(1 / their mean squared error). Unlike a mean of PSNRs, a clip
    identical to its reference (infinite PSNR) counts as zero error, not as a capped large number. NaN where an
    error is not finite."""
    mean = sum(mse) / len(mse)
    if not math.isfinite(mean):
        return math.nan
    return min(MAX_PSNR, 10 * math.log10(1.0 / max(mean, 1e-10)))
