"""The model trained here: ComfyUI's own ``WanModel``, small, and what training and sampling share.

The architecture is Wan 2.1 text-to-video as ComfyUI's loader detects it from a state dict (2x2
patches, 16 latent channels, 4096-wide text input, qk-norm, cross-attention norm), at dim 256 with
2 heads of 128 (the detector derives heads as dim // 128), a 512-wide feed-forward and 8 blocks:
7.9 M parameters, 16 MB in fp16.

Sampling is flow matching as Wan's: x_sigma = (1 - sigma) x0 + sigma noise, the model predicts the
velocity noise - x0 from x_sigma, sigma * 1000 and the text tokens. Noise levels follow the flow shift
:data:`SHIFT` (ComfyUI's ``ModelSamplingSD3`` node); the ``simple`` scheduler with n steps then runs
at sigma = shift(1 - k / n), k = 0..n-1. The 4-step LoRA is distilled for exactly the 4-step sigmas.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = PACK_ROOT / "models"
BASE_FILE = "fis_tiny_wan.safetensors"
LORA_FILE = "fis_tiny_wan_4step_lora.safetensors"

#: WanModel arguments; the others are Wan 2.1's, which ComfyUI's detector assumes
CONFIG = dict(dim=256, ffn_dim=512, num_heads=2, num_layers=8, in_dim=16, out_dim=16)
#: flow shift used in training and sampling (apply ComfyUI's ModelSamplingSD3 with it)
SHIFT = 3.0
FEW_STEPS = 4
LORA_RANK = 32
#: modules that get a LoRA: every linear layer of the blocks, the time projection and the output head
LORA_TARGETS = ("blocks.", "time_projection.", "head.head")


def shift_sigma(t: torch.Tensor | float, shift: float = SHIFT):
    """ComfyUI's ``time_snr_shift``: the noise level at schedule time ``t`` in [0, 1]."""
    return shift * t / (1 + (shift - 1) * t)


def schedule_sigmas(steps: int, shift: float = SHIFT) -> list[float]:
    """The sigmas of ComfyUI's ``simple`` scheduler for a shifted flow model: ``steps`` levels, then 0."""
    return [float(shift_sigma(1 - k / steps, shift)) for k in range(steps)] + [0.0]


def build(config: dict | None = None, device=None) -> torch.nn.Module:
    """A freshly initialised ``comfy.ldm.wan.model.WanModel`` (ComfyUI must be importable).

    Built with plain ``torch.nn`` layers (same parameter names as ComfyUI's ops) and initialised as the
    original Wan code does: Xavier-uniform linear layers with zero bias, normal(0.02) text and time
    embeddings, modulation tables randn / sqrt(dim), and a zero output head.
    """
    import comfy.ldm.wan.model
    config = {**CONFIG, **(config or {})}
    model = comfy.ldm.wan.model.WanModel(model_type="t2v", operations=torch.nn, device=device, **config)
    dim = config["dim"]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
        torch.nn.init.xavier_uniform_(model.patch_embedding.weight.view(dim, -1))
        torch.nn.init.zeros_(model.patch_embedding.bias)
        for module in (*model.text_embedding, *model.time_embedding):
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.02)
        for block in model.blocks:
            block.modulation.copy_(torch.randn(block.modulation.shape) / math.sqrt(dim))
        model.head.modulation.copy_(torch.randn(model.head.modulation.shape) / math.sqrt(dim))
        torch.nn.init.zeros_(model.head.head.weight)
    return model


def config_of(model: torch.nn.Module) -> dict:
    """The :data:`CONFIG` keys of a built model."""
    return dict(dim=model.dim, ffn_dim=model.ffn_dim, num_heads=model.num_heads, num_layers=model.num_layers,
                in_dim=model.in_dim, out_dim=model.out_dim)


class LowRankDelta(torch.nn.Module):
    """A LoRA as a weight parametrisation: weight + up @ down, with ``up`` starting at zero."""

    def __init__(self, out_features: int, in_features: int, rank: int, device=None):
        super().__init__()
        self.down = torch.nn.Parameter(torch.randn(rank, in_features, device=device) / math.sqrt(in_features))
        self.up = torch.nn.Parameter(torch.zeros(out_features, rank, device=device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.up @ self.down).to(weight.dtype)


def add_lora(model: torch.nn.Module, rank: int = LORA_RANK) -> dict[str, LowRankDelta]:
    """Freeze ``model`` and give each targeted linear layer a trainable LoRA; returns them by module name."""
    from torch.nn.utils import parametrize
    model.requires_grad_(False)
    loras = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear) and name.startswith(LORA_TARGETS):
            lora = LowRankDelta(module.out_features, module.in_features, rank, module.weight.device)
            parametrize.register_parametrization(module, "weight", lora)
            loras[name] = lora
    return loras


def lora_state_dict(loras: dict[str, LowRankDelta], dtype=torch.float16) -> dict[str, torch.Tensor]:
    """The LoRAs in ComfyUI's generic LoRA format (``diffusion_model.<module>.lora_up/lora_down/alpha``),
    with alpha = rank so that ComfyUI adds exactly up @ down."""
    out = {}
    for name, lora in loras.items():
        key = f"diffusion_model.{name}"
        out[f"{key}.lora_up.weight"] = lora.up.detach().to("cpu", dtype).contiguous()
        out[f"{key}.lora_down.weight"] = lora.down.detach().to("cpu", dtype).contiguous()
        out[f"{key}.alpha"] = torch.tensor(float(lora.up.shape[1]))
    return out
