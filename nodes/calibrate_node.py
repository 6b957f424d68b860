"""The "FIS Calibrate" node: MODEL in, the same model out, measured during its next sampling run (see
:mod:`.calibration`)."""
from __future__ import annotations

from .calibration import apply_calibration
from .families import FAMILIES, model_tooltip


class FISCalibrate:
    """Measure where FIS would do badly on the connected model, for the FIS node's ``sparse_blocks`` = ``profile:NAME``."""

    DESCRIPTION = ("Put between the model loader and the sampler for one run, on the model without FIS. The run stays "
                   "dense (its output is exactly the model's), and while it runs the node measures, per block and "
                   "step, how much of the block's update on the frames FIS would skip the interpolation misses. At "
                   "the end it saves the profile in ComfyUI's user directory (fis_profiles/NAME.json); the FIS node "
                   "then takes sparse_blocks 'profile:NAME' (quality 'custom'). Costs about one dense sampling run "
                   "plus a few percent, at most about two.")
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
                "Use it on the FIS node as sparse_blocks 'profile:NAME'. The run costs about one dense sampling "
                "run plus a few percent (at most about two)."}),
        }}

    def calibrate(self, model, profile_name):
        return (apply_calibration(model, profile_name),)
