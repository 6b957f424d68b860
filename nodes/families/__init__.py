"""Model families FIS knows; :func:`find_family` picks the adapter for a diffusion model."""
from .base import FamilyAdapter, FrameGrid
from .record import FamilyRecord, ModelInfo, UsualModel
from .hunyuan import HunyuanVideoFamily
from .ltxv import LTXVideoFamily
from .mochi import MochiFamily
from .wan import WanFamily

FAMILIES: tuple[FamilyAdapter, ...] = (WanFamily(), HunyuanVideoFamily(), LTXVideoFamily(), MochiFamily())
#: The families FPS attention takes.
FPS_FAMILIES = tuple(f for f in FAMILIES if f.takes_fps)


def find_family(diffusion_model) -> FamilyAdapter | None:
    """The adapter for ``diffusion_model``, or None if FIS does not support it."""
    return next((f for f in FAMILIES if f.matches(diffusion_model)), None)


def named(families, conjunction: str = "or") -> str:
    """The families' labels as a sentence lists them: ``"Wan 2.1/2.2, HunyuanVideo 1.0/1.5 or LTX-Video"``."""
    labels = [f.label for f in families]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} {conjunction} {labels[-1]}"


def model_tooltip(families) -> str:
    """The tooltip of a node's model input: the families it takes, and their usage notes."""
    return " ".join([f"A {named(families)} model."] + [f.record.model_note for f in families if f.record.model_note])


__all__ = ["FAMILIES", "FPS_FAMILIES", "FamilyAdapter", "FamilyRecord", "FrameGrid", "HunyuanVideoFamily", "LTXVideoFamily",
           "MochiFamily", "ModelInfo", "UsualModel", "WanFamily", "find_family", "model_tooltip", "named"]
