"""Packaging and manners: the Comfy Registry metadata as the host reads it, requirements that leave torch alone,
the front end registered once, tooltips, descriptions and one category, and one log line per sampling run."""
import logging
import re
import tomllib

import pytest
import torch

from host_path import PACK_ROOT


def requirement_lines(path):
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]


def test_registry_metadata_as_the_host_parses_it(host):
    from comfy_config import config_parser
    config = config_parser.extract_node_configuration(str(PACK_ROOT))
    name = config.project.name
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*", name) and len(name) < 100
    assert "comfyui" not in name.lower()  # the Registry asks node ids not to say ComfyUI
    assert re.fullmatch(r"\d+\.\d+\.\d+", config.project.version)
    assert config.project.description and config.tool_comfy.display_name
    # the view is registered through WEB_DIRECTORY; a [tool.comfy] web entry would load it a second time
    assert config.tool_comfy.web is None


def test_requirements_never_pin_or_reinstall_torch():
    requirements = requirement_lines(PACK_ROOT / "requirements.txt")
    dependencies = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert requirements == dependencies
    assert not [r for r in requirements if re.match(r"(torch|torchvision|torchaudio)\b", r, re.I)]


def test_the_host_serves_the_view_once(host):
    import nodes
    assert __import__("asyncio").run(nodes.load_custom_node(str(PACK_ROOT)))
    web = str(PACK_ROOT / "web")
    assert list(nodes.EXTENSION_WEB_DIRS.values()).count(web) == 1
    assert (PACK_ROOT / "web" / "fis_view.js").read_text().count("app.registerExtension(") == 1


def test_every_widget_has_a_tooltip_and_every_node_a_description(host):
    from comfyui_fis.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "model_patches/FIS"
        assert len(cls.DESCRIPTION) > 40 and NODE_DISPLAY_NAME_MAPPINGS[name]
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
        for section in cls.INPUT_TYPES().values():
            for input_name, spec in section.items():
                assert len(spec[1].get("tooltip", "")) > 10, f"{name}.{input_name} has no tooltip"


def is_widget(spec) -> bool:
    """Whether an input of INPUT_TYPES is a widget (a choice or a value), not a link."""
    return isinstance(spec[0], list) or spec[0] in ("STRING", "INT", "FLOAT", "BOOLEAN")


def test_every_node_has_a_help_page(host):
    """web/docs/<NodeName>.md, the page the front end shows in its node library and properties panel: titled with the
    node's display name, naming every widget, and every picture it shows is there beside it."""
    from comfyui_fis.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    docs = PACK_ROOT / "web" / "docs"
    assert {p.stem for p in docs.glob("*.md")} == set(NODE_CLASS_MAPPINGS)
    for name, cls in NODE_CLASS_MAPPINGS.items():
        page = (docs / f"{name}.md").read_text()
        assert page.splitlines()[0] == f"# {NODE_DISPLAY_NAME_MAPPINGS[name]}"
        assert "## Where it goes" in page
        for section in cls.INPUT_TYPES().values():
            for widget in (name for name, spec in section.items() if is_widget(spec)):
                assert f"`{widget}`" in page or f"**{widget}**" in page, f"{name}'s help page does not name {widget}"
        pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
        assert all((docs / picture).is_file() for picture in pictures), pictures
    assert {p.name for p in docs.glob("*.png")} == {picture for page in docs.glob("*.md")
                                                   for picture in re.findall(r"\]\(([^)]+\.png)\)", page.read_text())}

def test_one_log_line_per_sampling_run(host, caplog):
    from comfyui_fis.nodes import FrameInterleavedSparsity
    from tiny_models import sample, text, tiny_wan
    model = FrameInterleavedSparsity().patch(tiny_wan(num_layers=6), "custom", "1-4", 2, "interleave", "linear", "", 0.0,
                                             1.0)[0]
    latent = torch.randn(1, 16, 9, 8, 8, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        for _ in range(2):
            sample(model, latent, text(), steps=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "ComfyUI-FIS"]
    assert len(lines) == 2, lines
    for line in lines:
        assert "sparse blocks 1-4 of 6" in line and "groups 2" in line and re.search(r"\d+% of the block tokens skipped", line)
        assert re.search(r"estimated \d+\.\dx faster blocks at 720p", line)


def test_readme_estimates_are_the_cost_model_s():
    from comfyui_fis.fis_core import FisSchedule
    from comfyui_fis.fis_core.schedule_image import estimate_lines
    readme = (PACK_ROOT / "README.md").read_text()
    numbers = [re.findall(r"\d+(?:\.\d+)?(?=[%x])", " ".join(estimate_lines(FisSchedule(tuple(range(1, 39)), g), 40, 21)))
               for g in (2, 3)]
    assert "`groups` 2 saves {}% (blocks {}x faster at 720p, {}x at 480p)".format(*numbers[0]) in " ".join(readme.split())
    assert "`groups` 3 saves {}% ({}x and {}x)".format(*numbers[1]) in readme


@pytest.mark.parametrize("path", sorted((PACK_ROOT / "workflows").glob("*.json")), ids=lambda p: p.stem)
def test_readme_lists_every_workflow(path):
    assert f"workflows/{path.name}" in (PACK_ROOT / "README.md").read_text()
