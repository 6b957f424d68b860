"""The "FP8 + Sparse Attention (FPS)" node: MODEL in, MODEL out."""
from __future__ import annotations

from ...fis_core.fps import PATTERNS, PRECISIONS, FpsSettings, parse_percent_ranges, parse_tile
from ..families import FPS_FAMILIES, model_tooltip, named
from ..patching.fps import apply_fps


def fps_settings_from_widgets(precision, tile, sparsity, pattern, dense_steps) -> tuple[FpsSettings, tuple]:
    """The widget values checked (errors name the widget): the settings and the dense parts of the schedule."""
    return FpsSettings(precision, float(sparsity), pattern, parse_tile(tile)), parse_percent_ranges(dense_steps)


class FPSAttention:
    """Run the video self-attention of a model through per-tile FP8 and 3D-tile sparse attention."""

    DESCRIPTION = ("FPSAttention, inference side: video self-attention in FP8 (a scale per 3D tile of tokens) and "
                   "only between kept tile pairs (local windows in time and space plus the first frame, or the "
                   f"top-k by pooled scores), with a Triton kernel on the GPU. {named(FPS_FAMILIES, 'and')}; text "
                   "cross-attention is untouched. "
                   "Stacks with Frame Interleaved Sparsity in either order. Training-free here: the quality cost "
                   "grows with sparsity; see the README's table.")
    CATEGORY = "model_patches/FIS"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with FPS attention (a patched copy; the input model is unchanged).",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": model_tooltip(FPS_FAMILIES) + " Other models pass through unchanged, "
                                                                        "with a warning."}),
            "precision": (list(PRECISIONS), {"default": "fp8", "tooltip":
                "fp8: Q, K, V quantised to e4m3 with one scale per tile, and the softmax probabilities with a fixed "
                "scale (FP8 tensor cores; Ada or Hopper). bf16: no quantisation, sparsity alone. bf16 with sparsity "
                "0 is the original attention, bit for bit."}),
            "tile": ("STRING", {"default": "auto", "tooltip":
                "3D tile of tokens, frames x rows x columns, 128 (or 64) tokens, e.g. '1x8x16': the unit of the "
                "FP8 scales and of the sparsity pattern. 'auto': at sparsity 0, runs of 128 consecutive tokens; "
                "otherwise the tile that pads the frame grid least (1x8x16 for a grid of 45x80 tokens a frame, 1x32x4 "
                "for 30x52)."}),
            "sparsity": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.95, "step": 0.05, "tooltip":
                "Fraction of tile pairs skipped. 0 (the default) is FP8 alone, close to lossless, and only over "
                "PyTorch SDPA: where FlashAttention-3 or ComfyUI's INT8 / Sage attention is installed, those run "
                "instead (measured faster or more accurate). Sparsity is faster (a 14B model's attention at 720p on "
                "an H100: 1.5x over FlashAttention-3 at 0.5, 2.6x at 0.75) but costs more, training-free: raise it "
                "while comparing outputs. The tiles of the first frame are always kept (as "
                "keys for every query, and as queries against every key), so the first frame is never starved."}),
            "pattern": (list(PATTERNS), {"default": "window", "tooltip":
                "window: each tile keeps its nearest tiles in time and space (a box shaped like the video), fixed "
                "per shape. topk: per head, the tiles with the highest mean-pooled query-key scores."}),
            "dense_steps": ("STRING", {"default": "40-60", "tooltip":
                "Parts of the schedule (percent, read as ComfyUI's start/end percent) that run exact attention, "
                "e.g. '40-60' or '0-20,80-100'; empty for none. The paper finds middle steps the least tolerant "
                "of quantisation and sparsity errors."}),
        }}

    def patch(self, model, precision, tile, sparsity, pattern, dense_steps):
        return (apply_fps(model, *fps_settings_from_widgets(precision, tile, sparsity, pattern, dense_steps)),)
