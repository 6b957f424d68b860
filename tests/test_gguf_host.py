"""FIS and FPS on a GGUF model, loaded by the ComfyUI-GGUF node pack (city96) as users load one.

The pack is looked for in the host's ``custom_nodes`` (``ComfyUI-GGUF``) and loaded with the host's own
custom-node loader; the tiny Wan model is written to a GGUF file with its 2-D weights quantised to Q8_0.
Without the pack or its ``gguf`` package these tests skip and say so (``scripts/dev_setup.py`` installs
``gguf`` where the pack is present).
"""
import asyncio
import importlib.util
import logging

import numpy as np
import pytest
import torch

from tiny_models import fis, record_attention_tokens, record_fps_attention, relative_error, sample, text, tiny_wan

GGUF_PACK = "ComfyUI-GGUF"
FRAMES, SIZE = 5, 16


@pytest.fixture(scope="module")
def gguf_loader(host):
    """The ``UnetLoaderGGUF`` node class of the ComfyUI-GGUF pack in the host's custom_nodes."""
    pack = host / "custom_nodes" / GGUF_PACK
    if not pack.is_dir():
        pytest.skip(f"GGUF TESTS DID NOT RUN: no {pack} (git clone https://github.com/city96/ComfyUI-GGUF there)")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("GGUF TESTS DID NOT RUN: the 'gguf' package is missing (python scripts/dev_setup.py installs it)")
    import nodes
    assert asyncio.run(nodes.load_custom_node(str(pack))), f"ComfyUI could not load {pack}"
    return nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]


def write_gguf(state_dict: dict, path):
    """``state_dict`` as a GGUF file of architecture ``wan``: 2-D weights whose rows divide into 32-value
    blocks in Q8_0, the rest in float32."""
    import gguf
    writer = gguf.GGUFWriter(str(path), arch="wan")
    quantised = 0
    for name, tensor in state_dict.items():
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantised += 1
        else:
            writer.add_tensor(name, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return quantised


@pytest.fixture(scope="module")
def gguf_wan(gguf_loader, tmp_path_factory):
    """A tiny Wan 2.1 model through ``UnetLoaderGGUF``, from a Q8_0 GGUF file in a temporary models folder."""
    import folder_paths
    folder = tmp_path_factory.mktemp("diffusion_models")
    state_dict = {k: v.contiguous() for k, v in tiny_wan(num_layers=4).model.diffusion_model.state_dict().items()}
    assert write_gguf(state_dict, folder / "tiny_wan_q8.gguf") > 10
    folder_paths.add_model_folder_path("diffusion_models", str(folder))
    folder_paths.filename_list_cache.clear()
    return gguf_loader().load_unet("tiny_wan_q8.gguf")[0]


def latent():
    return torch.randn(1, 16, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


def test_the_gguf_model_is_quantised_and_runs(gguf_wan):
    from comfy.ldm.wan.model import WanModel
    diffusion_model = gguf_wan.model.diffusion_model
    assert isinstance(diffusion_model, WanModel)
    weight = diffusion_model.blocks[0].self_attn.q.weight
    import gguf
    assert type(weight).__name__ == "GGMLTensor" and weight.tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert torch.isfinite(sample(gguf_wan, latent(), text(), steps=2)).all()


def test_fis_on_gguf_off_is_bit_identical_and_on_computes_the_scheduled_frames(gguf_wan):
    x = latent()
    dense = sample(gguf_wan, x, text(), steps=2)
    assert torch.equal(sample(fis(gguf_wan, groups=1), x, text(), steps=2), dense)
    patched = fis(gguf_wan)                                   # auto: blocks 1-2 of 4 sparse, G=2
    blocks = patched.model.diffusion_model.blocks
    with record_attention_tokens({i: block.self_attn for i, block in enumerate(blocks)}) as calls:
        out = sample(patched, x, text(), steps=1)
    per_frame = (SIZE // 2) ** 2
    assert [(i, n // per_frame, frames) for i, n, frames in calls] == [
        (0, 5, None), (1, 3, (0, 2, 4)), (2, 2, (1, 3)), (3, 5, None)]
    assert 1e-4 < relative_error(out, sample(gguf_wan, x, text(), steps=1)) < 0.5
    assert type(blocks[1].self_attn.q.weight).__name__ == "GGMLTensor"    # the weights stay quantised


def test_fps_on_gguf_runs_its_attention(gguf_wan, caplog):
    from comfyui_fis.nodes import FPSAttention
    patched = FPSAttention().patch(gguf_wan, "fp8", "auto", 0.0, "window", "")[0]
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"), record_fps_attention() as fps_calls:
        out = sample(patched, latent(), text(), steps=1)
    assert len(fps_calls) == 4
    assert relative_error(out, sample(gguf_wan, latent(), text(), steps=1)) < 0.2
