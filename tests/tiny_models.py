"""Tiny real models, loaded through ComfyUI's own loader, their inputs, and helpers to sample and observe them.

Every model here is the host's own class (WanModel, HunyuanVideo, LTXVModel, AsymmDiTJoint) with random weights,
detected from its state dict by ComfyUI's model detection exactly as a checkpoint file would be. ``FAMILIES`` lists
each family's tiny model and inputs for the contract every family keeps (tests/test_family_contract.py).
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

#: Tokens per latent frame of every tiny family's latent below.
TOKENS_PER_FRAME = 16


def _random_weights(module: torch.nn.Module, seed: int, scale: float = 0.05) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * scale for k, v in module.state_dict().items()}


def _load(module: torch.nn.Module, seed: int):
    import comfy.sd
    model = comfy.sd.load_diffusion_model_state_dict(_random_weights(module, seed))
    assert model is not None, "ComfyUI did not recognise the generated state dict"
    return model


def tiny_wan(*, in_dim=16, out_dim=16, num_layers=6, dim=128, clip_image=False, ref_conv=False, seed=0):
    """A ComfyUI Wan model (WAN21, or WAN22 for a 48-channel latent) with ``num_layers`` blocks.

    ``in_dim=36`` makes an image-to-video model that takes [mask, image latent] by concatenation,
    ``clip_image`` adds the CLIP-vision projection of Wan 2.1 I2V, ``ref_conv`` the reference-image
    tokens that Wan prepends to the frames.
    """
    import comfy.ldm.wan.model
    import comfy.ops
    torch.manual_seed(seed)
    module = comfy.ldm.wan.model.WanModel(
        model_type="i2v" if clip_image else "t2v", dim=dim, ffn_dim=2 * dim, num_heads=dim // 128, num_layers=num_layers,
        in_dim=in_dim, out_dim=out_dim, in_dim_ref_conv=16 if ref_conv else None, operations=comfy.ops.disable_weight_init)
    return _load(module, seed)


def tiny_hunyuan_video(version="1.5", *, depth=4, single_depth=0, in_channels=None, hidden=128, seed=0):
    """A ComfyUI HunyuanVideo model: ``"1.5"`` (HunyuanVideo15: 1x1x1 patches over a 32-channel latent,
    65 input channels for the image-to-video concat, byT5 and vision tokens) or ``"1.0"`` (2x2 spatial
    patches, a 768-wide pooled vector, guidance embedding, ``single_depth`` single-stream blocks)."""
    import comfy.ops
    torch.manual_seed(seed)
    common = dict(mlp_ratio=4.0, num_heads=hidden // 128, hidden_size=hidden, depth=depth, depth_single_blocks=single_depth,
                  axes_dim=[16, 56, 56], theta=256, qkv_bias=True, meanflow=False, context_in_dim=64,
                  operations=comfy.ops.disable_weight_init)
    if version == "1.5":
        params = dict(in_channels=in_channels or 65, out_channels=32, vec_in_dim=None, patch_size=[1, 1, 1],
                      guidance_embed=False, byt5=True, use_cond_type_embedding=True, vision_in_dim=1152, meanflow_sum=True)
    else:
        params = dict(in_channels=in_channels or 16, out_channels=16, vec_in_dim=768, patch_size=[1, 2, 2],
                      guidance_embed=True, byt5=False, use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False)
    if version == "1.5" and "use_cond_type_embedding" not in hunyuan_video_params():
        pytest.skip("this ComfyUI has no HunyuanVideo 1.5")
    return _load(hunyuan_video_module(**common, **params), seed)


def hunyuan_video_params() -> set:
    """The parameters the host's HunyuanVideo takes (older hosts lack those of newer models)."""
    import comfy.ldm.hunyuan_video.model
    return {field.name for field in dataclasses.fields(comfy.ldm.hunyuan_video.model.HunyuanVideoParams)}


def hunyuan_video_module(**params):
    """The host's HunyuanVideo module with ``params``, less those the host does not have (given as off)."""
    import comfy.ldm.hunyuan_video.model
    known = hunyuan_video_params() | {"operations", "dtype", "device", "image_model", "final_layer"}
    return comfy.ldm.hunyuan_video.model.HunyuanVideo(**{k: v for k, v in params.items() if k in known})


def hunyuan_text(seed=1, tokens=8, byt5_tokens=0, **extra):
    """HunyuanVideo conditioning: text embedding (64 wide for the tiny models), pooled output, optional byT5."""
    generator = torch.Generator().manual_seed(seed)
    options = {"pooled_output": torch.randn(1, 768, generator=generator), **extra}
    if byt5_tokens:
        options["conditioning_byt5small"] = torch.randn(1, byt5_tokens, 1472, generator=generator)
    return [[torch.randn(1, tokens, 64, generator=generator), options]]


