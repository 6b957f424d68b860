"""The interface one model family implements so that FIS can run its blocks on a frame subset, and what the
families share."""
from __future__ import annotations

import importlib
import inspect
import math
from typing import NamedTuple

import torch

from ...fis_core import FramePlan, FrameLayout, gather, kept_before
from ..patching.call_state import computed_frames
from .record import FamilyRecord


class FrameGrid(NamedTuple):
    """The latent video as the transformer sees it: ``frames`` x ``height`` x ``width`` tokens after
    patchifying, behind ``prefix`` non-frame image tokens (e.g. a reference image)."""

    frames: int
    height: int
    width: int
    prefix: int = 0

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width

    @staticmethod
    def from_latent(shape, patch_size, prefix: int = 0, extra_frames: int = 0) -> "FrameGrid":
        """The grid of a latent of ``shape`` [..., T, H, W] cut into ``patch_size`` (t, h, w) patches."""
        t, h, w = shape[-3:]
        pt, ph, pw = patch_size
        return FrameGrid(math.ceil(t / pt) + extra_frames, math.ceil(h / ph), math.ceil(w / pw), prefix)


class FamilyAdapter:
    """How FIS runs one family's blocks on a frame subset: the frame grid of a model call and the frame layout of a
    block's token sequence, the block's other arguments (RoPE, modulation, masks) cut to the frame subset (and, under
    sequence parallelism, gathered and split again), the frames the conditioning gives (``auto`` anchors), and the
    token grid FPS's attention sees. The patcher does the rest: gather the tokens, call the block, restore the skipped
    frames. The family's static facts are its :attr:`record`; the adapter reads them, never repeats them."""

    record: FamilyRecord

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def label(self) -> str:
        return self.record.label

    @property
    def takes_fps(self) -> bool:
        return self.record.takes_fps

    def matches(self, diffusion_model: torch.nn.Module) -> bool:
        """Whether ``diffusion_model`` is of the record's host class and none of its excluded subclasses."""
        module, name = self.record.model_class.split(":")
        return (isinstance(diffusion_model, getattr(importlib.import_module(module), name))
                and not any(c.__name__ in self.record.excluded_classes for c in type(diffusion_model).__mro__))

    def block_keys(self, diffusion_model: torch.nn.Module) -> list[tuple[str, int]]:
        """Keys of ``patches_replace["dit"]`` in execution order; a widget's block number indexes this list."""
        return [(key, i) for attribute, key in self.record.blocks for i in range(len(getattr(diffusion_model, attribute)))]

    def attention_grid(self, options: dict, grid: FrameGrid) -> tuple[int, int, int] | None:
        """For FPS: the frames x rows x columns token grid that a self-attention with ``options`` (its
        ``transformer_options``) sees in a model call whose latent has ``grid``, or None where it has none. By
        default the latent's, with the frames FIS names in a sparse block."""
        return latent_attention_grid(options, grid)

    def attention_prefix(self, tokens: int, video: int, grid: FrameGrid) -> int | None:
        """For FPS: the tokens in front of the frames in a self-attention of ``tokens`` tokens whose frames hold
        ``video`` tokens: the grid's (a reference image), or, where the family's attention puts text first
        (:attr:`~.record.FamilyRecord.text_first`), all the tokens beyond the frames; None where the attention holds
        text alone (a token refiner)."""
        if not self.record.text_first:
            return grid.prefix
        return tokens - video if tokens >= video else None

    def takes_extra_kwargs(self, diffusion_model: torch.nn.Module) -> bool:
        """Whether the model's forward passes unknown keyword arguments through (``**kwargs``)."""
        parameters = inspect.signature(diffusion_model.forward).parameters.values()
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)

    def frame_grid(self, diffusion_model, x: torch.Tensor, kwargs: dict) -> FrameGrid:
        """The frame grid of the latent ``x`` [B, C, T, H, W] given to ``apply_model`` with ``kwargs``."""
        raise NotImplementedError

    def default_anchors(self, diffusion_model, x: torch.Tensor, c_concat, kwargs: dict, options: dict) -> tuple[int, ...]:
        """The ``auto`` anchor frames: the frames the conditioning fixes (an image-to-video first frame); ``kwargs`` and
        ``options`` (transformer_options) are those of the model call."""
        return ()

    def image_layout(self, key: tuple[str, int], args: dict, grid: FrameGrid) -> FrameLayout | None:
        """The frame layout of ``args["img"]`` for the block ``key``, or None if it does not match the grid."""
        raise NotImplementedError

    def cut_args(self, key: tuple[str, int], args: dict, layout: FrameLayout, plan: FramePlan, share) -> dict:
        """The block's arguments for the computed frames of ``plan`` in the ``layout`` of ``args["img"]``.
        ``share(name, make)`` keeps a value for the other blocks of the group in this model call (the
        RoPE and modulation subsets, the token index)."""
        raise NotImplementedError

    def unshard_args(self, key: tuple[str, int], args: dict, grid: FrameGrid, shard, share) -> dict | None:
        """Under sequence parallelism (:mod:`...patching.sequence_parallel`): the block's arguments over the whole
        sequence, all-gathered from this rank's chunk ``args`` (``shard``: a ``SequenceShard``), or None where ``args``
        is not such a chunk or the family's blocks do not run sharded (then they run dense)."""
        return None

    def shard_args(self, key: tuple[str, int], sub_args: dict, shard, share) -> dict:
        """This rank's chunk of ``sub_args`` (what :meth:`cut_args` made of the unsharded arguments), shaped as the
        host's sequence-parallel forward shapes a block's arguments."""
        raise NotImplementedError


