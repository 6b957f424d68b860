"""The ComfyUI side: find and boot the host, load the shipped checkpoint (or another of ``quality.train``) with its
loader, apply FIS or EasyCache with their node classes, and sample with its KSampler path at the clip size the
checkpoint records (its :class:`~quality.model.Shape`, carried by the loaded model: :func:`shape_of`).

The host is found by ``scripts/host_path.py``, as the tests find it: ``$COMFYUI_PATH``, else the ComfyUI this
pack sits in (``custom_nodes/<pack>``), else ``~/ComfyUI``.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from . import latent, scenes, text
from .model import BASE_FILE, FEW_STEPS, LORA_FILE, MODELS_DIR, SHIFT, Shape, config_of, read_shape

from host_path import PACK_ROOT, find_comfyui  # on sys.path: see quality/__init__.py

SAMPLER, SCHEDULER = "euler", "simple"
#: the ModelPatcher attachment that carries the loaded checkpoint's shape through every clone (nodes, LoRA)
SHAPE_ATTACHMENT = "fis_quality_shape"


def comfyui_root() -> Path:
    """The ComfyUI checkout to use, put on ``sys.path``; a RuntimeError says how to point to one."""
    root = find_comfyui()
    if root is None:
        raise RuntimeError("No ComfyUI found: set COMFYUI_PATH to a ComfyUI checkout, install this pack in "
                           "ComfyUI/custom_nodes, or put ComfyUI in ~/ComfyUI.")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def boot(cpu: bool = True) -> Path:
    """Import the host (on the CPU unless ``cpu`` is False); this pack is ``comfyui_fis`` already (see
    :mod:`quality`)."""
    root = comfyui_root()
    import comfy.cli_args
    if cpu:
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (picks the device now)
    return root


def boot_study(cpu: bool = True):
    """Boot the host for a study (see :func:`boot`) with ComfyUI's progress bars off; returns ``log(message)``,
    which prints the message after the seconds since."""
    boot(cpu)
    import comfy.utils
    comfy.utils.PROGRESS_BAR_ENABLED = False
    started = time.monotonic()
    return lambda message: print(f"[{time.monotonic() - started:6.0f} s] {message}", flush=True)


def pytorch_attention(func, q, k, v, *args, **kwargs):
    """An ``optimized_attention_override``: torch's scaled-dot-product attention (ComfyUI's default on
    NVIDIA; on the CPU it is several times faster than the sub-quadratic default). Under autocast in
    training, q and k (after an fp32 norm) and v (a bf16 projection) can differ in dtype; all three
    then take the lowest precision among them."""
    from comfy.ldm.modules.attention import attention_pytorch
    if len({q.dtype, k.dtype, v.dtype}) > 1:
        low = min((q.dtype, k.dtype, v.dtype), key=lambda d: torch.finfo(d).bits)
        q, k, v = q.to(low), k.to(low), v.to(low)
    return attention_pytorch(q, k, v, *args, **kwargs)


def load_model(steps: int, models_dir: Path = MODELS_DIR):
    """The model in ``models_dir`` (the shipped one by default) as a ComfyUI ModelPatcher, ready for ``steps``-step
    sampling, carrying the shape its metadata records (:func:`shape_of`).

    ``comfy.sd.load_diffusion_model`` loads the checkpoint (fp32), ``ModelSamplingSD3`` sets the flow
    shift, and for ``steps`` == 4 ComfyUI's LoRA loader adds the 4-step LoRA (as a 4-step Lightning
    LoRA is used with Wan). Attention is torch's SDPA on every device.
    """
    import comfy.sd
    import comfy.utils
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    checkpoint = Path(models_dir) / BASE_FILE
    shape = read_shape(checkpoint)
    model = comfy.sd.load_diffusion_model(str(checkpoint), model_options={"dtype": torch.float32})
    loaded = config_of(model.model.diffusion_model)
    if loaded != shape.config:
        raise ValueError(f"{checkpoint}: its metadata records the model {shape.config}, its weights are {loaded}")
    model.set_attachments(SHAPE_ATTACHMENT, shape)
    model = ModelSamplingSD3().patch(model, SHIFT)[0]
    if steps == FEW_STEPS:
        lora = comfy.utils.load_torch_file(str(Path(models_dir) / LORA_FILE))
        model = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0.0)[0]
    model.model_options["transformer_options"]["optimized_attention_override"] = pytorch_attention
    return model


def shape_of(model) -> Shape:
    """The shape of the checkpoint ``model`` (a ModelPatcher of :func:`load_model`, or a clone of one) was loaded from."""
    shape = model.get_attachment(SHAPE_ATTACHMENT)
    if shape is None:
        raise ValueError("this model was not loaded by quality.host.load_model: its clip shape is unknown")
    return shape


def conditioning(scene_list: list[scenes.Scene]) -> list:
    """ComfyUI CONDITIONING for a batch of scenes: their text-like tokens, as a text encoder node gives."""
    return [[text.embed(scene_list), {}]]


def sample(model, scene_list: list[scenes.Scene], seed: int, steps: int, batch_index: list[int] | None = None) -> torch.Tensor:
    """Clips of ``scene_list`` (one per batch entry) sampled with ComfyUI's KSampler path (euler, simple,
    cfg 1) from an empty latent of the model's shape; returns latents in the model's space [B, 16, F, size / 2,
    size / 2] (see :mod:`quality.latent`).

    ``batch_index`` gives each entry its noise as ComfyUI does for a batch: entry i gets the i-th draw
    from ``seed``, so one clip sampled alone with ``batch_index=[i]`` gets the same noise as in a batch.
    """
    import nodes
    shape = shape_of(model)
    empty = {"samples": torch.zeros(len(scene_list), latent.CHANNELS, shape.frames, shape.latent_size, shape.latent_size)}
    if batch_index is not None:
        empty["batch_index"] = list(batch_index)
    cond = conditioning(scene_list)
    out = nodes.common_ksampler(model, seed, steps, 1.0, SAMPLER, SCHEDULER, cond, cond, empty)[0]["samples"]
    return model.model.process_latent_in(out.float())


def with_fis(model, sparse_blocks="auto", groups=2, pattern="interleave", interpolation="corrected", anchor_frames="auto",
             start_percent=0.0, end_percent=1.0, quality="custom", **overrides):
    """``model`` through this pack's FIS node (``quality="custom"``: the widgets as given). ``overrides`` set
    settings no widget offers, for the study: ``rotate=False`` keeps each block's group fixed across steps (the
    behaviour before rotation), ``dense_final_step=True`` runs the final step dense with any blocks."""
    from comfyui_fis.nodes.ui.fis_node import FrameInterleavedSparsity
    from comfyui_fis.nodes.patching.fis import apply_fis
    if overrides:
        return apply_fis(model, resolved_settings(model, sparse_blocks, groups, pattern, interpolation, anchor_frames,
                                                  start_percent, end_percent, quality, **overrides))
    return FrameInterleavedSparsity().patch(model, quality, sparse_blocks, groups, pattern, interpolation, anchor_frames,
                                            start_percent, end_percent)[0]


def with_fps(model, precision="fp8", tile="auto", sparsity=0.5, pattern="window", dense_steps="40-60"):
    """``model`` through this pack's FPS attention node (on the CPU: its PyTorch reference path)."""
    from comfyui_fis.nodes.ui.fps_node import FPSAttention
    return FPSAttention().patch(model, precision, tile, sparsity, pattern, dense_steps)[0]


