"""FIS together with what users stack: other block replacements, a second FIS, weight patches (how LoRA
applies), EasyCache, attention overrides, unsupported models, and ComfyUI's own custom-node loader."""
import asyncio
import logging

import pytest
import torch

from host_path import PACK_ROOT
from limits import refused_at_once
from tiny_models import fis, record_attention_tokens, relative_error, sample, text, tiny_wan

T = 16


@pytest.fixture(scope="module")
def wan(host):
    return tiny_wan(num_layers=6)


def latent(frames=9):
    return torch.randn(1, 16, frames, 8, 8, generator=torch.Generator().manual_seed(3))


def attention(model):
    return {i: block.self_attn for i, block in enumerate(model.model.diffusion_model.blocks)}


def test_another_nodes_block_replacement_is_wrapped_not_overwritten(wan):
    seen = []

    def other_node(args, extra):   # e.g. a node that edits block 2's output
        seen.append(args["img"].shape[1])
        out = extra["original_block"](args)
        return {"img": out["img"] * 1.01}

    other = wan.clone()
    other.set_model_patch_replace(other_node, "dit", "double_block", 2)
    x = latent()
    with_other = sample(fis(other), x, text(), steps=1)
    assert seen == [4 * T]    # it ran, inside FIS, on block 2's frames (the second sparse block: group 1)
    assert relative_error(with_other, sample(fis(wan), x, text(), steps=1)) > 1e-4


