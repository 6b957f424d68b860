"""The one place that turns the FIS node's widget values into settings: the ``quality`` presets, ``auto``, ``all``,
block lists and profiles, and the anchors. The node, the Raylight node's check on the driver and the schedule view's
route (``GET /fis/schedule``) all read the widgets here, so they cannot disagree, and neither can their errors."""
from __future__ import annotations

from ...fis_core import check_choice, parse_block_list, parse_frame_list
from ...fis_core.widget_text import parse_int, quoted
from ..calibration.profiles import least_defect_blocks, load_profile
from ..families import FamilyAdapter
from ..patching.fis import FisSettings

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
#: The node's widgets after ``model``, with the values a missing one takes.
WIDGETS = {"quality": CUSTOM, "sparse_blocks": AUTO, "groups": 2, "pattern": "interleave", "interpolation": "corrected",
           "anchor_frames": AUTO, "start_percent": 0.0, "end_percent": 1.0}
#: The widgets a preset sets: under the V3 schema they exist only in ``quality``'s ``custom`` option.
PRESET_WIDGETS = tuple(name for name in WIDGETS if any(name in preset for preset in PRESETS.values()))


def resolve_settings(widgets: dict, family: FamilyAdapter | None, blocks: int | None) -> FisSettings:
    """The settings the FIS node applies for ``widgets`` (its widget values by name; a missing one takes its value
    in :data:`WIDGETS`) on a model of ``family`` with ``blocks`` blocks; a ValueError names the widget and the valid
    form. A ``quality`` preset other than ``custom`` sets the widgets it names (:data:`PRESETS`). ``family`` None
    checks the forms alone (the Raylight node's driver, whose model is in the workers, or a model FIS does not
    support): no block count to check against, and ``auto`` and profiles give no blocks (a profile is checked against
    itself: its name, its file, K)."""
    values = applied_widgets(widgets)
    preset = PRESETS.get(values["quality"], {})
    num_blocks = blocks if family is not None else 0
    spec = values["sparse_blocks"].strip().lower()
    if spec == AUTO:
        sparse = family.record.default_blocks(num_blocks) if family else ()
    elif spec == ALL:
        sparse = tuple(range(num_blocks))
    elif spec.startswith(PROFILE):
        sparse = profile_blocks(values["sparse_blocks"].strip()[len(PROFILE):], family, num_blocks)
    else:
        sparse = parse_block_list(spec, num_blocks if family else None)
    anchors_spec = values["anchor_frames"].strip().lower()
    anchors = None if anchors_spec == AUTO else parse_frame_list(anchors_spec)
    return FisSettings(sparse, values["groups"], values["pattern"], values["interpolation"], anchors,
                       values["start_percent"], values["end_percent"],
                       dense_first_step=preset.get("dense_first_step", False),
                       dense_final_step=preset.get("dense_final_step", False))


def applied_widgets(widgets: dict) -> dict:
    """Every widget's value as the node applies it: ``widgets``, missing ones from :data:`WIDGETS`, and those the
    ``quality`` preset sets from it (a ValueError for an unknown preset)."""
    values = {**WIDGETS, **widgets}
    check_choice("quality", values["quality"], (*PRESETS, CUSTOM))
    return {**values, **{name: value for name, value in PRESETS.get(values["quality"], {}).items() if name in WIDGETS}}


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
        k = len(family.record.default_blocks(num_blocks)) if family else 0
    else:
        form = f"'profile:{name}:K' with K the number of sparse blocks, 0-{num_blocks}"
        k = parse_int(count, "sparse_blocks", form)
        if not 0 <= k <= num_blocks:
            raise ValueError(f"sparse_blocks: {k} sparse blocks is out of range; expected {form}")
    return least_defect_blocks(profile, k) if family else ()
