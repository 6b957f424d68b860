"""HunyuanVideo 1.0 and 1.5: double-stream blocks (image and text side by side) and, in 1.0, single-stream
blocks over text+image. The text stream is always whole; only the image tokens are cut to the frame subset."""
from __future__ import annotations

from ...fis_core import FrameLayout, FramePlan, gather, token_index
from .base import FamilyAdapter, FrameGrid, conditioned_frames, cut_tokens, image_frames, remap_ranges
from .record import FamilyRecord, ModelInfo, UsualModel


def _describe(config: dict, counts: tuple[int, ...]) -> ModelInfo | None:
    if len(config["patch_size"]) != 3:      # HunyuanImage: the same class over images
        return None
    version = "1.5" if config.get("byt5") else "1.0"
    double, single = counts
    label = f"HunyuanVideo {version}" + (f" ({double} double + {single} single)" if single else "")
    return ModelInfo(label, double + single, 21)


# The joint attention runs over text and image tokens, text first (its length varies); the host gives no grid.
HUNYUAN_VIDEO = FamilyRecord(
    name="hunyuan_video", label="HunyuanVideo 1.0/1.5", model_class="comfy.ldm.hunyuan_video.model:HunyuanVideo",
    blocks=(("double_blocks", "double_block"), ("single_blocks", "single_block")), image_model="hunyuan_video",
    describe=_describe,
    usual_models=(UsualModel("hunyuan15", ModelInfo("HunyuanVideo 1.5", 54, 21), ("hunyuanvideo1.5", "hunyuanvideo15")),
                  UsualModel("hunyuan10", ModelInfo("HunyuanVideo 1.0 (20 double + 40 single)", 60, 21), ("hunyuan",))),
    takes_fps=True, text_first=True,
    blocks_note="HunyuanVideo 1.0 counts its double blocks first, then its single blocks.")


class HunyuanVideoFamily(FamilyAdapter):
    record = HUNYUAN_VIDEO

    def matches(self, diffusion_model) -> bool:
        return super().matches(diffusion_model) and len(diffusion_model.patch_size) == 3

    def frame_grid(self, diffusion_model, x, kwargs) -> FrameGrid:
        reference = kwargs.get("ref_latent")
        prefix = 0
        if reference is not None:
            prefix = FrameGrid.from_latent(reference.shape, diffusion_model.patch_size).tokens_per_frame * reference.shape[2]
        return FrameGrid.from_latent(x.shape, diffusion_model.patch_size, prefix)

    def default_anchors(self, diffusion_model, x, c_concat, kwargs, options):
        # 1.0 I2V "token replace": the guiding first frame has its own modulation.
        if kwargs.get("guiding_frame_index") is not None:
            return (0,)
        if c_concat is None or diffusion_model.in_channels <= diffusion_model.out_channels:
            return ()
        # SkyReels I2V concatenates the image latents alone, zero past the given frames
        if c_concat.shape[1] == diffusion_model.out_channels:
            return image_frames(c_concat)
        # 1.0 I2V and 1.5 end theirs with a mask channel marking the given frames.
        return conditioned_frames(c_concat[:, -1:])

    def image_layout(self, key, args, grid):
        if key[0] == "double_block":
            return FrameLayout.fit(args["img"].shape[1], grid.prefix, grid.frames, grid.tokens_per_frame)
        # single blocks run over cat(txt, img); the host records where the image starts
        text_len = args["transformer_options"].get("img_slice", [None])[0]
        length = args["img"].shape[1]
        if text_len is None:
            text_len = length - grid.prefix - grid.frames * grid.tokens_per_frame
        return FrameLayout.fit(length, text_len + grid.prefix, grid.frames, grid.tokens_per_frame)

    def cut_args(self, key, args, layout: FrameLayout, plan: FramePlan, share):
        index = share("tokens", lambda: token_index(layout, plan))
        sub = {**args, "img": gather(args["img"], index)}
        if key[0] == "double_block":
            # RoPE and the attention mask run over cat(txt, img): cut them on the image part only.
            text_len = args["txt"].shape[1]
            joint = share("joint", lambda: token_index(layout.with_prefix(text_len), plan))
            sub["modulation_dims_img"] = remap_ranges(args["modulation_dims_img"], layout, plan.computed)
        else:
            joint = index
            sub["modulation_dims"] = remap_ranges(args["modulation_dims"], layout, plan.computed)
        sub["pe"] = share("pe", lambda: cut_tokens(args["pe"], joint, dim=2))
        mask = args.get("attention_mask")
        if mask is not None:
            sub["attention_mask"] = share("mask", lambda: cut_tokens(mask, joint, dim=mask.ndim - 1))
        return sub
