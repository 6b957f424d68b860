"""The "FIS Timer" node: MODEL in, the same model timed out, for FIS Compare's speed-up.

FIS cannot know how long a run without it takes, and ComfyUI keeps no time per node. A wrapper on the sampler loop
of a model clone can: it times each sampler that uses the clone (the denoising steps; not model loading, text
encoding or decoding), and the node hands the times on as an ``FIS_TIMING`` for FIS Compare to read.
"""
from __future__ import annotations

import time

import comfy.patcher_extension
from comfy_execution.utils import get_executing_context

WRAPPER_KEY = "comfyui_fis_timer"


class SamplingTimes:
    """Seconds of sampling per sampler node, the node's latest run (a sampler ComfyUI did not rerun keeps the time
    of the run that made its cached output). Filled while the samplers run, read by FIS Compare afterwards."""

    def __init__(self):
        self.runs: dict[str | None, tuple[str | None, float]] = {}  # sampler node id -> (prompt id, seconds)

    def record(self, seconds: float):
        context = get_executing_context()
        node, prompt = (context.node_id, context.prompt_id) if context else (None, None)
        earlier_prompt, earlier = self.runs.get(node, (None, 0.0))
        self.runs[node] = (prompt, seconds + (earlier if node in self.runs and earlier_prompt == prompt else 0.0))

    @property
    def seconds(self) -> float | None:
        """Total over the sampler nodes, or None before any ran."""
        return sum(seconds for _, seconds in self.runs.values()) if self.runs else None

    def from_earlier_prompt(self, prompt_id: str | None) -> bool:
        """Whether some sampler's time is from a prompt before ``prompt_id`` (its output was cached)."""
        return any(prompt != prompt_id for prompt, _ in self.runs.values())

    def sampler_sample_wrapper(self, executor, *args, **kwargs):
        import comfy.model_management  # here, not at import: importing it picks the device
        comfy.model_management.synchronize()
        started = time.perf_counter()
        result = executor(*args, **kwargs)
        comfy.model_management.synchronize()
        self.record(time.perf_counter() - started)
        return result


class FISTimer:
    """Time the sampling runs of a model for FIS Compare."""

    DESCRIPTION = ("Times the sampling of every sampler that uses this model (the denoising steps only: not model "
                   "loading, text encoding or decoding) for FIS Compare's speed-up. Put one on each branch of an A/B "
                   "graph, after FIS/FPS and LoRA, right before the sampler. The first run after starting ComfyUI "
                   "includes one-time warm-up (kernel autotuning, compilation): run twice for steady figures.")
    CATEGORY = "model_patches/FIS"
    RETURN_TYPES = ("MODEL", "FIS_TIMING")
    RETURN_NAMES = ("model", "timing")
    OUTPUT_TOOLTIPS = ("The same model, timed (a copy; the input model is unchanged).",
                       "The sampling time, for FIS Compare's reference_timing or accelerated_timing.")
    FUNCTION = "time"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model a sampler of this branch uses."}),
        }, "optional": {
            "timing": ("FIS_TIMING", {"tooltip":
                "Another FIS Timer's timing to add this model's sampling to, for a branch with two samplers: "
                "Wan 2.2 A14B's low-noise expert takes the high-noise expert's timing."}),
        }}

    def time(self, model, timing=None):
        timing = timing if timing is not None else SamplingTimes()
        timed = model.clone()
        timed.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY)
        timed.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY,
                                   timing.sampler_sample_wrapper)
        return (timed, timing)
