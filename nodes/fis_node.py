"""The "Frame Interleaved Sparsity (FIS)" node: MODEL in, MODEL out."""
from __future__ import annotations

import logging

from ..fis_core import INTERPOLATIONS, PATTERNS, check_choice, parse_block_list, parse_frame_list
from ..fis_core.widget_text import parse_int, quoted
from .families import FAMILIES, FamilyAdapter, model_tooltip, named
from .patcher import FisSettings, apply_fis, model_block_keys
from .profiles import least_defect_blocks, load_profile, profile_fingerprint

LOG = logging.getLogger("ComfyUI-FIS")
AUTO = "auto"
ALL = "all"
PROFILE = "profile:"
CUSTOM = "custom"
#: The ``quality`` presets: the widgets each one sets, chosen from the fidelity study (README, "Quality").
PRESETS = {
    "balanced": {"sparse_blocks": AUTO, "groups": 2, "interpolation": "corrected", "start_percent": 0.0,
                 "end_percent": 1.0},
    "faithful": {"sparse_blocks": ALL, "groups": 2, "interpolation": "corrected", "start_percent": 0.0,
                 "end_percent": 1.0, "dense_first_step": True, "dense_final_step": True},
    "fastest": {"sparse_blocks": ALL, "groups": 2, "interpolation": "corrected", "start_percent": 0.0,
                "end_percent": 1.0},
}


def settings_from_widgets(model, sparse_blocks: str, groups: int, pattern: str, interpolation: str,
                          anchor_frames: str, start_percent: float, end_percent: float,
                          quality: str = CUSTOM) -> FisSettings:
    """Validate the widget values against ``model``; a ValueError names the widget and the valid form.
    A ``quality`` preset other than ``custom`` sets the widgets it names (see :data:`PRESETS`). ``model`` None
    checks the forms alone (the Raylight node's driver, whose model is in the workers): no block count to check
    against, and ``auto`` and profiles give no blocks (a profile is checked against itself: its name, its file, K)."""
    check_choice("quality", quality, (*PRESETS, CUSTOM))
    preset = PRESETS.get(quality, {})
    say_replaced(quality, preset, {"sparse_blocks": sparse_blocks, "groups": groups, "interpolation": interpolation,
                                   "start_percent": start_percent, "end_percent": end_percent})
    sparse_blocks = preset.get("sparse_blocks", sparse_blocks)
    groups = preset.get("groups", groups)
    interpolation = preset.get("interpolation", interpolation)
    start_percent = preset.get("start_percent", start_percent)
    end_percent = preset.get("end_percent", end_percent)
    family, keys = model_block_keys(model) if model is not None else (None, [])
    spec = sparse_blocks.strip().lower()
    if spec == AUTO:
        blocks = family.default_blocks(len(keys)) if family else ()
    elif spec == ALL:
        blocks = tuple(range(len(keys)))
    elif spec.startswith(PROFILE):
        blocks = profile_blocks(sparse_blocks.strip()[len(PROFILE):], family, len(keys))
    else:
        blocks = parse_block_list(spec, len(keys) if family else None)
    anchors_spec = anchor_frames.strip().lower()
    anchors = None if anchors_spec == AUTO else parse_frame_list(anchors_spec)
    return FisSettings(blocks, groups, pattern, interpolation, anchors, start_percent, end_percent,
                       dense_first_step=preset.get("dense_first_step", False),
                       dense_final_step=preset.get("dense_final_step", False))


def say_replaced(quality: str, preset: dict, given: dict):
    """One log line where a prompt sets a widget that the ``quality`` preset replaces to a value of its own (not the
    widget's default, which every prompt carries): a prompt from a script or another front end, where nothing
    switched ``quality`` to ``custom`` when the widget was set, would otherwise run without it unawares."""
    defaults = FrameInterleavedSparsity.INPUT_TYPES()["required"]
    replaced = [f"{name} {value!r} with {preset[name]!r}" for name, value in given.items()
                if name in preset and not same_value(value, preset[name]) and not same_value(value, defaults[name][1]["default"])]
    if replaced:
        LOG.warning("FIS: quality '%s' replaces %s; set quality to 'custom' to use the prompt's value%s", quality,
                    ", ".join(replaced), "s" if len(replaced) > 1 else "")


def same_value(a, b) -> bool:
    """Whether two widget values are the same setting (text compared as the node reads it)."""
    return a.strip().lower() == b.strip().lower() if isinstance(a, str) and isinstance(b, str) else a == b


