"""Model families FIS knows; :func:`find_family` picks the adapter for a diffusion model."""
from .base import FamilyAdapter, FrameGrid
from .hunyuan import HunyuanVideoFamily
from .ltxv import LTXVideoFamily
from .mochi import MochiFamily
from .wan import WanFamily

FAMILIES: tuple[FamilyAdapter, ...] = (WanFamily(), HunyuanVideoFamily(), LTXVideoFamily(), MochiFamily())


def find_family(diffusion_model) -> FamilyAdapter | None:
    """The adapter for ``diffusion_model``, or None if FIS does not support it."""
    return next((f for f in FAMILIES if f.matches(diffusion_model)), None)


__all__ = ["FAMILIES", "FamilyAdapter", "FrameGrid", "HunyuanVideoFamily", "LTXVideoFamily", "MochiFamily", "WanFamily",
           "find_family"]
