"""UI-format workflows (what the front end saves and the template browser loads) and the API format (what the
server validates and runs), for the node kinds the pack's workflows use.

``to_api`` does what the front end's ``graphToPrompt`` does for them: links by input name, widget values in
the order of the node definition, the hidden extra widget values (``control_after_generate`` after a seed, the
upload button after a file list) skipped, front-end-only nodes (notes) left out.
"""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: A V3 combo whose chosen option adds its own widgets (named ``combo.widget``) right after it.
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
#: Nodes that exist only in the front end.
VIRTUAL_NODES = {"Note", "MarkdownNote"}
#: Input options that add a widget after the input's own, saved in widgets_values but not sent to the server.
EXTRA_WIDGET_OPTIONS = ("control_after_generate", "image_upload", "video_upload", "audio_upload")


def node_definitions() -> dict:
    """The node definitions as the running host's ``GET /object_info`` serves them (from its loaded nodes)."""
    import json

    import nodes
    from comfy_api.internal import _ComfyNodeInternal

    out = {}
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        if issubclass(cls, _ComfyNodeInternal):
            info = cls.GET_NODE_INFO_V1()
        else:
            inputs = cls.INPUT_TYPES()
            info = {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()},
                    "output": cls.RETURN_TYPES, "output_name": getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES),
                    "output_node": getattr(cls, "OUTPUT_NODE", False)}
        out[name] = json.loads(json.dumps(info, default=str))
    return out


def is_widget(spec) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 else {}
    return (isinstance(kind, list) or kind in WIDGET_TYPES or kind == DYNAMIC_COMBO) and not options.get("forceInput")


def widget_inputs(definition: dict) -> list[tuple[str, list]]:
    """(name, spec) of the node's widgets, in the order the front end creates them."""
    inputs = definition["input"]
    order = definition.get("input_order") or {k: list(v) for k, v in inputs.items()}
    return [(name, inputs[section][name]) for section in ("required", "optional")
            for name in order.get(section, []) if is_widget(inputs[section][name])]


def socket_inputs(definition: dict) -> list[tuple[str, str]]:
    """(name, type) of the node's link inputs, in definition order."""
    inputs = definition["input"]
    order = definition.get("input_order") or {k: list(v) for k, v in inputs.items()}
    return [(name, inputs[section][name][0]) for section in ("required", "optional")
            for name in order.get(section, []) if not is_widget(inputs[section][name])]


def option_widgets(name: str, spec, value) -> list[tuple[str, list]]:
    """(name, spec) of the widgets a DynamicCombo ``name`` adds for its chosen ``value`` (none for another kind)."""
    if spec[0] != DYNAMIC_COMBO:
        return []
    option = next((o for o in spec[1]["options"] if o["key"] == value), None)
    if option is None:
        raise ValueError(f"{name}: {value!r} is not one of its options")
    inputs = option["inputs"]
    return [(f"{name}.{key}", inputs[section][key]) for section in ("required", "optional")
            for key in inputs.get(section, {}) if is_widget(inputs[section][key])]


def extra_values(spec) -> int:
    """How many hidden widget values follow this input's own in widgets_values."""
    options = spec[1] if len(spec) > 1 else {}
    return sum(1 for key in EXTRA_WIDGET_OPTIONS if options.get(key))


def to_api(workflow: dict, definitions: dict) -> dict:
    """The API-format prompt of a UI-format ``workflow``; raises ValueError for what it cannot convert."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} ({node['type']}) is muted or bypassed; not handled")
        definition = definitions.get(node["type"])
        if definition is None:
            raise ValueError(f"node {node['id']}: no node type {node['type']!r} on the server")
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []))
        inputs = {}
        pending = widget_inputs(definition)
        while pending:
            name, spec = pending.pop(0)
            if not values:
                raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {name}")
            value = values.pop(0)
            del values[:extra_values(spec)]
            if name not in linked:
                inputs[name] = value
            pending[:0] = option_widgets(name, spec, value)
        if values:
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values too many: {values}")
        for name, link in linked.items():
            inputs[name] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"]}
    return prompt
