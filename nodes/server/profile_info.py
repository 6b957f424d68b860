"""What the schedule view asks the server about a calibration profile, served as
``GET /fis/profile?name=NAME[&count=K][&family=F&blocks=N]``: the profile's measurements and the blocks the FIS node
would make sparse for ``sparse_blocks`` ``profile:NAME[:K]`` on a model of family F and N blocks (without them, on
the model the profile was measured on). The blocks come from the node's own :func:`~..ui.fis_widgets.profile_blocks`, so
the view and the node cannot disagree, and neither can their errors.
"""
from __future__ import annotations

from ..families import FAMILIES
from ..ui.fis_widgets import profile_blocks
from ..calibration.profiles import check_name, load_profile, profile_path

WIDGET = "sparse_blocks"


class RequestError(ValueError):
    """A request the route refuses: its HTTP status and the message (naming the widget, as the node's)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def profile_info(name: str, count: str | None = None, family: str | None = None, blocks: str | None = None) -> dict:
    """``{"name", "family", "blocks", "steps", "defect", "chosen"}`` for profile ``name``; a RequestError
    (400 a bad name or model, 404 no such profile, 422 what the node would refuse) otherwise."""
    try:
        check_name(name, WIDGET)
    except ValueError as error:
        raise RequestError(400, str(error)) from None
    if not profile_path(name, WIDGET).is_file():
        raise RequestError(404, f"{WIDGET}: there is no profile '{name}'; run a FIS Calibrate node with "
                                       f"profile_name '{name}' first")
    try:
        profile = load_profile(name, WIDGET)
    except ValueError as error:
        raise RequestError(422, str(error)) from None
    family_name = profile["family"] if family is None else family
    adapter = next((f for f in FAMILIES if f.name == family_name), None)
    if adapter is None:
        raise RequestError(400 if family else 422, f"{WIDGET}: '{family_name}' is not a model family FIS knows")
    if blocks is not None and not blocks.isdigit():
        raise RequestError(400, f"blocks: '{blocks[:40]}' is not a number of blocks")
    try:
        spec = name if count is None else f"{name}:{count}"
        chosen = profile_blocks(spec, adapter, profile["blocks"] if blocks is None else int(blocks))
    except ValueError as error:
        raise RequestError(422, str(error)) from None
    return {"name": name, "family": profile["family"], "blocks": profile["blocks"], "steps": profile.get("steps"),
            "defect": profile["defect"], "chosen": list(chosen)}
