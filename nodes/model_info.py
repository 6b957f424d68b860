"""What the schedule view asks the server: the model families' usual models, a model file's family and blocks, and a
calibration profile (:mod:`.profile_info`).

A file is read from its safetensors header alone (no weights are loaded) with ComfyUI's own model detection, and
each family adapter says whether the detected config is its model. Served as ``GET /fis/families``,
``GET /fis/model_info?folder=diffusion_models&name=<file>`` and ``GET /fis/profile?name=<profile>``.
"""
from __future__ import annotations

import asyncio
import json
import os
import struct
from dataclasses import asdict

import torch

from .families import FAMILIES

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
    (see :class:`~.families.ModelInfo`), else None."""
    import comfy.model_detection
    import comfy.utils

    shapes, metadata = read_header(path)
    state_dict = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    prefix = comfy.model_detection.unet_prefix_from_state_dict(state_dict)
    if any(name.startswith(prefix) for name in state_dict):
        state_dict = comfy.utils.state_dict_prefix_replace(state_dict, {prefix: ""}, filter_keys=True)
    config = comfy.model_detection.detect_unet_config(state_dict, "", metadata) or {}
    for family in FAMILIES:
        info = family.describe(config)
        if info is not None:
            return {"family": family.name, **asdict(info)}
    return None


def presets() -> list[dict]:
    """The families' usual models, for the view's selector: ``{"key", "family", "label", "blocks", "frames",
    "image_to_video", "file_hints"}`` each, the default first."""
    return [{"key": p.key, "family": f.name, **asdict(p.model), "file_hints": list(p.file_hints)}
            for f in FAMILIES for p in f.presets]


def register_routes():
    """Add ``GET /fis/families``, ``/fis/model_info`` and ``/fis/profile`` to the running ComfyUI server (nothing when
    there is none)."""
    import server
    from aiohttp import web

    instance = getattr(server.PromptServer, "instance", None)
    if instance is None:
        return

    @instance.routes.get("/fis/families")
    async def get_families(request):
        from .fis_node import PRESETS
        return web.json_response({"presets": presets(), "quality_presets": PRESETS})

    @instance.routes.get("/fis/profile")
    async def get_profile(request):
        from .profile_info import ProfileRequestError, profile_info
        query = {key: request.query.get(key) for key in ("name", "count", "family", "blocks")}
        try:
            return web.json_response(await asyncio.to_thread(profile_info, query["name"] or "", query["count"],
                                                             query["family"], query["blocks"]))
        except ProfileRequestError as error:
            return web.json_response({"error": str(error)}, status=error.status)

    @instance.routes.get("/fis/model_info")
    async def get_model_info(request):
        import folder_paths
        folder, name = request.query.get("folder", ""), request.query.get("name", "")
        path = folder_paths.get_full_path(folder, name) if folder in FOLDERS else None
        if path is None or not path.endswith(".safetensors"):
            return web.json_response({"error": f"no safetensors file '{name}' in {folder or 'no folder'}"}, status=404)
        try:   # off the event loop: the server keeps answering while a large header is read
            info = await asyncio.to_thread(model_info, path)
        except Exception as error:  # any file the detection cannot make sense of
            return web.json_response({"error": f"cannot read {name}: {_reason(error)}"}, status=422)
        if info is None:
            return web.json_response({"error": f"{name} is not a model FIS supports"}, status=422)
        return web.json_response({**info, "name": name})


def _reason(error: Exception) -> str:
    """What went wrong, never an empty string: a HeaderError's own words, else the exception's type and message."""
    if isinstance(error, HeaderError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
