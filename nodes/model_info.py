"""What the schedule view asks the server about a model file: its FIS family and block count.

Read from the safetensors header alone (no weights are loaded) with ComfyUI's own model detection, and
served as ``GET /fis/model_info?folder=diffusion_models&name=<file>``.
"""
from __future__ import annotations

import json
import struct

import torch

#: Model folders a loader node may name, by the folder_paths key.
FOLDERS = ("diffusion_models", "checkpoints")
#: Wan sizes by model width.
WAN_SIZES = {1536: "1.3B", 3072: "5B", 5120: "14B"}


def read_header(path) -> tuple[dict, dict]:
    """Tensor shapes and metadata of a safetensors file, from its JSON header."""
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    metadata = header.pop("__metadata__", None) or {}
    return {name: tuple(entry["shape"]) for name, entry in header.items()}, metadata


def model_info(path) -> dict | None:
    """``{"family", "label", "blocks", "frames", "image_to_video"}`` for a Wan or HunyuanVideo file, else None.

    ``blocks`` counts what the node's ``sparse_blocks`` numbers: Wan blocks, or HunyuanVideo double blocks
    then single blocks. ``frames`` is the latent frame count of the model's usual clip (31 for TI2V-5B's 121
    frames, else 21 for 81). ``image_to_video`` is True where the model takes a concatenated image (Wan I2V).
    """
    import comfy.model_detection
    import comfy.utils

    shapes, metadata = read_header(path)
    state_dict = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    prefix = comfy.model_detection.unet_prefix_from_state_dict(state_dict)
    if any(name.startswith(prefix) for name in state_dict):
        state_dict = comfy.utils.state_dict_prefix_replace(state_dict, {prefix: ""}, filter_keys=True)
    config = comfy.model_detection.detect_unet_config(state_dict, "", metadata) or {}
    image_model = config.get("image_model")
    if image_model == "wan2.1":
        image_to_video = config["in_dim"] > config["out_dim"]
        size = WAN_SIZES.get(config["dim"], f"{config['dim']}-wide")
        label = " ".join(["Wan", size, "I2V" if image_to_video else ""]).strip()
        return {"family": "wan", "label": label, "blocks": config["num_layers"], "frames": 31 if size == "5B" else 21,
                "image_to_video": image_to_video}
    if image_model == "hunyuan_video" and len(config["patch_size"]) == 3:
        version = "1.5" if config.get("byt5") else "1.0"
        double, single = config["depth"], config["depth_single_blocks"]
        label = f"HunyuanVideo {version}" + (f" ({double} double + {single} single)" if single else "")
        return {"family": "hunyuan_video", "label": label, "blocks": double + single, "frames": 21,
                "image_to_video": False}
    return None


def register_routes():
    """Add ``GET /fis/model_info`` to the running ComfyUI server (nothing when there is none)."""
    import server
    from aiohttp import web

    instance = getattr(server.PromptServer, "instance", None)
    if instance is None:
        return

    @instance.routes.get("/fis/model_info")
    async def get_model_info(request):
        import folder_paths
        folder, name = request.query.get("folder", ""), request.query.get("name", "")
        path = folder_paths.get_full_path(folder, name) if folder in FOLDERS else None
        if path is None or not path.endswith(".safetensors"):
            return web.json_response({"error": f"no safetensors file '{name}' in {folder or 'no folder'}"}, status=404)
        try:
            info = model_info(path)
        except Exception as error:  # any file the detection cannot make sense of
            return web.json_response({"error": f"cannot read {name}: {error}"}, status=422)
        if info is None:
            return web.json_response({"error": f"{name} is not a model FIS supports"}, status=422)
        return web.json_response({**info, "name": name})
