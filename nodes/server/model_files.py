"""What the schedule view learns of model files: a file's family and blocks, and the families' usual models.

A file is read from its safetensors header alone (no weights are loaded) with ComfyUI's own model detection, and
each family adapter says whether the detected config is its model. Served by :mod:`.routes`.
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import asdict

import torch

from ..families import FAMILIES

#: Model folders a loader node may name, by the folder_paths key.
FOLDERS = ("diffusion_models", "checkpoints")
#: The largest header the safetensors format allows (its own readers refuse more).
MAX_HEADER_BYTES = 100_000_000
#: The largest header read. Parsing JSON holds Python's interpreter lock, so the server answers nothing else
#: meanwhile (about 0.1 s for 2 MB, seconds for tens of MB); every model FIS supports has a header of well under
#: 1 MB (a 14B Wan's: 0.11 MB; a checkpoint adds its VAE and text encoder, FP8 scales a few entries per layer).
MAX_MODEL_HEADER_BYTES = 2_000_000


class HeaderError(ValueError):
    """A file whose safetensors header cannot be read, and why."""


def read_header(path) -> tuple[dict, dict]:
    """Tensor shapes and metadata of a safetensors file, from its JSON header.

    The header's length field is checked against the format's cap, the file's size and the largest header of a
    model FIS supports before the header is read, so a corrupt, foreign or oversized file is refused at once, without
    reading it."""
    size = os.path.getsize(path)
    if size < 8:
        raise HeaderError(f"the file has {size} bytes, too few for a safetensors header")
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        if length > MAX_HEADER_BYTES:
            raise HeaderError(f"its header length field says {length} bytes, more than the {MAX_HEADER_BYTES // 10**6} MB "
                              f"a safetensors header may have (not a safetensors file, or a corrupt one)")
        if length > size - 8:
            raise HeaderError(f"its header length field says {length} bytes, but the file has only {size - 8} after it "
                              f"(a truncated file)")
        if length > MAX_MODEL_HEADER_BYTES:
            raise HeaderError(f"its header has {length / 1e6:.1f} MB, more than the {MAX_MODEL_HEADER_BYTES // 10**6} MB "
                              f"of any model FIS supports (a 14B Wan's: 0.1 MB); not read")
        raw = file.read(length)
    try:
        header = json.loads(raw)
    except UnicodeDecodeError:
        raise HeaderError("its header is not text (not a safetensors file)") from None
    except json.JSONDecodeError as error:
        raise HeaderError(f"its header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise HeaderError(f"its header is a JSON {type(header).__name__}, not a safetensors header")
    metadata = header.pop("__metadata__", None) or {}
    try:
        shapes = {name: tuple(int(n) for n in entry["shape"]) for name, entry in header.items()}
    except (TypeError, KeyError, ValueError):
        raise HeaderError("its header has an entry without a tensor shape (not a safetensors header)") from None
    return shapes, metadata


def model_info(path) -> dict | None:
    """``{"family", "label", "blocks", "frames", "image_to_video"}`` for a model file of a family FIS supports
    (see :class:`~..families.ModelInfo`), else None."""
    import comfy.model_detection
    import comfy.utils

    shapes, metadata = read_header(path)
    state_dict = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    prefix = comfy.model_detection.unet_prefix_from_state_dict(state_dict)
    if any(name.startswith(prefix) for name in state_dict):
        state_dict = comfy.utils.state_dict_prefix_replace(state_dict, {prefix: ""}, filter_keys=True)
    config = comfy.model_detection.detect_unet_config(state_dict, "", metadata) or {}
    record = next((f.record for f in FAMILIES if f.record.image_model == config.get("image_model")), None)
    if record is None:
        return None
    info = record.describe(config, tuple(block_count(state_dict, attribute) for attribute, _ in record.blocks))
    return None if info is None else {"family": record.name, **asdict(info)}


def block_count(state_dict: dict, attribute: str) -> int:
    """How many blocks the list ``attribute`` of a file's weights holds (its highest block number plus one), counted
    from the file (ComfyUI's detection gives some families a fixed depth: every Mochi file is 48 blocks there)."""
    pattern = re.compile(rf"{re.escape(attribute)}\.(\d+)\.")
    return 1 + max((int(m.group(1)) for name in state_dict if (m := pattern.match(name))), default=-1)


def usual_models() -> list[dict]:
    """The families' usual models, for the view's selector: ``{"key", "family", "label", "blocks", "frames",
    "image_to_video", "file_hints"}`` each, the default first."""
    return [{"key": m.key, "family": f.name, **asdict(m.model), "file_hints": list(m.file_hints)}
            for f in FAMILIES for m in f.record.usual_models]
