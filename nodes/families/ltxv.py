"""LTX-Video (0.9.x, 2B and 13B, distilled or not): every model run by ``LTXVModel``, not the audio-video LTX-2.

Tokens are the latent's frames in order (1x1x1 patches of a 32x32x8-compressed latent). Guide frames that
``LTXVAddGuide`` appends to the latent are tokens after the frames (some of them dropped by the model's grid
mask): every block computes them. The timestep is per token when a frame is given (image-to-video, guides).
"""
from __future__ import annotations

import torch

from ...fis_core import FrameLayout, FramePlan, gather, kept_before, token_index
from .base import FamilyAdapter, FrameGrid, cut_tokens, frames_given_whole
from .record import FamilyRecord, ModelInfo, UsualModel

#: LTX-Video sizes by the width of its cross-attention.
SIZES = {2048: "2B", 4096: "13B"}


def _guide_frames(x, kwargs) -> int:
    """How many of the latent's frames are guides appended by ``LTXVAddGuide`` (one keyframe index per token)."""
    keyframe_idxs = kwargs.get("keyframe_idxs")
    return 0 if keyframe_idxs is None else keyframe_idxs.shape[2] // (x.shape[-2] * x.shape[-1])


def _describe(config: dict, counts: tuple[int, ...]) -> ModelInfo:
    width = config["cross_attention_dim"]
    # the usual clip: 121 frames, 16 latent frames of 8
    return ModelInfo(f"LTX-Video {SIZES.get(width, f'{width}-wide')}", sum(counts), 16)


LTX_VIDEO = FamilyRecord(
    name="ltxv", label="LTX-Video", model_class="comfy.ldm.lightricks.model:LTXVModel",
    excluded_classes=("LTXAVModel",),   # LTX-2's audio-video model, an LTXVModel too
    blocks=(("transformer_blocks", "double_block"),), image_model="ltxv", describe=_describe,
    usual_models=(UsualModel("ltxv2b", ModelInfo("LTX-Video 2B", 28, 16), ("ltx",)),
                  UsualModel("ltxv13b", ModelInfo("LTX-Video 13B", 48, 16), ("ltxv-13b", "ltx-video-13b"))))


class LTXVideoFamily(FamilyAdapter):
    record = LTX_VIDEO

    def frame_grid(self, diffusion_model, x, kwargs) -> FrameGrid:
        grid = FrameGrid.from_latent(x.shape, diffusion_model.patchifier.patch_size)
        return grid._replace(frames=grid.frames - _guide_frames(x, kwargs))

    def default_anchors(self, diffusion_model, x, c_concat, kwargs, options):
        # LTXVImgToVideo and friends keep a given frame through the denoise mask (below 1 where it is kept); a frame
        # kept in part only (inpainting) is generated elsewhere, and not anchored.
        denoise_mask = kwargs.get("denoise_mask")
        if denoise_mask is None or denoise_mask.ndim != 5:
            return ()
        return frames_given_whole(denoise_mask[:, :, :x.shape[2] - _guide_frames(x, kwargs)])

    def image_layout(self, key, args, grid):
        return FrameLayout.fit(args["img"].shape[1], 0, grid.frames, grid.tokens_per_frame)

    def cut_args(self, key, args, layout: FrameLayout, plan: FramePlan, share):
        vec = args["vec"]
        if vec.shape[1] not in (1, layout.length):
            raise ValueError(f"timestep of {vec.shape[1]} rows matches neither 1 nor {layout.length} tokens")
        index = share("tokens", lambda: token_index(layout, plan))
        # RoPE: (rotation, split flag), or (cos, sin) in hosts before LTX-2; the tensors run along the tokens
        pe = args["pe"]
        sub = {**args, "img": gather(args["img"], index), "vec": share("vec", lambda: cut_tokens(vec, index)),
               "pe": share("pe", lambda: tuple(cut_tokens(p, index) if isinstance(p, torch.Tensor) else p
                                               for p in pe))}
        mask = args.get("self_attention_mask")
        if mask is not None:
            sub["self_attention_mask"] = share("mask", lambda: _cut_guide_mask(mask, layout, plan, index))
        return sub


def _cut_guide_mask(mask, layout: FrameLayout, plan: FramePlan, index):
    """LTXV's guide attention mask (attention biases between the frames and the guide tokens after them) over
    the tokens of ``plan``; the biases run along the key axis."""
    import comfy.ldm.lightricks.model
    if not isinstance(mask, comfy.ldm.lightricks.model.GuideAttentionMask):
        raise ValueError(f"a self-attention mask of type {type(mask).__name__} cannot be cut")
    cut = object.__new__(type(mask))
    cut.guide_start = kept_before(layout, plan.computed, mask.guide_start)
    cut.tracked_count = mask.tracked_count
    cut.noisy_mask = gather(mask.noisy_mask, index, dim=-1)
    cut.tracked_mask = gather(mask.tracked_mask, index, dim=-1)
    return cut
