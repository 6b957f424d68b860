"""A node the test server loads beside the pack (linked into its temporary ``custom_nodes``): a text conditioning
without a text encoder, the tiny models' own random embedding (``tiny_models.text``), so that a prompt can sample a
tiny model through the real server. No text encoder small enough exists: the host builds them at full size."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import text  # noqa: E402


class FISTestConditioning:
    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "conditioning"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 1, "min": 0, "max": 2**31})}}

    def conditioning(self, seed):
        return (text(seed),)


NODE_CLASS_MAPPINGS = {"FISTestConditioning": FISTestConditioning}
