"""FPS attention (FP8 + 3D-tile sparse attention): the pure-torch core and, where Triton is, the kernel."""
from .attention import BACKENDS, FpsSettings, fps_attention, fps_attention_op, triton_reason
from .mask import PATTERNS, kept_lists, kept_per_row, pooled_scores, topk_pattern, window_pattern
from .quant import FP8_MAX, dequantize_tiles, fake_quantize_probabilities, fake_quantize_tiles, quantize_tiles
from .reference import PRECISIONS, tile_attention_reference
from .tiles import SHAPES, TILE_TOKENS, TileLayout, choose_tile, parse_tile

__all__ = [
    "BACKENDS", "FP8_MAX", "PATTERNS", "PRECISIONS", "SHAPES", "TILE_TOKENS", "FpsSettings", "TileLayout", "choose_tile",
    "dequantize_tiles", "fake_quantize_probabilities", "fake_quantize_tiles", "fps_attention", "fps_attention_op", "kept_lists",
    "kept_per_row", "parse_tile", "pooled_scores", "quantize_tiles", "tile_attention_reference", "topk_pattern",
    "triton_reason", "window_pattern",
]
from .steps import in_ranges, parse_percent_ranges  # noqa: E402

__all__ += ["in_ranges", "parse_percent_ranges"]
