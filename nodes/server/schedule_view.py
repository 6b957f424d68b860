"""What the FIS node's schedule view draws, served as ``GET /fis/schedule``: for the node's widget values on a model
(its family and blocks, the latent frames drawn, whether ``auto`` anchors stand for an image-to-video clip), the
cells and the text lines. The widgets are read by the node's own :func:`~..ui.fis_widgets.resolve_settings` and the
picture is the core's (:mod:`...fis_core.schedule_image`), so the view draws what the node applies; it only draws.
"""
from __future__ import annotations

from dataclasses import replace

from ...fis_core import estimated_speedup
from ...fis_core.schedule import MAX_BLOCKS
from ...fis_core.schedule_image import CELL_KINDS, COLORS, LEGEND, dense_step_lines, estimate_lines, schedule_cells
from ...fis_core.widget_text import parse_int, quoted
from ..families import FAMILIES
from ..ui.fis_widgets import PROFILE, WIDGETS, applied_widgets, resolve_settings
from .profile_info import RequestError, profile_info

#: The most latent frames the view draws (its frames input stops there).
MAX_FRAMES = 256
#: One letter per cell kind: a row of cells travels as one string.
CODES = {kind: kind[0] for kind in CELL_KINDS}
#: How the view draws each kind: its letter, colour and legend text, in the legend's order.
LEGEND_ENTRIES = [{"kind": kind, "code": CODES[kind], "color": COLORS[kind], "label": LEGEND[kind]} for kind in CELL_KINDS]


def schedule_view(query: dict) -> dict:
    """``{"cells", "lines", "profile", "legend"}`` for a query of ``family``, ``blocks``, ``frames``,
    ``image_to_video`` (``1`` or ``0``) and the node's widgets by name (a missing one takes its default); ``cells`` is
    one string per block, one letter per latent frame (:data:`CODES`), ``profile`` the measured defect and the blocks
    chosen where ``sparse_blocks`` names a profile. A RequestError (400 a bad model, 404 no such profile, 422 what the
    node would refuse, with the node's message) otherwise."""
    family = next((f for f in FAMILIES if f.name == query.get("family")), None)
    if family is None:
        raise RequestError(400, f"family: {quoted(str(query.get('family')))} is not a model family FIS knows")
    blocks = _count(query, "blocks", MAX_BLOCKS)
    frames = _count(query, "frames", MAX_FRAMES)
    widgets = {name: query[name] for name in WIDGETS if name in query}
    try:
        for name, kind in (("groups", int), ("start_percent", float), ("end_percent", float)):
            if name in widgets:
                widgets[name] = _number(widgets[name], name, kind)
        sparse_blocks = applied_widgets(widgets)["sparse_blocks"].strip()
        profile = None
        if sparse_blocks.lower().startswith(PROFILE):
            name, colon, count = sparse_blocks[len(PROFILE):].partition(":")
            answer = profile_info(name, count if colon else None, family.name, str(blocks))
            profile = {key: answer[key] for key in ("name", "defect", "chosen")}
        settings = resolve_settings(widgets, family, blocks)
    except ValueError as error:
        if isinstance(error, RequestError):
            raise
        raise RequestError(422, str(error)) from None
    anchors = settings.anchors
    if anchors is None:
        anchors = family.record.image_anchors if query.get("image_to_video") == "1" else ()
    schedule = replace(settings.schedule, anchors=anchors).fit_to(frames)
    per_step = estimated_speedup(schedule, blocks, frames, "720p")
    return {"cells": ["".join(CODES[kind] for kind in row) for row in schedule_cells(schedule, blocks, frames)],
            "lines": estimate_lines(schedule, blocks, frames)
            + dense_step_lines(settings.dense_first_step, settings.dense_final_step, per_step),
            "profile": profile, "legend": LEGEND_ENTRIES}


def _count(query: dict, name: str, most: int) -> int:
    """The whole number ``query[name]``, 1 to ``most``; a RequestError (400) otherwise."""
    text = str(query.get(name))
    if not (text.isdigit() and len(text) <= len(str(most)) and 1 <= int(text) <= most):
        raise RequestError(400, f"{name}: {quoted(text)} is not a number of {name} from 1 to {most}")
    return int(text)


def _number(text: str, widget: str, kind: type):
    """``text`` as the widget's number; a ValueError names the widget."""
    if kind is int:
        return parse_int(text, widget, "a whole number")
    number = _float(text)
    if number is None:
        raise ValueError(f"{widget}: {quoted(text)} is not a number")
    return number


def _float(text: str) -> float | None:
    """``text`` as a float, None where it is not one (or too long to be a widget's value)."""
    try:
        return float(text) if len(text) <= 40 else None
    except ValueError:
        return None
