"""The "Frame Interleaved Sparsity (FIS)" node: MODEL in, MODEL out."""
from __future__ import annotations

from ..fis_core import INTERPOLATIONS, PATTERNS, parse_block_list, parse_frame_list
from .families import FAMILIES, model_tooltip, named
from .patcher import FisSettings, apply_fis, model_block_keys

AUTO = "auto"


def settings_from_widgets(model, sparse_blocks: str, groups: int, pattern: str, interpolation: str,
                          anchor_frames: str, start_percent: float, end_percent: float) -> FisSettings:
    """Validate the widget values against ``model``; a ValueError names the widget and the valid form."""
    family, keys = model_block_keys(model)
    if groups < 1:
        raise ValueError(f"groups: must be at least 1 (1 turns FIS off); got {groups}")
    if pattern not in PATTERNS:
        raise ValueError(f"pattern: '{pattern}' is unknown; choose one of {', '.join(PATTERNS)}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation: '{interpolation}' is unknown; choose one of {', '.join(INTERPOLATIONS)}")
    if not 0.0 <= start_percent <= end_percent <= 1.0:
        raise ValueError(f"start_percent/end_percent: need 0 <= start_percent <= end_percent <= 1; "
                         f"got {start_percent} and {end_percent}")
    spec = sparse_blocks.strip().lower()
    if spec == AUTO:
        blocks = family.default_blocks(len(keys)) if family else ()
    else:
        blocks = parse_block_list(spec, len(keys) if family else None)
    anchors_spec = anchor_frames.strip().lower()
    anchors = None if anchors_spec == AUTO else parse_frame_list(anchors_spec)
    return FisSettings(blocks, groups, pattern, interpolation, anchors, start_percent, end_percent)


class FrameInterleavedSparsity:
    """Make sparse blocks compute only an interleaved subset of the latent frames; the skipped frames get
    the block's update interpolated from their neighbours."""

    DESCRIPTION = (f"Speeds up each denoising step of video models ({named(FAMILIES, 'and')}; 2-3x at "
                   "720p): the chosen blocks compute every G-th latent frame, taking turns, and the frames a block "
                   "skipped get its update interpolated from their neighbours. Training-free; no cache between steps.")
    CATEGORY = "model_patches/FIS"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with FIS applied (a patched copy; the input model is unchanged).",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": model_tooltip(FAMILIES)}),
            "sparse_blocks": ("STRING", {"default": AUTO, "tooltip": " ".join([
                "Blocks that compute a subset of the frames: 'auto' (all but the first and last block), "
                "or numbers and ranges such as '4-35' or '0,2,5-9'. Others stay dense."]
                + [f.blocks_note for f in FAMILIES if f.blocks_note])}),
            "groups": ("INT", {"default": 2, "min": 1, "max": 8, "tooltip":
                "Interleaved frame groups G: each sparse block computes about 1/G of the frames, and every frame is "
                "recomputed at least once every G sparse blocks. 2 is about 2.5-3x faster at 720p; 1 turns FIS off."}),
            "pattern": (list(PATTERNS), {"default": "interleave", "tooltip":
                "interleave: frame f belongs to group f mod G (neighbours of a skipped frame are computed). "
                "contiguous: each group is a run of consecutive frames."}),
            "interpolation": (list(INTERPOLATIONS), {"default": "linear", "tooltip":
                "How a skipped frame gets the block's update: linear between the nearest computed frames, "
                "the nearest computed frame's, or none (the frame passes through unchanged)."}),
            "anchor_frames": ("STRING", {"default": AUTO, "tooltip":
                "Latent frames every block computes, e.g. '0' or '0,-1' (negative counts from the end). 'auto': the "
                "frames the conditioning fixes (the first frame of image-to-video). Empty: none."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "Part of the sampling schedule where FIS is on: from here..."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "...to here. Outside it the model runs dense."}),
        }}

    def patch(self, model, sparse_blocks, groups, pattern, interpolation, anchor_frames, start_percent, end_percent):
        settings = settings_from_widgets(model, sparse_blocks, groups, pattern, interpolation, anchor_frames,
                                         start_percent, end_percent)
        return (apply_fis(model, settings),)