def test_a_second_fis_replaces_the_first(wan):
    twice = fis(fis(wan, groups=2), groups=3)
    assert len(twice.wrappers["apply_model"]) == 1
    with record_attention_tokens(attention(wan)) as calls:
        sample(twice, latent(), text(), steps=1)
    assert [t // T for _, t, _ in calls] == [9, 3, 3, 3, 3, 9]
    off = fis(fis(wan), groups=1)
    assert "apply_model" not in off.wrappers or not off.wrappers["apply_model"]
    assert torch.equal(sample(off, latent(), text(), steps=1), sample(wan, latent(), text(), steps=1))


def test_weight_patches_apply_inside_sparse_blocks(wan):
    """ComfyUI applies LoRA by weight patches on the model; FIS must run the patched weights."""
    lora_like = wan.clone()
    key = "diffusion_model.blocks.2.ffn.0.weight"
    weight = wan.model.state_dict()[key]
    lora_like.add_patches({key: (torch.randn_like(weight) * 0.5,)}, strength_patch=1.0)
    x = latent()
    plain = sample(fis(wan), x, text(), steps=1)
    patched = sample(fis(lora_like), x, text(), steps=1)
    assert relative_error(patched, plain) > 1e-3
    assert torch.equal(sample(fis(wan), x, text(), steps=1), plain)   # the patch is gone again


def test_easycache_and_fis_stack_and_the_log_says_easycache_adds_little(wan, caplog):
    """They run together (FIS sparse at every step EasyCache runs), and one warning says what the quality study
    measured: over FIS's rotating groups EasyCache finds few steps or none to skip. FIS alone does not warn."""
    from comfy_extras.nodes_easycache import EasyCacheNode
    cached = EasyCacheNode.execute(wan, 0.2, 0.0, 1.0, False)[0]
    both = fis(cached)
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        with record_attention_tokens({1: wan.model.diffusion_model.blocks[1].self_attn}) as calls:
            out = sample(both, latent(), text(), steps=6)
        sample(both, latent(), text(), steps=2)
        sample(fis(wan), latent(), text(), steps=2)
    assert torch.isfinite(out).all()
    assert calls and all(t in (5 * T, 4 * T) for _, t, _ in calls)   # every step it ran, block 1 ran sparse
    assert len(calls) <= 6
    assert caplog.text.count("EasyCache (or LazyCache) is on this model too") == 1


def test_attention_override_sees_the_sparse_frames(wan):
    shapes = []

    def override(func, *args, **kwargs):
        options = kwargs.get("transformer_options", {})
        if args[1].shape[1] != 8:   # self-attention: keys are not the 8 text tokens
            grid = options.get("grid_sizes")   # the token grid, where the host gives it to the attention
            shapes.append((args[0].shape[1], options.get("fis_frames"), None if grid is None else tuple(grid)))
        return func(*args, **kwargs)

    overridden = wan.clone()
    overridden.model_options["transformer_options"]["optimized_attention_override"] = override
    sample(fis(overridden, sparse_blocks="1"), latent(), text(), steps=1)
    grid = shapes[0][2]
    assert grid in (None, (9, 4, 4))
    dense = (9 * T, None, grid)
    assert shapes == [dense, (5 * T, (0, 2, 4, 6, 8), grid and (5, 4, 4))] + [dense] * 4


def test_fis_stays_on_through_the_nodes_after_it(wan):
    """Load Diffusion Model → FIS → (LoRA, ModelSamplingSD3, ...) → KSampler: each node after FIS patches a clone."""
    after = fis(wan).clone().clone()
    with record_attention_tokens(attention(wan)) as calls:
        sample(after, latent(), text(), steps=1)
    assert [t // T for _, t, _ in calls] == [9, 5, 4, 5, 4, 9]


@pytest.fixture(scope="module")
def image_model(host):
    """HunyuanImage 2.1: an image model, not video, which FIS does not support."""
    import comfy.ops
    from tiny_models import _load, hunyuan_video_module
    torch.manual_seed(0)
    module = hunyuan_video_module(
        in_channels=64, out_channels=64, vec_in_dim=None, context_in_dim=64, hidden_size=128, mlp_ratio=4.0,
        num_heads=1, depth=2, depth_single_blocks=0, axes_dim=[64, 64], theta=256, patch_size=[1, 1], qkv_bias=True,
        guidance_embed=False, byt5=False, meanflow=False, use_cond_type_embedding=False, vision_in_dim=None,
        meanflow_sum=False, operations=comfy.ops.disable_weight_init)
    return _load(module, 0)


def test_unsupported_model_runs_dense_with_a_warning(image_model, caplog):
    with caplog.at_level(logging.WARNING):
        patched = fis(image_model)
    assert "is not a supported model" in caplog.text and "runs dense" in caplog.text
    x = torch.randn(1, 64, 8, 8)
    cond = [[torch.randn(1, 8, 64), {"pooled_output": torch.randn(1, 768)}]]
    assert torch.equal(sample(patched, x, cond, steps=1), sample(image_model, x, cond, steps=1))


def test_an_unsupported_model_still_bounds_the_block_numbers(image_model):
    error = refused_at_once(lambda: fis(image_model, sparse_blocks="0-99999999999"))
    assert error == "sparse_blocks: block 99999999999 is out of range; block numbers go up to 4095"


def test_comfyui_loads_the_pack_as_a_custom_node(host):
    import nodes
    assert asyncio.run(nodes.load_custom_node(str(PACK_ROOT)))
    assert "FrameInterleavedSparsity" in nodes.NODE_CLASS_MAPPINGS
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["FrameInterleavedSparsity"] == "Frame Interleaved Sparsity (FIS)"
    from comfyui_fis.nodes.ui.fis_node_v3 import dynamic_combo_available
    node_class = nodes.NODE_CLASS_MAPPINGS["FrameInterleavedSparsity"]
    inputs = node_class.INPUT_TYPES()["required"]
    if dynamic_combo_available():    # the V3 node: the widgets a preset sets live in quality's custom option
        custom = next(o for o in inputs["quality"][1]["options"] if o["key"] == "custom")["inputs"]["optional"]
        assert list(inputs) == ["model", "quality", "pattern", "anchor_frames"]
        inputs = {**inputs, **custom}
    assert sorted(inputs) == sorted(["model", "quality", "sparse_blocks", "groups", "pattern", "interpolation",
                                     "anchor_frames", "start_percent", "end_percent"])
    assert all("tooltip" in options for _, options in inputs.values())


def test_fis_runs_inside_wan_context_windows(wan):
    """ComfyUI's Wan Context Windows (long videos in overlapping windows) calls the model on each window's frames:
    FIS runs on every window as on a shorter video (its sparse block computes about half of the window's frames) and
    stays near the same windows run dense."""
    import inspect

    import comfy.context_windows
    from comfy_extras.nodes_context_windows import WanContextWindowsManualNode
    # the plainest windows: without FreeNoise's noise shuffling, an option newer hosts have
    newer = {"freenoise": False} if "freenoise" in inspect.signature(WanContextWindowsManualNode.execute).parameters else {}
    windowed = WanContextWindowsManualNode.execute(
        wan, context_length=21, context_overlap=8, context_schedule=comfy.context_windows.ContextSchedules.UNIFORM_STANDARD,
        context_stride=1, closed_loop=False, fuse_method=comfy.context_windows.ContextFuseMethods.PYRAMID, **newer)[0]
    x = latent(13)
    with record_attention_tokens({1: wan.model.diffusion_model.blocks[1].self_attn}) as calls:
        out = sample(fis(windowed), x, text(), steps=2)
    computed = [tokens // T for _, tokens, _ in calls]
    # 2 steps x at least 2 windows of 6 latent frames (7 with the causal fix frame of a later window): 3-4 computed
    assert len(computed) >= 4 and set(computed) <= {3, 4}, computed
    dense = sample(windowed, x, text(), steps=2)
    assert torch.isfinite(out).all() and 0 < relative_error(out, dense) < 0.5
