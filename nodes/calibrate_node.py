"""The "FIS Calibrate" node: MODEL in, the same model out, measured during its next sampling run (see
:mod:`.calibration`)."""
from __future__ import annotations

from comfy_execution.utils import get_executing_context

from .calibration import apply_calibration
from .families import FAMILIES, model_tooltip


class FISCalibrate:
    """Measure where FIS would do badly on the connected model, for the FIS node's ``sparse_blocks`` = ``profile:NAME``."""

    DESCRIPTION = ("Put between the model loader and the sampler for one run, on the model without FIS. The run stays "
                   "dense (its output is exactly the model's), and while it runs the node runs each block a second "
                   "time as FIS would (on half the frames, the rest interpolated) and measures, per block and step, "
                   "FIS's error there relative to the block's output. At the end it saves the profile in ComfyUI's "
                   "user directory (fis_profiles/NAME.json); the FIS node then takes sparse_blocks 'profile:NAME' "
                   "(quality 'custom'). Costs about 1.5 dense sampling runs, at most about two. On the test model "
                   "trained here the calibrated blocks beat 'auto' at equal compute: 29.1 against 28.3 dB from dense.")
    CATEGORY = "model_patches/FIS"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The same model, measured while it samples (a patched copy; the input model is unchanged).",)
    FUNCTION = "calibrate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": model_tooltip(FAMILIES) + " Without FIS: calibration measures the dense model."}),
            "profile_name": ("STRING", {"default": "my_model", "tooltip":
                "The profile to write (letters, digits, - and _), e.g. 'wan14b_720p'; an existing one is replaced. "
                "Use it on the FIS node as sparse_blocks 'profile:NAME'. The run costs about 1.5 dense sampling "
                "runs (each block runs again on half the frames; at most about two). A cancelled run keeps the earlier "
                "profile of this name."}),
        }}

    def calibrate(self, model, profile_name):
        context = get_executing_context()   # the progress bar goes on this node, not on the sampler's
        return (apply_calibration(model, profile_name, context.node_id if context else None),)