def text(seed=1, tokens=8, dim=4096, **extra):
    """A conditioning list with a random text embedding; ``extra`` goes into its options dict."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, dim, generator=generator), dict(extra)]]


def sample(model, latent, positive, negative=None, *, steps=4, cfg=1.0, seed=0, noise_mask=None, sampler="euler"):
    """Sample with ComfyUI's own KSampler path (``nodes.common_ksampler``)."""
    import nodes
    latent_dict = {"samples": latent}
    if noise_mask is not None:
        latent_dict["noise_mask"] = noise_mask
    negative = positive if negative is None else negative
    return nodes.common_ksampler(model, seed, steps, cfg, sampler, "simple", positive, negative, latent_dict)[0]["samples"]


def node_defaults() -> dict:
    """The FIS node's widget defaults, with ``quality`` set to ``custom`` so that the widgets a test gives apply."""
    from comfyui_fis.nodes import FrameInterleavedSparsity
    required = FrameInterleavedSparsity.INPUT_TYPES()["required"]
    return {name: spec[1]["default"] for name, spec in required.items() if name != "model"} | {"quality": "custom"}


def fis(model, **widgets):
    """``model`` through the FIS node: its widget defaults, overridden by ``widgets``."""
    from comfyui_fis.nodes import FrameInterleavedSparsity
    return FrameInterleavedSparsity().patch(model, **(node_defaults() | widgets))[0]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@contextmanager
def record_attention_tokens(attention_modules):
    """Record, for each call of each module in ``attention_modules`` (block index -> self-attention module),
    the number of tokens it got and the frames FIS told it about: a list of (block, tokens, frames)."""
    from comfyui_fis.nodes.patching.call_state import computed_frames
    calls = []
    handles = []
    for index, module in attention_modules.items():
        def hook(module, args, kwargs, index=index):
            tokens = (args[0] if args else kwargs.get("x", kwargs.get("img"))).shape[1]
            frames = computed_frames(kwargs.get("transformer_options", {}))
            calls.append((index, tokens, frames))
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_fps_attention():
    """Record the frame grid of every attention that FPS attention computes: a list that fills while sampling
    (a pass-through spy on ``fis_core.fps.attention.fps_attention``, which the node's op runs). The spy goes into
    every loaded copy of that module: the op is registered once per process, by whichever copy came first (a test
    that loads the pack the way ComfyUI does imports a second copy under the folder's name)."""
    import sys
    import comfyui_fis.fis_core.fps.attention  # noqa: F401  (at least this copy)
    copies = [m for name, m in list(sys.modules.items()) if name.endswith("fis_core.fps.attention")]
    grids = []
    originals = [m.fps_attention for m in copies]

    def spy_on(computed):
        def spy(q, k, v, grid, *args, **kwargs):
            grids.append(tuple(grid))
            return computed(q, k, v, grid, *args, **kwargs)
        return spy
    for module, computed in zip(copies, originals):
        module.fps_attention = spy_on(computed)
    try:
        yield grids
    finally:
        for module, computed in zip(copies, originals):
            module.fps_attention = computed


def block_output_recorder(model):
    """A clone of a Wan ``model`` (with the FIS node's patches, when it has them) that records every block's output
    per model call, and the record: a list (one entry per model call) of lists of [B, L, C] tensors, one per block.
    Each block's ``patches_replace["dit"]`` entry (FIS's, else the block itself) is wrapped in one that records it."""
    record = []
    recorded = model.clone()
    replaced = recorded.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for i in range(len(recorded.model.diffusion_model.blocks)):
        def recording(args, extra, i=i, inner=replaced.get(("double_block", i))):
            out = inner(args, extra) if inner is not None else extra["original_block"](args)
            if i == 0:
                record.append([])
            record[-1].append(out["img"].clone())
            return out
        recorded.set_model_patch_replace(recording, "dit", "double_block", i)
    return recorded, record


def tiny_ltxv(*, layers=4, head_dim=4, seed=0):
    """A ComfyUI LTX-Video model (128-channel latent, 1x1x1 patches, the 32 heads detection assumes) with
    ``layers`` blocks."""
    import comfy.ldm.lightricks.model
    import comfy.ops
    torch.manual_seed(seed)
    module = comfy.ldm.lightricks.model.LTXVModel(
        cross_attention_dim=32 * head_dim, attention_head_dim=head_dim, num_layers=layers,
        operations=comfy.ops.disable_weight_init)
    return _load(module, seed)


