"""The fixed, invertible linear map between RGB video and the model's 16-channel latent (no VAE).

A latent pixel holds one 2x2 patch of RGB pixels. Its 12 values (RGB in [-1, 1], ordered colour
channel, patch row, patch column) are padded with 4 zeros to 16, rotated by the 16x16
Sylvester-Hadamard matrix divided by 4 (orthonormal, so every channel mixes all 12 values) and
multiplied by :data:`SCALE`, which gives the latent about unit variance, as Wan's normalised latents
have. :func:`decode` multiplies back, rotates back and keeps the first 12 values: the exact inverse
of :func:`encode`, and for any other latent the orthogonal projection onto what encode can produce.

One video frame is one latent frame: there is no temporal compression, so a 17-frame 32x32 clip is a
[16, 17, 16, 16] latent, and the Wan model (2x2 patches of its own) sees 17 frames of 8x8 tokens.
This latent is the model's own space. ComfyUI's LATENT holds Wan 2.1's VAE space; the model's
``process_latent_in`` maps a LATENT into this space, ``process_latent_out`` back.
"""
from __future__ import annotations

import torch

from .hadamard import hadamard_rows

PATCH = 2
CHANNELS = 16
PATCH_VALUES = 3 * PATCH * PATCH
#: Latent = SCALE x the rotated patch values: pixel values of the training videos have a standard
#: deviation of about 0.28, so the latent's is about 1.
SCALE = 3.5
ROTATION = hadamard_rows(range(CHANNELS), CHANNELS) / 4.0


def encode(video: torch.Tensor) -> torch.Tensor:
    """RGB video [B, 3, F, H, W] in [-1, 1] (H, W even) -> latent [B, 16, F, H/2, W/2]."""
    b, c, f, h, w = video.shape
    patches = video.reshape(b, c, f, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 3, 5, 1, 4, 6)
    values = patches.reshape(b, f, h // PATCH, w // PATCH, PATCH_VALUES)
    values = torch.nn.functional.pad(values, (0, CHANNELS - PATCH_VALUES))
    latent = values @ ROTATION.to(values).T * SCALE
    return latent.permute(0, 4, 1, 2, 3).contiguous()


def decode(latent: torch.Tensor) -> torch.Tensor:
    """Latent [B, 16, F, h, w] -> RGB video [B, 3, F, 2h, 2w] (not clamped)."""
    b, _, f, h, w = latent.shape
    values = (latent.permute(0, 2, 3, 4, 1) / SCALE) @ ROTATION.to(latent)
    patches = values[..., :PATCH_VALUES].reshape(b, f, h, w, 3, PATCH, PATCH)
    return patches.permute(0, 4, 1, 2, 5, 3, 6).reshape(b, 3, f, h * PATCH, w * PATCH)


def to_pixels(latent: torch.Tensor) -> torch.Tensor:
    """Latent -> video in [0, 1] (clamped), the form the metrics and the images use."""
    return (decode(latent.float()).clamp(-1, 1) + 1) / 2