def profile_blocks(spec: str, family: FamilyAdapter | None, num_blocks: int) -> tuple[int, ...]:
    """``NAME`` or ``NAME:K`` (after ``profile:``): the K blocks of least defect in the profile NAME that FIS Calibrate
    measured on this model; without K as many as ``auto`` makes sparse, so that the compute stays that of ``auto``.
    ``family`` None (no model to check against: the Raylight node's driver, or a model FIS does not support, which
    runs dense) checks the name, the file and K against the profile alone, and gives no blocks."""
    name, colon, count = spec.partition(":")
    profile = load_profile(name, "sparse_blocks")
    if family is None:
        num_blocks = profile["blocks"]
    elif profile["family"] != family.name or profile["blocks"] != num_blocks:
        raise ValueError(f"sparse_blocks: profile {quoted(name)} was measured on a {profile['family']} model of "
                         f"{profile['blocks']} blocks, and this is a {family.name} model of {num_blocks} blocks; "
                         f"calibrate this model with FIS Calibrate")
    if not colon:
        k = len(family.default_blocks(num_blocks)) if family else 0
    else:
        form = f"'profile:{name}:K' with K the number of sparse blocks, 0-{num_blocks}"
        k = parse_int(count, "sparse_blocks", form)
        if not 0 <= k <= num_blocks:
            raise ValueError(f"sparse_blocks: {k} sparse blocks is out of range; expected {form}")
    return least_defect_blocks(profile, k) if family else ()


PRESET_TOOLTIP = (
    "balanced: all blocks but the first and last sparse, G=2, corrected interpolation (a 14B model at 720p: 2.9x "
    "per step; the test model trained here: 28.6 dB from dense). faithful: every block sparse, but the first step "
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
        return {"required": {
            "model": ("MODEL", {"tooltip": model_tooltip(FAMILIES)}),
            "quality": ([*PRESETS, CUSTOM], {"default": "balanced", "tooltip": PRESET_TOOLTIP}),
            "sparse_blocks": ("STRING", {"default": AUTO, "tooltip": " ".join([
                "Blocks that compute a subset of the frames (with quality 'custom'): 'auto' (all but the first and "
                "last block), 'all', numbers and ranges such as '4-35' or '0,2,5-9', or 'profile:NAME': as many "
                "blocks as 'auto', those where FIS Calibrate measured the least defect on this model "
                "('profile:NAME:K': the K best). Others stay dense."]
                + [f.blocks_note for f in FAMILIES if f.blocks_note])}),
            "groups": ("INT", {"default": 2, "min": 1, "max": 8, "tooltip":
                "Interleaved frame groups G: each sparse block computes about 1/G of the frames, and every frame is "
                "recomputed at least once every G sparse blocks. 2 is about 2.5-3x faster at 720p; 1 turns FIS off."}),
            "pattern": (list(PATTERNS), {"default": "interleave", "tooltip":
                "interleave: frame f belongs to group f mod G (neighbours of a skipped frame are computed). "
                "contiguous: each group is a run of consecutive frames."}),
            "interpolation": (list(INTERPOLATIONS), {"default": "corrected", "tooltip":
                "How a skipped frame gets the block's update: corrected (linear, plus a correction for the frame's "
                "own input, fitted on the computed frames in every block and step: the most faithful), linear "
                "between the nearest computed frames, the nearest computed frame's, or none (the frame passes "
                "through unchanged)."}),
            "anchor_frames": ("STRING", {"default": AUTO, "tooltip":
                "Latent frames every block computes, e.g. '0' or '0,-1' (negative counts from the end). 'auto': the "
                "frames the conditioning fixes (the first frame of image-to-video). Empty: none."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "Part of the sampling schedule where FIS is on: from here..."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "...to here. Outside it the model runs dense."}),
        }}

    @classmethod
    def IS_CHANGED(cls, quality="balanced", sparse_blocks=AUTO, **_):
        """ComfyUI reruns the node (and what follows it) when this changes: with ``profile:NAME``, when the profile's
        file does (a recalibration), which the widget values alone do not tell."""
        spec = PRESETS.get(quality, {}).get("sparse_blocks", sparse_blocks).strip()
        if not spec.lower().startswith(PROFILE):
            return ""
        return profile_fingerprint(spec[len(PROFILE):].partition(":")[0])

    def patch(self, model, quality, sparse_blocks, groups, pattern, interpolation, anchor_frames, start_percent,
              end_percent):
        settings = settings_from_widgets(model, sparse_blocks, groups, pattern, interpolation, anchor_frames,
                                         start_percent, end_percent, quality)
        return (apply_fis(model, settings),)
