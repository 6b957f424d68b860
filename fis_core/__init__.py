"""Frame Interleaved Sparsity: the pure-torch core (no ComfyUI imports)."""
from .cost import BLOCK_MS, block_ms, estimated_speedup, forward_ms
from .frames import FramePlan, build_plan, fit_sources, gather, interpolation_sources, kept_before, restore, token_index
from .layout import FrameLayout
from .correction import CorrectionForm, FitSums, correction_flops
from .schedule import (INTERPOLATIONS, PATTERNS, FisSchedule, check_choice, format_block_list, parse_block_list,
                       parse_frame_list)

__all__ = [
    "BLOCK_MS", "block_ms", "estimated_speedup", "forward_ms",
    "CorrectionForm", "FisSchedule", "FitSums", "FrameLayout", "check_choice", "fit_sources", "correction_flops", "FramePlan", "INTERPOLATIONS", "PATTERNS", "build_plan", "format_block_list",
    "gather", "interpolation_sources", "kept_before", "token_index", "parse_block_list", "parse_frame_list", "restore",
]