def tiny_mochi(*, depth=4, seed=0):
    """A ComfyUI Mochi 1 model (AsymmDiTJoint: 12-channel latent, 2x2 patches, 2 heads, 64-wide text) with
    ``depth`` blocks.

    Detection fixes Mochi's full 10B shape, so this shrinks the config that detection gives and then does what
    ``load_diffusion_model_state_dict`` does after detecting: the host's model config builds the model, which
    loads the generated weights. (The host asserts a 12288-wide MLP, hence the odd ``mlp_ratio_x``.)
    """
    import comfy.ldm.genmo.joint_model.asymm_models_joint
    import comfy.model_detection
    import comfy.model_management
    import comfy.model_patcher
    import comfy.ops
    config = comfy.model_detection.detect_unet_config({"t5_yproj.weight": None}, "")
    config.update(depth=depth, num_heads=2, hidden_size_x=128, hidden_size_y=64, mlp_ratio_x=12288 / 128, t5_feat_dim=64)
    torch.manual_seed(seed)
    module = comfy.ldm.genmo.joint_model.asymm_models_joint.AsymmDiTJoint(**config, operations=comfy.ops.disable_weight_init)
    state_dict = _random_weights(module, seed)
    model_config = comfy.model_detection.model_config_from_unet_config(config, state_dict)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model(state_dict, "")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                               offload_device=comfy.model_management.unet_offload_device())
    if hasattr(patcher, "is_dynamic"):   # hosts with dynamic model loading load the weights by assignment
        model.load_model_weights(state_dict, "", assign=patcher.is_dynamic())
    else:
        model.load_model_weights(state_dict, "")
    return patcher


def wan_latent(frames=9, batch=1, channels=16, seed=3):
    """8x8 (Wan's patches are 2x2)."""
    return torch.randn(batch, channels, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


def wan_attention(model):
    return {i: block.self_attn for i, block in enumerate(model.model.diffusion_model.blocks)}


def hv15_latent(frames=9, batch=1, seed=3):
    """4x4 (HunyuanVideo 1.5's patches are 1x1x1)."""
    return torch.randn(batch, 32, frames, 4, 4, generator=torch.Generator().manual_seed(seed))


def hunyuan_blocks(model):
    """HunyuanVideo's blocks as ``sparse_blocks`` numbers them: double blocks, then single blocks."""
    dm = model.model.diffusion_model
    return dict(enumerate(list(dm.double_blocks) + list(dm.single_blocks)))


def ltxv_text(seed=1, tokens=8, **extra):
    """LTXV conditioning: a T5-XXL embedding (4096 wide) and its attention mask."""
    return text(seed=seed, tokens=tokens, dim=4096, attention_mask=torch.ones(1, tokens, dtype=torch.long), **extra)


def ltxv_latent(frames=9, batch=1, seed=3):
    """4x4 (LTXV's patches are 1x1x1)."""
    return torch.randn(batch, 128, frames, 4, 4, generator=torch.Generator().manual_seed(seed))


def ltxv_attention(model):
    return {i: block.attn1 for i, block in enumerate(model.model.diffusion_model.transformer_blocks)}


MOCHI_TEXT = 8


def mochi_text(seed=1):
    """Mochi conditioning: a text embedding (64 wide for the tiny model) and its attention mask."""
    return text(seed=seed, tokens=MOCHI_TEXT, dim=64, attention_mask=torch.ones(1, MOCHI_TEXT, dtype=torch.long))


def mochi_latent(frames=9, batch=1, seed=3):
    """8x8 (Mochi's patches are 2x2)."""
    return torch.randn(batch, 12, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


def mochi_attention(model):
    return {i: block.attn for i, block in enumerate(model.model.diffusion_model.blocks)}


@dataclass(frozen=True)
class TinyFamily:
    """One family's tiny model (6 blocks) and its inputs, as the family contract uses them."""

    name: str
    build: Callable              # () -> the model
    latent: Callable             # (frames=9, batch=1) -> a latent of TOKENS_PER_FRAME tokens a frame
    cond: Callable               # (seed=1) -> conditioning
    attention: Callable          # model -> {block index: the module whose input is the block's frame tokens}
    tolerance: float             # bound of the defaults' relative error against dense (CFG 3, a batch of two)


FAMILIES = (
    TinyFamily("wan", lambda: tiny_wan(num_layers=6), wan_latent, text, wan_attention, 0.1),
    TinyFamily("hunyuan_video_15", lambda: tiny_hunyuan_video("1.5", depth=6), hv15_latent,
               lambda seed=1: hunyuan_text(seed=seed, byt5_tokens=4), hunyuan_blocks, 0.15),
    TinyFamily("ltxv", lambda: tiny_ltxv(layers=6), ltxv_latent, ltxv_text, ltxv_attention, 0.1),
    # Mochi's blocks norm each token's update and have no shift modulation or MLP bias, so in a random model on
    # noise neighbouring frames share little of their updates, and interpolation recovers less of a skipped
    # frame's update than in the tiny Wan (whose updates share their biases): the deviation is about 0.23.
    TinyFamily("mochi", lambda: tiny_mochi(depth=6), mochi_latent, mochi_text, mochi_attention, 0.35),
)
