"""Applies FPS attention to a ComfyUI ModelPatcher through ``transformer_options["optimized_attention_override"]``.

The host calls the override for every attention with the original function. :class:`FpsOverride` takes
the video self-attention and passes everything else (text and image cross-attention, masked attention) to
the override it replaced, or the original function. The ``APPLY_MODEL`` wrapper records the latent's frame
grid of each model call; the family adapter turns it into the grid an attention sees
(:meth:`~..families.FamilyAdapter.attention_grid`: inside FIS's sparse blocks, only the frames the block computes)
and the tokens in front of the frames (:meth:`~..families.FamilyAdapter.attention_prefix`: a fixed number, a
reference image kept like the first frame, or, where the family puts text first, all tokens beyond the grid, which
become tiles every query attends to; attention with a text mask, a padded prompt, runs the original attention).

The tiles follow FIS in either order. Given one rank's chunk of a sequence-parallel (xFuser Ulysses) self-attention,
it runs the Ulysses all-to-all itself and tiles the grid that attention sees (:mod:`.sequence_parallel`). The same wrapper marks the model calls whose sigma lies in
``dense_steps``; they run exact.

Dense FPS (sparsity 0) runs FPS's FP8 kernel only over SDPA: FlashAttention-3 (faster and more accurate) or the
host's INT8 attention (slower, but 4-5x more accurate) takes those calls where installed, said once in the log
(:mod:`.dense_attention`, measured by ``bench/attention.py``).
"""
from __future__ import annotations

import logging
import math
from typing import NamedTuple

import comfy.patcher_extension

from ...fis_core.fps import SHAPES, FpsSettings, fps_attention_op, in_ranges, triton_reason
from ..families import FPS_FAMILIES, FamilyAdapter, FrameGrid, find_family, named
from ..log import LOG, SayOnce
from .call_state import FPS_CALL, SharedByClones
from .dense_attention import dense_route
from .sequence_parallel import current_shard, ulysses_attention

WRAPPER_KEY = "fps_attention"
#: the model keyword argument that carries the FPS state of a call (see ``apply_model_wrapper``)
CALL_KWARG = "fps_call"

class FpsCall(NamedTuple):
    """FPS state of one model call: whether it lies in ``dense_steps``, and the latent's frame grid."""

    exact: bool
    grid: FrameGrid