def _input_copy(executor, x, *args, **kwargs):
    """Hand the diffusion model a copy of its input (see :func:`with_easycache`)."""
    return executor(x.clone(), *args, **kwargs)


def with_easycache(model, reuse_threshold: float, start_percent: float = 0.15, end_percent: float = 0.95):
    """``model`` through ComfyUI's own EasyCache node (defaults: the node's).

    On a step it skips, EasyCache adds its cached update into the diffusion model's input tensor in
    place and returns that tensor. With a bf16/fp16 model that tensor is a cast copy; with this fp32
    model it is the very tensor ComfyUI then computes the denoised latent from, so every skipped step
    would be corrupted (an aliasing bug of the host, not of the cache idea). A wrapper outside EasyCache
    gives it a copy, as the cast does in usual workflows.
    """
    import comfy.patcher_extension
    from comfy_extras.nodes_easycache import EasyCacheNode
    model = model.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "fis_quality_input_copy", _input_copy)
    return EasyCacheNode.execute(model, reuse_threshold, start_percent, end_percent, False)[0]


def resolved_settings(model, sparse_blocks="auto", groups=2, pattern="interleave", interpolation="corrected",
                      anchor_frames="auto", start_percent=0.0, end_percent=1.0, quality="custom", **overrides):
    """The settings :func:`with_fis` makes of these widgets and ``overrides`` on ``model`` (presets and ``auto``
    resolved)."""
    from dataclasses import replace

    from comfyui_fis.nodes.ui.fis_node import settings_from_widgets
    settings = settings_from_widgets(model, sparse_blocks, groups, pattern, interpolation, anchor_frames,
                                     start_percent, end_percent, quality)
    return replace(settings, **overrides)


