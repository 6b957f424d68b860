"""The model trained here: ComfyUI's own ``WanModel``, small, and what training and sampling share.

The architecture is Wan 2.1 text-to-video as ComfyUI's loader detects it from a state dict (2x2
patches, 16 latent channels, 4096-wide text input, qk-norm, cross-attention norm). A :class:`Shape` sets its
width and depth and the clips it learns; the shipped one (:data:`SHIPPED`) is dim 256 with 2 heads of 128 (the
detector derives heads as dim // 128), a 512-wide feed-forward and 8 blocks (7.9 M parameters, 16 MB in fp16) on
17 frames of 32x32 pixels. Training writes the shape into the checkpoint's metadata (:meth:`Shape.metadata`) and
the studies read it back (:func:`read_shape`), so they sample at the size the model learnt.

Sampling is flow matching as Wan's: x_sigma = (1 - sigma) x0 + sigma noise, the model predicts the
velocity noise - x0 from x_sigma, sigma * 1000 and the text tokens. Noise levels follow the flow shift
:data:`SHIFT` (ComfyUI's ``ModelSamplingSD3`` node); the ``simple`` scheduler with n steps then runs
at sigma = shift(1 - k / n), k = 0..n-1. The 4-step LoRA is distilled for exactly the 4-step sigmas.
"""
from __future__ import annotations

import math
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import latent, scenes

PACK_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = PACK_ROOT / "models"
BASE_FILE = "fis_tiny_wan.safetensors"
LORA_FILE = "fis_tiny_wan_4step_lora.safetensors"

#: what ComfyUI's detector takes a head's width to be (it derives the heads as dim // HEAD_DIM)
HEAD_DIM = 128
#: the key of the checkpoint's metadata that holds the shape and the training settings
METADATA_KEY = "fis_quality"


@dataclass(frozen=True)
class Shape:
    """What a model trained here is: the clips it learns and samples, ``frames`` frames of ``size`` x ``size``
    pixels (a latent of ``size / 2`` squared per frame, so ``(size / 4)`` squared tokens after the model's 2x2
    patches), and its ``WanModel``'s width (``dim``, heads of :data:`HEAD_DIM`), feed-forward and blocks."""

    frames: int
    size: int
    dim: int
    ffn_dim: int
    num_layers: int

    def __post_init__(self):
        if min(self.frames, self.size, self.dim, self.ffn_dim, self.num_layers) < 1:
            raise ValueError(f"every field of a model shape is a positive whole number; got {self}")
        if self.size % (2 * latent.PATCH) or self.dim % HEAD_DIM:
            raise ValueError(f"a model shape needs the size a multiple of {2 * latent.PATCH} (the latent's and the "
                             f"model's 2x2 patches) and dim a multiple of {HEAD_DIM} (ComfyUI's heads); got {self}")

    @property
    def config(self) -> dict:
        """The ``WanModel`` arguments; the others are Wan 2.1's, which ComfyUI's detector assumes."""
        return dict(dim=self.dim, ffn_dim=self.ffn_dim, num_heads=self.dim // HEAD_DIM, num_layers=self.num_layers,
                    in_dim=latent.CHANNELS, out_dim=latent.CHANNELS)

    @property
    def latent_size(self) -> int:
        return self.size // latent.PATCH

    @property
    def tokens(self) -> int:
        """Image tokens of one clip: frames x (size / 4) squared."""
        return self.frames * (self.latent_size // 2) ** 2

    @property
    def name(self) -> str:
        """Its name in :data:`SHAPES`, or ``custom``."""
        return next((name for name, shape in SHAPES.items() if shape == self), "custom")

    def metadata(self) -> dict:
        """What the checkpoint's metadata records of it (the keys of the first checkpoints, and the name)."""
        return {"shape": self.name, "config": self.config, "frames": self.frames, "size": self.size}

    @classmethod
    def from_metadata(cls, metadata: dict) -> "Shape":
        """The shape :meth:`metadata` recorded (also in checkpoints written before shapes had names)."""
        config = metadata["config"]
        return cls(frames=metadata["frames"], size=metadata["size"], dim=config["dim"], ffn_dim=config["ffn_dim"],
                   num_layers=config["num_layers"])


#: the model shipped in models/: 17 frames of 32x32 pixels (8x8 tokens), dim 256, 8 blocks
SHIPPED = Shape(frames=scenes.FRAMES, size=scenes.SIZE, dim=256, ffn_dim=512, num_layers=8)
SHAPES = {
    "shipped": SHIPPED,
    #: shaped more like Wan (issue 26): 21 latent frames as Wan-14B's 81-frame clips, 16x16 tokens per frame, 4 heads
    #: of 128, a feed-forward 3x the width (Wan-14B's is 2.7x), 16 blocks; trained on a GPU, not shipped
    "wan-shaped": Shape(frames=21, size=64, dim=512, ffn_dim=1536, num_layers=16),
    #: what wan-shaped changes (64-pixel scenes, another frame count and width) at a size the CPU trains in seconds;
    #: 9 frames leave every group of G=3 three frames, as the lab's fit needs
    "wan-shaped-tiny": Shape(frames=9, size=64, dim=128, ffn_dim=256, num_layers=3),
}
#: WanModel arguments of the shipped model
CONFIG = SHIPPED.config
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


def read_shape(checkpoint: Path) -> Shape:
    """The shape a checkpoint of :mod:`quality.train` records in its metadata; a ValueError for another file."""
    from safetensors import safe_open
    with safe_open(str(checkpoint), "pt") as f:
        metadata = (f.metadata() or {}).get(METADATA_KEY)
    try:
        return Shape.from_metadata(json.loads(metadata))
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"{checkpoint} records no model shape in its metadata ({METADATA_KEY!r}): it was not "
                         f"written by quality.train ({error!r})") from error


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