class FpsOverride(SharedByClones):
    """The ``optimized_attention_override`` of a patched model; ``previous`` is the override it replaced."""

    def __init__(self, settings: FpsSettings, dense_ranges, family: FamilyAdapter, previous=None):
        self.settings = settings
        self.family = family
        self.dense_ranges = dense_ranges
        self.previous = previous
        self.say_once = SayOnce("FPS attention", logging.INFO)

    def passthrough(self, func, *args, **kwargs):
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def __call__(self, func, q, k, v, heads, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        call = FPS_CALL.get(self)   # None outside this model's calls: no grid, the original attention
        grid = None if call is None else self.family.attention_grid(options, call.grid)
        skip_reshape = kwargs.get("skip_reshape", False)
        token_axis = 2 if skip_reshape else 1
        self_attention = q.shape[token_axis] == k.shape[token_axis] == v.shape[token_axis] and not args
        if self.settings.exact or call is None or call.exact or grid is None or not self_attention:
            return self.passthrough(func, q, k, v, heads, *args, **kwargs)
        if kwargs.get("mask") is not None:
            if self.family.record.text_first:
                self.say_once("mask", "attention with a text mask (a padded prompt) runs the original attention")
            return self.passthrough(func, q, k, v, heads, *args, **kwargs)
        # at sparsity 0, FlashAttention-3 or the host's INT8 attention where installed; an attention override
        # underneath FPS is not taken for one: it may be anything (the lab's own SDPA override, say)
        route = dense_route(q.device, q.dtype) if self.settings.sparsity == 0.0 else None
        if route is not None:
            self.say_once("route", f"dense FPS attention runs {route.name} attention: measured faster, or more "
                                   f"accurate, than FPS's FP8 kernel on dense attention (README, 'Against the attention "
                                   f"you run'); FPS's kernel runs where tiles are skipped (sparsity > 0)")
            return route.attention(q, k, v, heads, *args, **kwargs)
        tokens, video = q.shape[token_axis], math.prod(grid)
        prefix = self.family.attention_prefix(tokens, video, call.grid)
        if prefix is None:                                 # no video here (text alone: a token refiner)
            return self.passthrough(func, q, k, v, heads, *args, **kwargs)
        shard = None
        if tokens != prefix + video:                       # one rank's chunk of a sequence-parallel attention?
            shard = current_shard() if tokens < prefix + video else None
            if shard is None or not shard.ulysses or not shard.holds(tokens, prefix + video):
                self.say_once(f"fit{tokens}", f"self-attention of {tokens} tokens does not fit the frame grid {grid}; "
                                              f"it runs the original attention", logging.WARNING)
                return self.passthrough(func, q, k, v, heads, *args, **kwargs)
            self.say_once("ulysses", f"sequence-parallel attention over {shard.world} ranks: tiles on the whole grid {grid}")
        if skip_reshape:                                   # [B, H, L, D]
            q4, k4, v4 = (x.transpose(1, 2) for x in (q, k, v))
        else:                                              # [B, L, H * D]
            q4, k4, v4 = (x.view(x.shape[0], x.shape[1], heads, -1) for x in (q, k, v))
        scale = kwargs.get("scale")

        def attend(q4, k4, v4):
            return fps_attention_op(q4, k4, v4, grid, self.settings, scale=scale, prefix=prefix)
        # under Ulysses: all-to-all to all tokens of heads / W heads, FPS on the grid that attention sees, and back
        out = attend(q4, k4, v4) if shard is None else ulysses_attention(q4, k4, v4, shard, prefix + video, attend)
        if kwargs.get("skip_output_reshape"):
            return out.transpose(1, 2)
        return out.reshape(out.shape[0], out.shape[1], -1)

    def _say_backend(self, device, grid):
        """Log once which path the video self-attention takes, with the tile and the sparsity."""
        if "backend" in self.say_once:
            return
        reason = triton_reason(device, self.settings.precision)
        layout = self.settings.layout(grid)
        what = (f"{self.settings.precision}, tile {layout.describe()}, "
                f"{100 * self.settings.sparsity:.0f}% of tile pairs skipped ({self.settings.pattern})")
        if reason is None:
            self.say_once("backend", f"video self-attention runs the Triton kernel: {what}")
        else:
            self.say_once("backend", f"video self-attention runs the PyTorch reference path ({reason}; it saves no "
                                     f"time, it only reproduces the kernel's arithmetic): {what}", logging.WARNING)

    def apply_model_wrapper(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        """Publishes the :class:`FpsCall` of each model call in :data:`~.call_state.FPS_CALL` for the override:
        whether it lies in ``dense_steps``, and the latent's frame grid.

        ComfyUI's ``TorchCompileModel`` drops every compile guard on ``transformer_options``. The call state
        and the model's inputs are guarded, so the FPS state also goes to the model as a keyword argument (the
        models FPS takes pass unknown ones on): a compiled model recompiles when FPS turns on, off or exact,
        instead of reusing a graph traced without it."""
        sampling = executor.class_obj.model_sampling
        exact = in_ranges(float(t.max()), self.dense_ranges, sampling.percent_to_sigma)
        grid = self.family.frame_grid(executor.class_obj.diffusion_model, x, kwargs)
        kwargs = {**kwargs, CALL_KWARG: (exact, *self.signature)}
        if not exact:
            self._say_backend(x.device, (grid.frames, grid.height, grid.width))
        with FPS_CALL.of_call(self, FpsCall(exact, grid)):
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    def outer_sample_wrapper(self, executor, *args, **kwargs):
        """One sampling run; when it ends, the tile tables it put on the device (:data:`~...fis_core.fps.SHAPES`) go."""
        try:
            return executor(*args, **kwargs)
        finally:
            SHAPES.clear()

    @property
    def signature(self) -> tuple:
        """The settings as plain values, for compile guards."""
        s = self.settings
        return (s.precision, s.sparsity, s.pattern, s.tile)


def apply_fps(model, settings: FpsSettings, dense_ranges):
    """A clone of ``model`` (a ModelPatcher) whose video self-attention runs FPS attention. An earlier FPS
    on the same model is replaced; a model of a family FPS does not take comes back unpatched, with a warning."""
    patched = model.clone()
    diffusion_model = patched.get_model_object("diffusion_model")
    family = find_family(diffusion_model)
    if family not in FPS_FAMILIES:
        LOG.warning("FPS attention: %s is not supported (%s are); it runs its own attention",
                    type(diffusion_model).__name__, named(FPS_FAMILIES, "and"))
        return patched
    options = patched.model_options["transformer_options"]
    previous = options.get("optimized_attention_override")
    if isinstance(previous, FpsOverride):
        previous = previous.previous
    for wrapper_type in (comfy.patcher_extension.WrappersMP.APPLY_MODEL, comfy.patcher_extension.WrappersMP.OUTER_SAMPLE):
        patched.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
    if settings.exact:
        if previous is None:
            options.pop("optimized_attention_override", None)
        else:
            options["optimized_attention_override"] = previous
        return patched
    override = FpsOverride(settings, dense_ranges, family, previous)
    options["optimized_attention_override"] = override
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, override.apply_model_wrapper)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, override.outer_sample_wrapper)
    return patched
