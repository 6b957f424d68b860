"""The interface one model family implements so that FIS can run its blocks on a frame subset."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ...fis_core import FramePlan, FrameLayout, gather, kept_before
from ..patching.call_state import computed_frames


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


@dataclass(frozen=True)
class ModelInfo:
    """What the schedule view draws for a model: its name, its blocks as ``sparse_blocks`` numbers them, the
    latent frames of its usual clip, and whether it takes a concatenated image (then ``auto`` anchors a frame)."""

    label: str
    blocks: int
    frames: int
    image_to_video: bool = False


@dataclass(frozen=True)
class UsualModel:
    """A model of the family the schedule view offers when it cannot read the connected file; a file name containing
    one of ``file_hints`` suggests it (the longest hint that matches wins)."""

    key: str
    model: ModelInfo
    file_hints: tuple[str, ...] = ()


class FamilyAdapter:
    """How FIS plugs into one family of diffusion models of the host, and everything the pack knows of it.

    An adapter names the block keys of ``patches_replace["dit"]``, finds the frame layout of a block's
    token sequence, and cuts the block's other arguments (RoPE, modulation, masks) to the frame subset.
    The patcher does the rest: gather the tokens, call the block, restore the skipped frames. It also
    recognises the family's model files for the schedule view (:meth:`describe`, :attr:`usual_models`), and says
    whether and how FPS attention runs on it (:attr:`takes_fps`, :meth:`attention_grid`).
    """

    name = "base"
    #: The models as the nodes' tooltips and log lines name them.
    label = "base"
    #: A sentence for the node's model tooltip (how to use FIS on this family), or "".
    model_note = ""
    #: A sentence for the ``sparse_blocks`` tooltip (how this family's blocks are numbered), or "".
    blocks_note = ""
    #: The family's usual models, for the schedule view.
    usual_models: tuple[UsualModel, ...] = ()
    #: Whether FPS attention takes this family's video self-attention.
    takes_fps = False

    def matches(self, diffusion_model: torch.nn.Module) -> bool:
        raise NotImplementedError

    def describe(self, config: dict) -> ModelInfo | None:
        """The view's :class:`ModelInfo` for a model file whose header ComfyUI's ``detect_unet_config`` reads as
        ``config``, or None if it is not this family's."""
        raise NotImplementedError

    def attention_grid(self, options: dict, grid: FrameGrid) -> tuple[tuple[int, int, int] | None, int | None]:
        """For FPS: (the frames x rows x columns token grid that a self-attention with ``options`` (its
        ``transformer_options``) sees in a model call whose latent has ``grid``, or None where it has none;
        the number of tokens in front of the frames, or None where that varies (text in front))."""
        raise NotImplementedError

    def takes_extra_kwargs(self, diffusion_model: torch.nn.Module) -> bool:
        """Whether the model's forward passes unknown keyword arguments through (``**kwargs``)."""
        parameters = inspect.signature(diffusion_model.forward).parameters.values()
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)

    def block_keys(self, diffusion_model: torch.nn.Module) -> list[tuple[str, int]]:
        """Keys of ``patches_replace["dit"]`` in execution order; a widget's block number indexes this list."""
        raise NotImplementedError

    def default_blocks(self, num_blocks: int) -> tuple[int, ...]:
        """The ``auto`` sparse blocks: all but the first and the last, which shape the input and the output."""
        return tuple(range(1, num_blocks - 1)) if num_blocks > 2 else ()

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
        """Under sequence parallelism (:mod:`..sequence_parallel`): the block's arguments over the whole sequence,
        all-gathered from this rank's chunk ``args`` (``shard``: a :class:`~..sequence_parallel.SequenceShard`), or
        None where ``args`` is not such a chunk or the family's blocks do not run sharded (then they run dense)."""
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
