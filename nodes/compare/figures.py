"""FIS Compare's figures: two IMAGE batches checked, the accelerated one measured against the reference with
``fis_core.metrics`` (the definitions of the README's quality tables), and the report an artist reads."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...fis_core.metrics import (MAX_PSNR, SSIM_WINDOW, mean_squared_error, nonfinite_frames, pooled_psnr,
                                psnr_per_frame, ssim_per_frame, temporal_error)


@dataclass(frozen=True)
class Fidelity:
    """The accelerated clip against the reference: pooled PSNR, each frame's PSNR, mean SSIM, temporal error
    (None for a single frame, which has no motion), and the frames of each input that hold NaN or infinite pixels
    (``{"accelerated": 9}``; empty when both are finite), where the figures mean nothing."""
    psnr: float
    frame_psnr: list[float]
    ssim: float
    temporal_error: float | None
    broken_frames: dict[str, int]

    @property
    def worst_frame(self) -> int:
        return min(range(len(self.frame_psnr)), key=self.frame_psnr.__getitem__)


def check_clips(reference, accelerated):
    """Both inputs are non-empty IMAGE batches [frames, height, width, 3] of one size and length; else a
    ValueError that names the input."""
    for name, images in (("reference", reference), ("accelerated", accelerated)):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{name}: expected an IMAGE batch [frames, height, width, 3] (e.g. from VAE Decode); "
                             f"got {shape}")
        if images.numel() == 0:
            raise ValueError(f"{name}: the IMAGE batch is empty {shape}")
    n, h, w, _ = reference.shape
    if accelerated.shape[0] != n:
        raise ValueError(f"accelerated: {accelerated.shape[0]} frames, but reference has {n}; compare two runs of the "
                         f"same length (same frame count in both latents)")
    if accelerated.shape[1:3] != reference.shape[1:3]:
        raise ValueError(f"accelerated: frames of {accelerated.shape[2]}x{accelerated.shape[1]}, but reference's are "
                         f"{w}x{h}; compare two runs of the same size")
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"reference: frames of {w}x{h}; SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")


def as_clip(images: torch.Tensor) -> torch.Tensor:
    """An IMAGE batch [F, H, W, 3] as the metrics' clip [1, 3, F, H, W] (a view)."""
    return images.permute(3, 0, 1, 2).unsqueeze(0)


def measure(reference: torch.Tensor, accelerated: torch.Tensor) -> Fidelity:
    """The figures of the README's quality tables for one clip (see :func:`fis_core.metrics.fidelity`)."""
    clip, ref = as_clip(accelerated), as_clip(reference.to(accelerated.device))
    broken = {name: int(nonfinite_frames(images).sum()) for name, images in (("reference", ref), ("accelerated", clip))}
    return Fidelity(psnr=pooled_psnr(mean_squared_error(clip, ref).tolist()),
                    frame_psnr=psnr_per_frame(clip, ref)[0].tolist(),
                    ssim=ssim_per_frame(clip, ref).mean().item(),
                    temporal_error=temporal_error(clip, ref).item() if reference.shape[0] > 1 else None,
                    broken_frames={name: count for name, count in broken.items() if count})


def report(fidelity: Fidelity, frames: int, width: int, height: int, gain: float, timing: str) -> str:
    """The text the node shows and returns."""
    lines = [f"accelerated against reference: {frames} frame{'s' * (frames > 1)} of {width}x{height}"]
    lines += broken_lines(fidelity.broken_frames, frames) if fidelity.broken_frames else figure_lines(fidelity)
    lines.append(timing)
    lines.append(f"difference panel: |accelerated - reference| x{gain:g}")
    return "\n".join(lines)


def figure_lines(fidelity: Fidelity) -> list[str]:
    worst = fidelity.worst_frame
    if fidelity.psnr >= MAX_PSNR:
        lines = [f"PSNR {MAX_PSNR:.1f} dB: identical to the reference"]
    else:
        lines = [f"PSNR {fidelity.psnr:.1f} dB (all frames pooled), worst frame {worst}: "
                 f"{fidelity.frame_psnr[worst]:.1f} dB"]
    lines.append(f"SSIM {fidelity.ssim:.4f} (mean over frames)")
    lines.append("temporal error: none (one frame)" if fidelity.temporal_error is None else
                 f"temporal error {100 * fidelity.temporal_error:.1f}% (0%: the same motion)")
    return lines


def broken_lines(broken_frames: dict[str, int], frames: int) -> list[str]:
    """What a run with NaN or infinite pixels gets instead of figures: which input, how many of its frames."""
    lines = [f"{name}: NaN or infinite pixels in {count} of {frames} frames ({100 * count / frames:.0f}%): a broken "
             f"run (e.g. an FP8 overflow or a bad LoRA)" for name, count in broken_frames.items()]
    return lines + ["no PSNR, SSIM or temporal error: they mean nothing on broken frames"]
