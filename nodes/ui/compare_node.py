"""The "FIS Compare (A/B fidelity)" node: the frames of a reference run and of an accelerated run in, a side-by-side
video and a fidelity report out (shown on the node by web/fis_compare.js)."""
from __future__ import annotations

from comfy_execution.utils import get_executing_context

from ..compare.figures import check_clips, measure, report
from ..compare.side_by_side import side_by_side

NOT_TIMED = "put an FIS Timer right before each branch's sampler"


def timing_line(reference_timing, accelerated_timing) -> str:
    """The sampling times of the two runs and the speed-up, or what is missing to know them."""
    if reference_timing is None and accelerated_timing is None:
        return f"sampling time: not measured ({NOT_TIMED})"
    context = get_executing_context()
    prompt_id = context.prompt_id if context else None
    parts, seconds = [], []
    for name, timing in (("reference", reference_timing), ("accelerated", accelerated_timing)):
        if timing is None:
            parts.append(f"{name} not timed ({NOT_TIMED})")
        elif timing.seconds is None:
            parts.append(f"{name} not timed (no sampler ran with its FIS Timer's model)")
        else:
            seconds.append(timing.seconds)
            cached = " (an earlier run: its output was cached)" if timing.from_earlier_prompt(prompt_id) else ""
            parts.append(f"{name} {timing.seconds:.1f} s{cached}")
    speedup = f", speed-up {seconds[0] / seconds[1]:.2f}x" if len(seconds) == 2 and seconds[1] > 0 else ""
    return f"sampling time: {', '.join(parts)}{speedup}"


class FISCompare:
    """Measure an accelerated run against a reference run of the same seed, and show them side by side."""

    DESCRIPTION = ("A/B fidelity of an accelerated run (FIS, FPS, any cache) against a reference run with the same "
                   "seed: PSNR, worst frame, SSIM and temporal error as the README's quality tables define them, the "
                   "sampling times and speed-up from FIS Timer nodes, and a video of reference | accelerated | "
                   "amplified difference. The report shows on the node and comes out as text.")
    CATEGORY = "model_patches/FIS"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("side_by_side", "report")
    OUTPUT_TOOLTIPS = ("Reference | accelerated | difference, frame by frame, for Save Animated WEBP or Create Video.",
                       "The report shown on the node.")
    OUTPUT_NODE = True
    FUNCTION = "compare"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "reference": ("IMAGE", {"tooltip": "Frames of the reference run (e.g. dense), from VAE Decode."}),
            "accelerated": ("IMAGE", {"tooltip": "Frames of the accelerated run (same seed, size and length)."}),
            "difference_gain": ("FLOAT", {"default": 4.0, "min": 1.0, "max": 100.0, "step": 1.0, "tooltip":
                "How much the difference panel amplifies |accelerated - reference| (written on the frame). "
                "Raise it when the runs are close."}),
        }, "optional": {
            "reference_timing": ("FIS_TIMING", {"tooltip": "From the FIS Timer on the reference branch's model."}),
            "accelerated_timing": ("FIS_TIMING", {"tooltip": "From the FIS Timer on the accelerated branch's model."}),
        }}

    def compare(self, reference, accelerated, difference_gain, reference_timing=None, accelerated_timing=None):
        check_clips(reference, accelerated)
        if not difference_gain > 0:
            raise ValueError(f"difference_gain: must be above 0; got {difference_gain}")
        fidelity = measure(reference, accelerated)
        frames, height, width, _ = reference.shape
        text = report(fidelity, frames, width, height, difference_gain,
                      timing_line(reference_timing, accelerated_timing))
        image = side_by_side(reference, accelerated, difference_gain, fidelity.frame_psnr)
        return {"ui": {"text": [text]}, "result": (image, text)}
