"""Wan 2.1 / 2.2 (T2V, I2V, FLF2V, TI2V-5B, VACE, Fun, S2V, InfiniteTalk, ...): the models run by a ``WanModel``
forward that goes through ``patches_replace``, but those of :data:`_UNSUPPORTED_CLASSES`."""
from __future__ import annotations

import torch

from ...fis_core import FrameLayout, FramePlan, gather, token_index
from .base import (FamilyAdapter, FrameGrid, conditioned_frames, cut_tokens, frames_given_whole, image_frames,
                   latent_attention_grid)
from .record import FamilyRecord, ModelInfo, UsualModel

#: WanModel subclasses FIS cannot run sparse: autoregressive Wan's forward bypasses ``patches_replace``; HuMo's blocks
#: take each frame's audio outside their arguments (a closure) and pair it with that frame's tokens, so a block on a
#: frame subset fails (measured: a RuntimeError in its audio cross-attention); Animate 2's blocks attend frame j to
#: pose frame j-1 by the whole video's frame count and buffers, also passed outside their arguments (read, not run).
_UNSUPPORTED_CLASSES = ("CausalWanModel", "HumoWanModel", "WanAnimate2Model")
#: Their ``model_type`` in ComfyUI's detected config, for the schedule view's reading of a file's header.
_UNSUPPORTED_MODEL_TYPES = ("humo", "animate2")
#: transformer_options key of the host's frames x rows x columns token grid, which FIS cuts to a sparse block's frames
GRID_SIZES = "grid_sizes"
#: transformer_options key of InfiniteTalk/MultiTalk's audio, per latent frame (axis 1), which its cross-attention
#: pairs with the frames of the host's grid: a sparse block gets the computed frames' audio.
MULTITALK_AUDIO = "audio_embeds"
#: The apply-model wrapper of InfiniteTalk, which writes its motion frames (the previous clip's last frames when it
#: extends a video, else the start image) into the first latent frames at every model call: given frames.
MULTITALK_MOTION_WRAPPER = "MultiTalk_apply_model"
#: VACE's context per latent frame: two 16-channel latents of the control video, then its mask (64 channels: the 8x8
#: pixels of each latent pixel).
VACE_CHANNELS, VACE_MASK_CHANNELS = 96, 64
#: Wan sizes by model width.
SIZES = {1536: "1.3B", 3072: "5B", 5120: "14B"}


def _describe(config: dict, counts: tuple[int, ...]) -> ModelInfo | None:
    if config.get("model_type") in _UNSUPPORTED_MODEL_TYPES:
        return None
    image_to_video = config["in_dim"] > config["out_dim"]
    size = SIZES.get(config["dim"], f"{config['dim']}-wide")
    label = " ".join(["Wan", size, "I2V" if image_to_video else ""]).strip()
    # the usual clip: 121 frames for TI2V-5B, else 81
    return ModelInfo(label, sum(counts), 31 if size == "5B" else 21, image_to_video)


WAN = FamilyRecord(
    name="wan", label="Wan 2.1/2.2", model_class="comfy.ldm.wan.model:WanModel", excluded_classes=_UNSUPPORTED_CLASSES,
    blocks=(("blocks", "double_block"),), image_model="wan2.1", describe=_describe,
    usual_models=(UsualModel("wan14b", ModelInfo("Wan 2.1/2.2 14B", 40, 21)),
                  UsualModel("wan5b", ModelInfo("Wan 2.2 TI2V-5B", 30, 31), ("5b",))),
    takes_fps=True, model_note="For Wan 2.2 A14B, put one node on each expert.")


def host_grid(options: dict) -> tuple[int, int, int] | None:
    """The frames x rows x columns token grid the host's Wan gives in ``options`` (in a sparse block, its frames); None
    where it gives none."""
    sizes = options.get(GRID_SIZES)
    return None if sizes is None or len(sizes) != 3 else tuple(int(s) for s in sizes)