class BlockWork:
    """The transformer-block work done while counting: model calls that ran the blocks, and block FLOPs
    and image tokens summed over calls, blocks and batch entries (see :func:`quality.metrics.block_flops`).
    With a ``correction`` form, a sparse block's corrected interpolation is counted too
    (:func:`comfyui_fis.fis_core.correction_flops`), in ``flops`` and apart in ``correction_flops``; ``frames`` are
    the clips' latent frames."""

    def __init__(self, diffusion_model, frames: int, correction=None):
        self.dim, self.ffn_dim = diffusion_model.dim, diffusion_model.ffn_dim
        self.frames, self.correction = frames, correction
        self.runs, self.flops, self.tokens, self.correction_flops = 0, 0.0, 0, 0.0

    def record(self, block_index: int, x: torch.Tensor, context: torch.Tensor, options: dict):
        from comfyui_fis.fis_core import correction_flops, fit_sources
        from comfyui_fis.nodes.patching.call_state import computed_frames

        from .metrics import block_flops
        batch, tokens = x.shape[0], x.shape[1]
        self.runs += block_index == 0
        self.flops += batch * block_flops(tokens, self.dim, self.ffn_dim, context.shape[1])
        self.tokens += batch * tokens
        computed = computed_frames(options)
        if self.correction is not None and computed is not None:
            per_frame = tokens // len(computed)
            fit = len(fit_sources(tuple(computed))[0])
            extra = batch * correction_flops(fit, self.frames - len(computed), per_frame, self.dim, self.correction)
            self.flops += extra
            self.correction_flops += extra


@contextmanager
def count_block_work(model, correction=None):
    """Count what the transformer blocks of ``model`` really compute (FIS's sparse blocks take fewer tokens,
    EasyCache's skipped steps run none), and with a ``correction`` form FIS's correction: yields a
    :class:`BlockWork` that fills while sampling."""
    diffusion_model = model.model.diffusion_model
    work = BlockWork(diffusion_model, shape_of(model).frames, correction)
    handles = [block.register_forward_pre_hook(
        lambda module, args, kwargs, i=i: work.record(i, kwargs.get("x", args[0] if args else None), kwargs["context"],
                                                      kwargs.get("transformer_options") or {}),
        with_kwargs=True) for i, block in enumerate(diffusion_model.blocks)]
    try:
        yield work
    finally:
        for handle in handles:
            handle.remove()
