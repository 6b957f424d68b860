"""The "Frame Interleaved Sparsity (FIS)" node: MODEL in, MODEL out."""
from __future__ import annotations

from ...fis_core import INTERPOLATIONS, PATTERNS
from ..calibration.profiles import profile_fingerprint
from ..families import FAMILIES, model_tooltip, named
from ..log import LOG
from ..patching.fis import FisSettings, apply_fis, model_block_keys
from .fis_widgets import AUTO, CUSTOM, PRESETS, PROFILE, WIDGETS, resolve_settings


def settings_from_widgets(model, sparse_blocks: str, groups: int, pattern: str, interpolation: str,
                          anchor_frames: str, start_percent: float, end_percent: float,
                          quality: str = CUSTOM) -> FisSettings:
    """The settings for the widget values on ``model`` (:func:`~.fis_widgets.resolve_settings` on its family and
    blocks); a ValueError names the widget and the valid form. A value the ``quality`` preset replaces is said in
    the log (:func:`say_replaced`)."""
    widgets = dict(quality=quality, sparse_blocks=sparse_blocks, groups=groups, pattern=pattern,
                   interpolation=interpolation, anchor_frames=anchor_frames, start_percent=start_percent,
                   end_percent=end_percent)
    say_replaced(quality, PRESETS.get(quality, {}), widgets)
    family, keys = model_block_keys(model)
    return resolve_settings(widgets, family, len(keys))


def say_replaced(quality: str, preset: dict, given: dict):
    """One log line where a prompt sets a widget that the ``quality`` preset replaces to a value of its own (not the
    widget's default, which every prompt carries): a prompt from a script or another front end, where nothing
    switched ``quality`` to ``custom`` when the widget was set, would otherwise run without it unawares."""
    replaced = [f"{name} {value!r} with {preset[name]!r}" for name, value in given.items()
                if name in preset and not same_value(value, preset[name]) and not same_value(value, WIDGETS[name])]
    if replaced:
        LOG.warning("FIS: quality '%s' replaces %s; set quality to 'custom' to use the prompt's value%s", quality,
                    ", ".join(replaced), "s" if len(replaced) > 1 else "")


def profile_change_key(quality: str, sparse_blocks: str) -> str:
    """What ComfyUI compares to rerun the node (and what follows it): with ``profile:NAME``, the profile file's
    fingerprint, so that a recalibration reruns it, which the widget values alone do not tell."""
    spec = PRESETS.get(quality, {}).get("sparse_blocks", sparse_blocks).strip()
    if not spec.lower().startswith(PROFILE):
        return ""
    return profile_fingerprint(spec[len(PROFILE):].partition(":")[0])


def same_value(a, b) -> bool:
    """Whether two widget values are the same setting (text compared as the node reads it)."""
    return a.strip().lower() == b.strip().lower() if isinstance(a, str) and isinstance(b, str) else a == b


def widget_specs() -> dict:
    """The widgets after ``quality``, in the order of the previous releases (V1 specs: ``(type, options)``), their
    defaults those of :data:`~.fis_widgets.WIDGETS`; the V3 node (:mod:`.fis_node_v3`) builds its inputs from the
    same specs."""
    return {
        "sparse_blocks": ("STRING", {"default": WIDGETS["sparse_blocks"], "tooltip": " ".join([
            "Blocks that compute a subset of the frames (with quality 'custom'): 'auto' (all but the first and "
            "last block), 'all', numbers and ranges such as '4-35' or '0,2,5-9', or 'profile:NAME': as many "
            "blocks as 'auto', those where FIS Calibrate measured the least defect on this model "
            "('profile:NAME:K': the K best). Others stay dense."]
            + [f.record.blocks_note for f in FAMILIES if f.record.blocks_note])}),
        "groups": ("INT", {"default": WIDGETS["groups"], "min": 1, "max": 8, "tooltip":
            "Interleaved frame groups G: each sparse block computes about 1/G of the frames, and every frame is "
            "recomputed at least once every G sparse blocks. 2 is about 2.5-3x faster per step at 720p; 3 nearly 4x, "
            "but whether it keeps the video depends on the model (README, Quality): check it with FIS Compare. "
            "1 turns FIS off."}),
        "pattern": (list(PATTERNS), {"default": WIDGETS["pattern"], "tooltip":
            "interleave: frame f belongs to group f mod G (neighbours of a skipped frame are computed). "
            "contiguous: each group is a run of consecutive frames."}),
        "interpolation": (list(INTERPOLATIONS), {"default": WIDGETS["interpolation"], "tooltip":
            "How a skipped frame gets the block's update: corrected (linear, plus a correction for the frame's "
            "own input, fitted on the computed frames in every block and step: the most faithful), linear "
            "between the nearest computed frames, the nearest computed frame's, or none (the frame passes "
            "through unchanged)."}),
        "anchor_frames": ("STRING", {"default": WIDGETS["anchor_frames"], "tooltip":
            "Latent frames every block computes, e.g. '0' or '0,-1' (negative counts from the end). 'auto': the "
            "frames the conditioning fixes (the first frame of image-to-video). Empty: none."}),
        "start_percent": ("FLOAT", {"default": WIDGETS["start_percent"], "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
            "Part of the sampling schedule where FIS is on: from here..."}),
        "end_percent": ("FLOAT", {"default": WIDGETS["end_percent"], "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
            "...to here. Outside it the model runs dense."}),
    }


MODEL_TOOLTIP = model_tooltip(FAMILIES)
PRESET_TOOLTIP = (
    "balanced: all blocks but the first and last sparse, G=2, corrected interpolation (a 14B model at 720p on an "
    "H100: 2.7x per step over FlashAttention-3, the fastest attention measured, 2.9x over PyTorch SDPA; the test "
    "model trained here: 28.6 dB from dense). faithful: every block sparse, but the first step "
    "(from pure noise, where the layout is set) and the final step (landing on the clean video) dense (about 1.5x "
    "per 4-step run, more with more steps; 32.7 dB). fastest: every block sparse (3.2x per step; 28.1 dB). custom: "
    "the widgets below. A preset sets sparse_blocks, groups, interpolation, start_percent and end_percent; pattern "
    "and anchor_frames apply to every choice.")


class FrameInterleavedSparsity:
    """Make sparse blocks compute only an interleaved subset of the latent frames; the skipped frames get
    the block's update interpolated from their neighbours."""

    DESCRIPTION = (f"Speeds up each denoising step of video models ({named(FAMILIES, 'and')}; 2-3x at "
                   "720p): the chosen blocks compute every G-th latent frame, taking turns from block to block and from step "
                   "to step, and the frames a block skipped get its update interpolated from their neighbours, "
                   "corrected by a map fitted on the frames it computed. Training-free; no activations cached between steps.")
    CATEGORY = "model_patches/FIS"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with FIS applied (a patched copy; the input model is unchanged).",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {"tooltip": MODEL_TOOLTIP}),
                             "quality": ([*PRESETS, CUSTOM], {"default": "balanced", "tooltip": PRESET_TOOLTIP}),
                             **widget_specs()}}

    @classmethod
    def IS_CHANGED(cls, quality="balanced", sparse_blocks=AUTO, **_):
        return profile_change_key(quality, sparse_blocks)

    def patch(self, model, quality, sparse_blocks, groups, pattern, interpolation, anchor_frames, start_percent,
              end_percent):
        settings = settings_from_widgets(model, sparse_blocks, groups, pattern, interpolation, anchor_frames,
                                         start_percent, end_percent, quality)
        return (apply_fis(model, settings),)
