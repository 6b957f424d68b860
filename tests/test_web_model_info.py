"""What the schedule view learns about the connected model file (nodes/model_info.py): family and block count
read from the safetensors header with the host's model detection, for files saved from tiny real models."""
import pytest
import safetensors.torch
import torch

from tiny_models import tiny_hunyuan_video, tiny_wan


def save(tmp_path, model, prefix=""):
    path = tmp_path / "model.safetensors"
    weights = model.model.diffusion_model.state_dict()
    safetensors.torch.save_file({prefix + k: v.contiguous() for k, v in weights.items()}, path)
    return path


@pytest.mark.parametrize("build, expected", [
    (lambda: tiny_wan(num_layers=6), {"family": "wan", "blocks": 6, "frames": 21, "image_to_video": False}),
    (lambda: tiny_wan(num_layers=3, in_dim=36), {"family": "wan", "blocks": 3, "image_to_video": True}),
    (lambda: tiny_hunyuan_video("1.5", depth=5), {"family": "hunyuan_video", "blocks": 5, "label": "HunyuanVideo 1.5"}),
    (lambda: tiny_hunyuan_video("1.0", depth=2, single_depth=3),
     {"family": "hunyuan_video", "blocks": 5, "label": "HunyuanVideo 1.0 (2 double + 3 single)"}),
])
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])  # a diffusion model file, a checkpoint
def test_family_and_blocks_from_the_header(host, tmp_path, build, expected, prefix):
    from comfyui_fis.nodes.model_info import model_info
    info = model_info(save(tmp_path, build(), prefix))
    assert {k: info[k] for k in expected} == expected


def test_other_models_are_not_supported(host, tmp_path):
    from comfyui_fis.nodes.model_info import model_info
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"encoder.weight": torch.zeros(4, 4)}, path)
    assert model_info(path) is None