def latent_attention_grid(options: dict, grid: FrameGrid) -> tuple[int, int, int]:
    """The token grid of the latent ``grid`` as a self-attention with ``options`` sees it: in a sparse block, the
    frames FIS names there (for families whose host gives the attention no grid)."""
    frames = computed_frames(options)
    return (grid.frames if frames is None else len(frames), grid.height, grid.width)


def conditioned_frames(mask: torch.Tensor) -> tuple[int, ...]:
    """Latent frames that a mask [B, C, T, H, W] marks as given (above one half anywhere)."""
    given = mask.float().amax(dim=(0, 1, 3, 4)) > 0.5
    return tuple(int(i) for i in torch.nonzero(given).flatten().tolist())


def frames_given_whole(generate_mask: torch.Tensor) -> tuple[int, ...]:
    """Latent frames that a mask [B, C, T, H, W] of what to generate (1) leaves alone everywhere: a frame generated in
    part (inpainting) is still generated, and not anchored."""
    generated = set(conditioned_frames(generate_mask))
    return tuple(f for f in range(generate_mask.shape[2]) if f not in generated)


def image_frames(latents: torch.Tensor) -> tuple[int, ...]:
    """The frames of concatenated image latents [B, C, T, H, W] (zero where no frame is given) that hold an image,
    none where every frame does: that is a video to follow (video-to-video, a control video), not given frames. A
    frame holds an image where its largest value passes a hundredth of the largest of all (a zero frame, written
    through the latent format's scale and shift, keeps that dtype's rounding)."""
    peak = latents.float().abs().amax(dim=(0, 1, 3, 4))
    frames = tuple(int(f) for f in torch.nonzero(peak > 0.01 * peak.max()).flatten().tolist())
    return () if len(frames) == latents.shape[2] else frames


def cut_tokens(tensor: torch.Tensor, index: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``tensor`` cut to the tokens at ``index`` along ``dim`` if it runs along the whole sequence there;
    a size-1 (broadcast) axis stays as it is."""
    return tensor if tensor.shape[dim] == 1 else gather(tensor, index, dim)


def remap_ranges(ranges, layout: FrameLayout, computed: tuple[int, ...]):
    """Token ranges ``[(start, end, value), ...]`` over the full sequence, mapped onto the gathered one.

    Used for HunyuanVideo's ``modulation_dims``; ``end`` None means the end of the sequence.
    """
    if ranges is None:
        return None
    out = []
    for start, end, value in ranges:
        new_start = kept_before(layout, computed, start)
        new_end = None if end is None else kept_before(layout, computed, end)
        if new_end is None or new_end > new_start:
            out.append((new_start, new_end, value))
    return out
