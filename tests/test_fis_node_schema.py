"""The FIS node as the host runs it: in the V3 schema where the host has ``io.DynamicCombo`` (``quality``'s presets
hold no widget, ``custom`` holds those a preset sets), and an API-format prompt read by the host's own input
machinery (``execution.get_input_data``, ``build_nested_inputs``): a value the preset replaces is said in one log
line whatever form the prompt names it in, and the previous release's flat prompts keep running under ``custom``."""
import logging

import pytest

from tiny_models import tiny_wan


@pytest.fixture(scope="module")
def wan(host):
    return tiny_wan(num_layers=6)


@pytest.fixture(scope="module")
def node(host):
    from comfyui_fis.nodes import FIS_NODE
    from comfyui_fis.nodes.ui.fis_node_v3 import dynamic_combo_available
    if not dynamic_combo_available():
        pytest.skip("this host has no io.DynamicCombo: the FIS node is the V1 one (tests/test_wan_host.py)")
    return FIS_NODE


def run_prompt_inputs(node, inputs: dict):
    """The FIS node run on ``inputs`` (an API prompt's inputs, the model given as the object) as the host's executor
    reads them: the node's settings."""
    import execution
    from comfy_api.latest import _io
    data, missing, v3_data = execution.get_input_data(inputs, node, "1")
    assert not missing
    values = _io.build_nested_inputs({name: value[0] for name, value in data.items()}, v3_data)
    patched = node.execute(**values).result[0]
    patches = patched.model_options["transformer_options"]["patches_replace"]["dit"].values()
    return next(iter(patches)).runtime.settings


def test_quality_is_a_dynamic_combo_whose_presets_hold_no_widget(node):
    from comfyui_fis.nodes.ui.fis_widgets import PRESET_WIDGETS
    info = node.GET_NODE_INFO_V1()["input"]
    kind, spec = info["required"]["quality"]
    assert kind == "COMFY_DYNAMICCOMBO_V3"
    options = {option["key"]: option["inputs"] for option in spec["options"]}
    assert list(options) == ["balanced", "faithful", "fastest", "custom"]
    assert all(not inputs.get("required") and not inputs.get("optional") for key, inputs in options.items()
               if key != "custom")
    assert list(options["custom"]["optional"]) == list(PRESET_WIDGETS) == [
        "sparse_blocks", "groups", "interpolation", "start_percent", "end_percent"]
    assert list(info["required"]) == ["model", "quality", "pattern", "anchor_frames"]


@pytest.mark.parametrize("key", ["groups", "quality.groups"])
def test_a_prompt_value_a_preset_replaces_is_said_in_one_log_line(node, wan, caplog, key):
    """quality 'balanced' with groups 1 (the previous release's flat name, or the custom option's own) runs G=2
    and says so; without it, nothing is said."""
    base = {"model": wan, "quality": "balanced", "pattern": "interleave", "anchor_frames": "auto"}
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        settings = run_prompt_inputs(node, {**base, key: 1, "sparse_blocks": "40-10"})
    assert (settings.groups, settings.sparse_blocks) == (2, (1, 2, 3, 4))
    assert [r.getMessage() for r in caplog.records] == [
        "FIS: quality 'balanced' replaces sparse_blocks '40-10' with 'auto', groups 1 with 2; set quality to 'custom' "
        "to use the prompt's values"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        assert run_prompt_inputs(node, base).groups == 2
    assert caplog.records == []


def test_custom_runs_its_own_widgets_and_the_previous_release_s_flat_names(node, wan):
    base = {"model": wan, "quality": "custom", "pattern": "contiguous", "anchor_frames": "0"}
    nested = run_prompt_inputs(node, {**base, "quality.sparse_blocks": "1-3", "quality.groups": 3,
                                      "quality.interpolation": "linear", "quality.start_percent": 0.2,
                                      "quality.end_percent": 0.9})
    flat = run_prompt_inputs(node, {**base, "sparse_blocks": "1-3", "groups": 3, "interpolation": "linear",
                                    "start_percent": 0.2, "end_percent": 0.9})
    for settings in (nested, flat):
        assert (settings.sparse_blocks, settings.groups, settings.interpolation) == ((1, 2, 3), 3, "linear")
        assert (settings.start_percent, settings.end_percent, settings.pattern, settings.anchors) == \
            (0.2, 0.9, "contiguous", (0,))
    with pytest.raises(ValueError, match="sparse_blocks: range .40-10. runs backwards"):
        run_prompt_inputs(node, {**base, "quality.sparse_blocks": "40-10"})


def test_an_unknown_preset_names_the_widget(node, wan):
    """The host does not check a DynamicCombo's choice against its options (tried: validate_prompt passes it); the
    node does, at once."""
    with pytest.raises(ValueError, match="quality: 'best' is unknown; choose one of balanced, faithful, fastest, custom"):
        run_prompt_inputs(node, {"model": wan, "quality": "best", "pattern": "interleave", "anchor_frames": "auto"})
