"""Mochi 1 (Genmo, ``AsymmDiTJoint``): asymmetric joint blocks of video and text tokens.

Video tokens are the latent's frames in order (1x2x2 patches); each block attends over them together with the
text tokens, which stay whole. RoPE comes as cos/sin tables with one row per video token; the timestep is
one vector per sample.
"""
from __future__ import annotations

from ...fis_core import FrameLayout, FramePlan, gather, token_index
from .base import FamilyAdapter, FrameGrid
from .record import FamilyRecord, ModelInfo, UsualModel

MOCHI = FamilyRecord(
    name="mochi", label="Mochi", model_class="comfy.ldm.genmo.joint_model.asymm_models_joint:AsymmDiTJoint",
    blocks=(("blocks", "double_block"),), image_model="mochi_preview",
    # the usual clip: 163 frames, 28 latent frames of 6
    describe=lambda config, counts: ModelInfo("Mochi 1", sum(counts), 28),
    usual_models=(UsualModel("mochi", ModelInfo("Mochi 1", 48, 28), ("mochi",)),),
    image_anchors=())   # ComfyUI has no Mochi image-to-video


class MochiFamily(FamilyAdapter):
    record = MOCHI

    def frame_grid(self, diffusion_model, x, kwargs) -> FrameGrid:
        return FrameGrid.from_latent(x.shape, (1, diffusion_model.patch_size, diffusion_model.patch_size))

    def image_layout(self, key, args, grid):
        return FrameLayout.fit(args["img"].shape[1], 0, grid.frames, grid.tokens_per_frame)

    def cut_args(self, key, args, layout: FrameLayout, plan: FramePlan, share):
        index = share("tokens", lambda: token_index(layout, plan))
        return {**args, "img": gather(args["img"], index),
                "rope_cos": share("rope_cos", lambda: gather(args["rope_cos"], index, dim=0)),
                "rope_sin": share("rope_sin", lambda: gather(args["rope_sin"], index, dim=0))}