class WanFamily(FamilyAdapter):
    record = WAN

    def attention_grid(self, options, grid):
        # The host's grid (which FIS cuts to the frames a sparse block computes), else (hosts that give none) the
        # latent's, with the frames FIS names in a sparse block.
        return host_grid(options) or latent_attention_grid(options, grid)

    def frame_grid(self, diffusion_model, x, kwargs) -> FrameGrid:
        patch = diffusion_model.patch_size
        prefix = 0
        reference = kwargs.get("reference_latent")
        if reference is not None and getattr(diffusion_model, "ref_conv", None) is not None:
            prefix = FrameGrid.from_latent((1,) + tuple(reference.shape[-2:]), patch).tokens_per_frame
        extra = _reference_frames(diffusion_model, kwargs) + _appended_frames(diffusion_model, kwargs)
        return FrameGrid.from_latent(x.shape, patch, prefix, extra)

    def default_anchors(self, diffusion_model, x, c_concat, kwargs, options):
        # Reference images the model puts in the grid as frames, in front of the video (SCAIL) or after it (Phantom):
        # every frame looks at them for the subject's identity.
        before = _reference_frames(diffusion_model, kwargs)
        video = FrameGrid.from_latent(x.shape, diffusion_model.patch_size).frames
        after = range(before + video, before + video + _appended_frames(diffusion_model, kwargs))
        given = {*_given_frames(diffusion_model, c_concat, kwargs), *range(_motion_frames(options))}
        return (*range(before), *(before + f for f in sorted(given)), *after)

    def image_layout(self, key, args, grid):
        frames, height, width = host_grid(args["transformer_options"]) or (grid.frames, grid.height, grid.width)
        return FrameLayout.fit(args["img"].shape[1], grid.prefix, frames, height * width)

    def cut_args(self, key, args, layout: FrameLayout, plan: FramePlan, share):
        index = share("tokens", lambda: token_index(layout, plan))
        vec = args["vec"]
        rows = vec.shape[1] if vec.ndim == 4 else 1
        run = max(layout.length // rows, 1)             # the block repeats each row over this many tokens
        if rows == layout.frames:                       # per-frame modulation (TI2V-5B, I2V)
            vec = share("vec", lambda: vec.index_select(1, plan.frame_index))
        elif rows > 1 and rows * run == layout.length and not any(
                n % run for n in (layout.prefix, layout.tokens_per_frame, layout.suffix)):
            # rows of `run` tokens: per token (1), per frame with the tokens around the frames in frames too (S2V's
            # reference image), per half frame (S2V with motion frames); a kept token keeps its row
            vec = share("vec", lambda: vec.index_select(1, index[::run] // run))
        elif rows != 1:
            raise ValueError(f"modulation of {rows} rows matches neither {layout.frames} frames nor runs of "
                             f"{layout.tokens_per_frame} tokens or fewer")
        options = dict(args["transformer_options"])
        sizes = options.get(GRID_SIZES)
        if sizes is not None:       # the host's grid, cut to the computed frames (the attentions read it)
            options[GRID_SIZES] = type(sizes)((len(plan.computed), *tuple(sizes)[1:]))
        audio = options.get(MULTITALK_AUDIO)
        if isinstance(audio, torch.Tensor) and audio.ndim > 1 and audio.shape[1] == layout.frames:
            options[MULTITALK_AUDIO] = share("audio", lambda: audio.index_select(1, plan.frame_index.to(audio.device)))
        return {**args, "img": gather(args["img"], index), "vec": vec, "transformer_options": options,
                "pe": share("pe", lambda: cut_tokens(args["pe"], index))}

    # Raylight's usp_dit_forward splits the tokens and the RoPE (dim 1) over the ranks and passes the modulation whole.

    def unshard_args(self, key, args, grid, shard, share):
        frames, height, width = host_grid(args["transformer_options"]) or (grid.frames, grid.height, grid.width)
        length, tokens = grid.prefix + frames * height * width, args["img"].shape[1]
        if not shard.holds(tokens, length):
            return None
        full = {**args, "img": shard.gather(args["img"], 1, length)}
        pe = args["pe"]
        if pe is not None and pe.shape[1] == tokens:
            full["pe"] = share("pe", lambda: shard.gather(pe, 1, length))
        return full

    def shard_args(self, key, sub_args, shard, share):
        from comfy.ldm.wan.model import repeat_e
        img, vec, pe = sub_args["img"], sub_args["vec"], sub_args["pe"]
        if vec.ndim == 4 and vec.shape[1] != 1:
            # per-frame or per-token modulation: per token over the subset (as the block would repeat it), then split
            vec = share("vec", lambda: shard.split(repeat_e(vec, img)))
        if pe is not None and pe.shape[1] == img.shape[1]:
            pe = share("pe", lambda: shard.split(pe))
        return {**sub_args, "img": shard.split(img), "vec": vec, "pe": pe}


def _given_frames(diffusion_model, c_concat, kwargs) -> tuple[int, ...]:
    """The latent frames the conditioning gives (an image-to-video first frame, a VACE reference), which FIS
    anchors."""
    if c_concat is not None and diffusion_model.in_dim > diffusion_model.out_dim:
        return _concatenated_frames(c_concat, diffusion_model.out_dim)
    # VACE gives a frame whole where its mask is 0 over all of it (a reference image in front of the video, a kept
    # frame to extend from); a frame masked in part is generated there, and not anchored.
    vace = kwargs.get("vace_context")
    if isinstance(vace, torch.Tensor) and vace.ndim == 6 and vace.shape[2] == VACE_CHANNELS:
        return frames_given_whole(vace[:, :, VACE_CHANNELS - VACE_MASK_CHANNELS:].flatten(0, 1))
    # TI2V-5B keeps a given first frame through a denoise mask (0 where the frame is kept).
    denoise_mask = kwargs.get("denoise_mask")
    if denoise_mask is not None and denoise_mask.ndim == 5:
        return frames_given_whole(denoise_mask)
    return ()


def _concatenated_frames(c_concat: torch.Tensor, latent_channels: int) -> tuple[int, ...]:
    """The frames that Wan's concatenated conditioning gives. ComfyUI concatenates a 4-channel mask of the given
    frames and latents: the mask first (I2V, FLF2V, Fun InP, Camera 2.2: [mask, image]; SCAIL: [mask]) or after a
    control video (Wan 2.2 Fun Control: [control, mask, image]); without a mask (Fun Control 2.1: [control, image];
    Camera 2.1: [image]) the image latents come last and are zero where no frame is given."""
    channels = c_concat.shape[1]
    if channels % latent_channels == 4:
        start = latent_channels if channels == 2 * latent_channels + 4 else 0
        return conditioned_frames(c_concat[:, start:start + 4])
    if channels >= latent_channels:
        return image_frames(c_concat[:, -latent_channels:])
    return ()


def _motion_frames(options: dict) -> int:
    """How many leading latent frames InfiniteTalk's apply-model wrapper overwrites with its motion frames."""
    import comfy.patcher_extension
    wrappers = options.get("wrappers", {}).get(comfy.patcher_extension.WrappersMP.APPLY_MODEL, {})
    motion = [getattr(w, "init_latents", None) for w in wrappers.get(MULTITALK_MOTION_WRAPPER, [])]
    return max((m.shape[2] for m in motion if isinstance(m, torch.Tensor) and m.ndim == 5), default=0)


def _appended_frames(diffusion_model, kwargs) -> int:
    """How many latent frames the host appends to the video (``time_dim_concat``: Phantom's subject images)."""
    extra = kwargs.get("time_dim_concat")
    return 0 if extra is None else FrameGrid.from_latent(extra.shape, diffusion_model.patch_size).frames


def _reference_frames(diffusion_model, kwargs) -> int:
    """How many latent frames SCAIL (and SCAIL-2) put in front of the video: its reference images, one frame each,
    which its blocks see as frames of the grid (other Wan models take a reference image as tokens, or none)."""
    import comfy.ldm.wan.model
    reference = kwargs.get("reference_latent")
    if reference is None or not isinstance(diffusion_model, getattr(comfy.ldm.wan.model, "SCAILWanModel", ())):
        return 0
    return FrameGrid.from_latent(reference.shape, diffusion_model.patch_size).frames
