"""The FIS node in the host's V3 schema (``comfy_api.latest.io``), where the host has ``io.DynamicCombo``: ``quality``
is a combo whose ``custom`` option holds the widgets a preset sets (``PRESET_WIDGETS``) and whose presets hold none,
so a workflow or the front end's prompt cannot carry a value a preset ignores. A prompt written by hand or by a
script still can (the previous release's flat names, ``groups``, or another option's ``quality.groups``): the node
takes every input (``accept_all_inputs``), says in the log what its preset replaces (:func:`~.fis_node.say_replaced`)
and, under ``custom``, reads the flat names where the option's own are missing, so such prompts keep running.

Hosts without ``io.DynamicCombo`` (ComfyUI 0.3.64) get the V1 node (:class:`~.fis_node.FrameInterleavedSparsity`,
flat widgets) under the same name; the front end's view (``web/fis_view.js``) loads a saved workflow into either."""
from __future__ import annotations

from ..patching.fis import apply_fis
from .fis_node import MODEL_TOOLTIP, PRESET_TOOLTIP, FrameInterleavedSparsity, profile_change_key, \
    settings_from_widgets, widget_specs
from .fis_widgets import CUSTOM, PRESET_WIDGETS, PRESETS


def dynamic_combo_available() -> bool:
    """Whether the host's V3 schema has what this node needs: ``io.DynamicCombo`` and ``accept_all_inputs``."""
    try:
        from comfy_api.latest import io
    except ImportError:
        return False
    return hasattr(io, "DynamicCombo") and "accept_all_inputs" in getattr(io.Schema, "__dataclass_fields__", {})


def v3_input(io, name: str, spec: tuple, optional: bool = False):
    """The V3 input of a V1 widget spec ``(type, options)`` (:func:`~.fis_node.widget_specs`)."""
    kind, options = spec
    common = {"optional": optional, "tooltip": options.get("tooltip"), "default": options.get("default")}
    if isinstance(kind, list):
        return io.Combo.Input(name, options=kind, **common)
    bounds = {key: options[key] for key in ("min", "max", "step") if key in options}
    return {"STRING": io.String.Input, "INT": io.Int.Input, "FLOAT": io.Float.Input}[kind](name, **common, **bounds)


def chosen_values(quality, given: dict) -> tuple[str, dict]:
    """The choice and the value of each widget a preset sets, from ``quality`` as the host hands it (the chosen
    option's values by name with the choice as ``quality``; the bare choice where it is none of the options, which the
    host does not check) and the prompt's other inputs ``given``: the option's own value, else the prompt's under the
    flat name or another option's (``quality.NAME``), else the widget's default."""
    quality = quality if isinstance(quality, dict) else {"quality": quality}
    specs = widget_specs()
    values = {name: specs[name][1]["default"] for name in PRESET_WIDGETS}
    values.update({name: given[key] for name in PRESET_WIDGETS for key in (name, f"quality.{name}") if key in given})
    values.update({name: quality[name] for name in PRESET_WIDGETS if quality.get(name) is not None})
    return quality["quality"], values


def build_node_class():
    """The V3 node class (built on call: the host's ``comfy_api`` is imported only where it has one)."""
    from comfy_api.latest import io

    specs = widget_specs()

    class FrameInterleavedSparsityV3(io.ComfyNode):
        __doc__ = FrameInterleavedSparsity.__doc__

        @classmethod
        def define_schema(cls):
            custom = [v3_input(io, name, specs[name], optional=True) for name in PRESET_WIDGETS]
            options = [io.DynamicCombo.Option(name, []) for name in PRESETS] + [io.DynamicCombo.Option(CUSTOM, custom)]
            common = [v3_input(io, name, spec) for name, spec in specs.items() if name not in PRESET_WIDGETS]
            return io.Schema(
                node_id="FrameInterleavedSparsity", display_name="Frame Interleaved Sparsity (FIS)",
                category=FrameInterleavedSparsity.CATEGORY, description=FrameInterleavedSparsity.DESCRIPTION,
                inputs=[io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                        io.DynamicCombo.Input("quality", options=options, tooltip=PRESET_TOOLTIP), *common],
                outputs=[io.Model.Output(tooltip=FrameInterleavedSparsity.OUTPUT_TOOLTIPS[0])],
                accept_all_inputs=True)

        @classmethod
        def fingerprint_inputs(cls, quality=None, **given):
            choice, values = chosen_values(quality, given)
            return profile_change_key(choice, values["sparse_blocks"])

        @classmethod
        def execute(cls, model, quality, pattern, anchor_frames, **given):
            choice, values = chosen_values(quality, given)
            settings = settings_from_widgets(model, values["sparse_blocks"], values["groups"], pattern,
                                             values["interpolation"], anchor_frames, values["start_percent"],
                                             values["end_percent"], choice)
            return io.NodeOutput(apply_fis(model, settings))

    return FrameInterleavedSparsityV3
