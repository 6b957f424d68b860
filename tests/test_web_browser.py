"""The schedule view in a real browser: the host's own server (``main.py --cpu`` on 127.0.0.1) with this pack in
its custom_nodes, the front end of the comfyui-frontend-package it serves, and headless Chromium (Debian's
``chromium``) driven by Playwright. Saves tests/artifacts/schedule_view.png (the node) and schedule_page.png, schedule_profile_canvas.png /
schedule_profile_vue.png (a calibration profile's blocks and defects drawn in the node), and compare_report_canvas.png
/ compare_report_vue.png (FIS Compare's report after a run), in both node renderings, and node_help.png (the FIS
node's help page in the properties panel).

Skips, saying why, when Chromium or Playwright is missing; ``FIS_REQUIRE_WEB_TOOLS=1`` (CI) makes that a failure.
"""
import json
import math
import os
import shutil

import pytest

from comfy_server import ComfyServer
from host_path import PACK_ROOT
from workflow_api import to_api
from comfyui_fis.fis_core import FisSchedule, estimated_speedup
from comfyui_fis.fis_core.schedule_image import dense_step_lines, estimate_lines, schedule_cells

ARTIFACTS = PACK_ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TINY_MODEL = "fis_test_tiny_wan.safetensors"
TINY_LTXV = "fis_test_tiny_ltxv.safetensors"
TINY_MOCHI = "fis_test_tiny_mochi.safetensors"
VIEW = ".fis-schedule-view"
#: A calibration profile of the tiny Wan (6 blocks) in the server's user directory, and the blocks of least defect.
PROFILE = {"family": "wan", "blocks": 6, "steps": 3, "defect": [0.05, 0.02, 0.09, 0.01, 0.07, 0.03]}
WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
#: The workflows of earlier releases: before the ``quality`` widget, and with it flat (before the V3 schema).
OLD_WORKFLOWS = sorted((PACK_ROOT / "tests" / "fixtures").glob("workflows_*/*.json"))


def browser_tools():
    """Playwright's sync API, or a skip (a failure under FIS_REQUIRE_WEB_TOOLS) naming what is missing."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the Python package playwright")
    if CHROMIUM is None:
        missing.append("Chromium (Debian package chromium)")
    if missing:
        reason = f"browser test not run: {' and '.join(missing)} not installed (scripts/dev_setup.py installs them)"
        if os.environ.get("FIS_REQUIRE_WEB_TOOLS"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def sync_playwright():
    return browser_tools()


@pytest.fixture(scope="module")
def server(host, sync_playwright, tmp_path_factory):
    """The host's server with tiny Wan (6 blocks), LTX-Video (3 blocks) and Mochi files in its diffusion_models folder,
    and a profile of the Wan file (``tiny_wan6``) in its user directory."""
    import safetensors.torch
    from tiny_models import tiny_ltxv, tiny_mochi, tiny_wan
    base = tmp_path_factory.mktemp("comfy_base")
    models = base / "models" / "diffusion_models"
    models.mkdir(parents=True)
    files = {TINY_MODEL: tiny_wan(num_layers=6), TINY_LTXV: tiny_ltxv(layers=3), TINY_MOCHI: tiny_mochi(depth=2)}
    for name, model in files.items():
        weights = model.model.diffusion_model.state_dict()
        safetensors.torch.save_file({k: v.contiguous() for k, v in weights.items()}, models / name)
    (base / "user" / "fis_profiles").mkdir(parents=True)
    (base / "user" / "fis_profiles" / "tiny_wan6.json").write_text(json.dumps(PROFILE))
    with ComfyServer(host, base) as running:
        yield running


@pytest.fixture(scope="module")
def page(server, sync_playwright):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950}, device_scale_factor=2)
            page.set_default_timeout(30_000)
            page.errors, page.console = [], []
            page.on("pageerror", lambda error: page.errors.append(error))
            page.on("console", lambda message: page.console.append(message.text))
            page.goto(server.url)
            page.wait_for_function("window.app?.vueAppReady && app.graph?._nodes?.length > 0", timeout=90_000)
            yield page
        finally:
            browser.close()


def new_workflow(page):
    """A new blank workflow, as the menu's New makes it."""
    page.evaluate("app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
    page.wait_for_function("app.graph._nodes.length === 0")


def add_node_by_search(page, text: str, at=(520, 160)):
    """Add a node as a user does: double-click the canvas, type, Enter."""
    for _ in range(5):  # the first double-click can land before the canvas listens
        page.mouse.dblclick(*at)
        try:
            page.wait_for_function("document.activeElement?.tagName === 'INPUT'", timeout=3000)
            break
        except Exception:
            continue
    page.keyboard.type(text, delay=20)
    page.get_by_text("Frame Interleaved Sparsity (FIS)").first.wait_for()
    page.keyboard.press("Enter")
    page.wait_for_selector(VIEW)
    page.wait_for_function(f"document.querySelector('{VIEW}').dataset.blocks !== undefined")   # the server answered


def node_geometry(page, widget: str) -> dict:
    """Page coordinates of the right arrow of ``widget`` and the node's box, from the canvas transform."""
    return page.evaluate("""(name) => {
      const node = app.graph._nodes.find((n) => n.type === "FrameInterleavedSparsity");
      const w = node.widgets.find((w) => w.name === name);
      const rect = app.canvas.canvas.getBoundingClientRect();
      const toPage = (x, y) => { const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([x, y]);
                                 return [rect.left + cx, rect.top + cy]; };
      const arrow = toPage(node.pos[0] + node.size[0] - 22, node.pos[1] + w.y + 10);
      const [x0, y0] = toPage(node.pos[0] - 8, node.pos[1] - 38);
      const [x1, y1] = toPage(node.pos[0] + node.size[0] + 8, node.pos[1] + node.size[1] + 8);
      return { arrow, box: { x: x0, y: y0, width: x1 - x0, height: y1 - y0 } };
    }""", widget)


def view_state(page) -> dict:
    return page.evaluate("""(selector) => {
      const view = document.querySelector(selector);
      return { ...view.dataset, pixels: view.querySelector("canvas").toDataURL(),
               groups: app.graph._nodes[0].widgets.find((w) => w.name === "quality.groups")?.value ?? 2 };
    }""", VIEW)


def summary(blocks, groups, frames=21, anchors=(), sparse=None):
    schedule = FisSchedule(tuple(range(1, blocks - 1)) if sparse is None else sparse, groups, anchors=anchors)
    return " | ".join(estimate_lines(schedule, blocks, frames))


def test_the_view_redraws_when_groups_changes(page):
    new_workflow(page)
    add_node_by_search(page, "Frame Interleaved")
    before = view_state(page)
    assert (before["blocks"], before["frames"], before["source"], before["groups"]) == ("40", "21", "default", 2)
    assert before["summary"] == summary(40, 2)

    names = "app.graph._nodes[0].widgets.map((w) => w.name)"
    assert [n for n in page.evaluate(names) if n.startswith("quality.")] == []   # a preset holds no widget
    set_widget(page, "quality", "custom")
    assert [n for n in page.evaluate(names) if n.startswith("quality.")] == [
        "quality.sparse_blocks", "quality.groups", "quality.interpolation", "quality.start_percent", "quality.end_percent"]
    page.wait_for_timeout(1000)  # so that the click is not read as part of the double-click that added the node
    page.mouse.click(*node_geometry(page, "quality.groups")["arrow"])
    page.wait_for_function("app.graph._nodes[0].widgets.find((w) => w.name === 'quality.groups').value === 3")
    page.wait_for_function(f"document.querySelector('{VIEW}').dataset.summary !== {before['summary']!r}")
    page.mouse.move(1300, 600)  # empty canvas: no tooltip in the screenshots
    page.wait_for_timeout(300)
    after = view_state(page)
    assert after["groups"] == 3
    assert after["summary"] == summary(40, 3) != before["summary"]
    assert after["pixels"] != before["pixels"]

    # "i2v": anchor_frames "auto" stands for the given first frame, which every sparse block computes
    page.locator(f"{VIEW} input[type=checkbox]").click()
    page.wait_for_function(f"document.querySelector('{VIEW}').dataset.summary !== {after['summary']!r}")
    anchored = view_state(page)
    assert anchored["summary"] == summary(40, 3, anchors=(0,))
    assert anchored["pixels"] != after["pixels"]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "schedule_view.png", clip=node_geometry(page, "quality")["box"])
    page.screenshot(path=ARTIFACTS / "schedule_page.png")
    assert (ARTIFACTS / "schedule_view.png").stat().st_size > 10_000
    assert not [e for e in page.errors if "fis" in str(e).lower()]


def connect_model_file(page, file: str):
    """A new workflow of Loader -> LoRA -> FIS for ``file``; returns when the view has read the file's blocks."""
    new_workflow(page)
    add_node_by_search(page, "Frame Interleaved")
    page.evaluate("""(file) => {
      const fis = app.graph._nodes[0];
      const loader = LiteGraph.createNode("UNETLoader");
      const lora = LiteGraph.createNode("LoraLoaderModelOnly");
      app.graph.add(loader);
      app.graph.add(lora);
      loader.widgets.find((w) => w.name === "unet_name").value = file;
      loader.connect(0, lora, 0);
      lora.connect(0, fis, 0);
    }""", file)
    page.wait_for_function("document.querySelector('.fis-schedule-view').dataset.source === 'connected'")


def test_the_view_reads_the_connected_model(page):
    """Loader -> LoRA -> FIS: the view follows the MODEL link to the file and asks the server for its blocks."""
    connect_model_file(page, TINY_MODEL)
    state = view_state(page)
    assert (state["blocks"], state["frames"]) == ("6", "21")
    assert state["summary"] == summary(6, 2)


@pytest.mark.parametrize("file, blocks, frames", [(TINY_LTXV, 3, 16), (TINY_MOCHI, 2, 28)])
def test_the_view_draws_the_connected_ltxv_and_mochi_files(page, server, file, blocks, frames):
    """Their block count and usual clip come from the server's family adapters, as do the selector's usual models."""
    connect_model_file(page, file)
    state = view_state(page)
    assert (state["blocks"], state["frames"]) == (str(blocks), str(frames))
    assert state["summary"] == summary(blocks, 2, frames)
    options = page.locator(f"{VIEW} select option").all_text_contents()
    models = server.get_json("/fis/families")["usual_models"]
    assert options[1:] == [f"{p['label']}: {p['blocks']} blocks" for p in models] and "(connected)" in options[0]


def set_widget(page, name: str, value):
    """Set the FIS node's widget ``name`` as its own edit does (its callback, then the node's change handler)."""
    page.evaluate("""([name, value]) => {
      const node = app.graph._nodes.find((n) => n.type === "FrameInterleavedSparsity");
      const widget = node.widgets.find((w) => w.name === name);
      const old = widget.value;
      widget.value = value;
      widget.callback?.(value, app.canvas, node);
      node.onWidgetChanged?.(widget.name, value, old, widget);
      app.graph.setDirtyCanvas(true, true);
    }""", [name, value])


@pytest.mark.parametrize("quality", ["balanced", "faithful", "fastest"])
def test_the_view_draws_the_node_s_schedule_for_every_family_and_preset(page, server, quality):
    """Every usual model of every family in the view's selector, with each quality preset: the cells the view draws
    and its estimate are those of the schedule the preset means (balanced: all blocks but the first and last sparse;
    faithful and fastest: every block; G=2; no anchors without a given frame)."""
    new_workflow(page)
    add_node_by_search(page, "Frame Interleaved")
    set_widget(page, "quality", quality)
    models = server.get_json("/fis/families")["usual_models"]
    assert {m["family"] for m in models} == {"wan", "hunyuan_video", "ltxv", "mochi"}
    codes = {"computed": "c", "interpolated": "i", "anchor": "a", "dense": "d"}
    for model in models:
        blocks, frames = model["blocks"], model["frames"]
        page.locator(f"{VIEW} select").select_option(model["key"])
        page.wait_for_function(f"document.querySelector('{VIEW}').dataset.blocks === '{blocks}' && "
                               f"document.querySelector('{VIEW}').dataset.frames === '{frames}'")
        schedule = FisSchedule(tuple(range(1, blocks - 1)) if quality == "balanced" else tuple(range(blocks)), 2)
        state = view_state(page)
        assert state["cells"] == ",".join("".join(codes[k] for k in row) for row in schedule_cells(schedule, blocks, frames))
        dense_steps = dense_step_lines(quality == "faithful", quality == "faithful",
                                       estimated_speedup(schedule, blocks, frames, "720p"))
        assert state["summary"] == " | ".join(estimate_lines(schedule, blocks, frames) + dense_steps), model["key"]
    assert not [e for e in page.errors if "fis" in str(e).lower()]


def test_the_template_browser_lists_and_opens_the_workflows(page, server):
    names = sorted(p.stem for p in WORKFLOWS)
    assert sorted(server.get_json("/workflow_templates")["ComfyUI-FIS"]) == names
    new_workflow(page)
    thumbnails = {}
    remember = lambda response: thumbnails.update({response.url.rsplit("/", 1)[-1]: response.status})  # noqa: E731
    page.on("response", remember)
    try:
        page.evaluate("app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        page.get_by_text("ComfyUI-FIS", exact=True).first.click()
        for name in names:
            page.get_by_text(name, exact=True).first.wait_for()
        # each card shows its thumbnail, workflows/<name>.jpg (640 wide), as the front end asks for a pack's templates
        page.wait_for_function("""(count) => [...document.querySelectorAll("img")].filter((img) =>
          img.complete && img.naturalWidth === 640).length === count""", arg=len(names))
    finally:
        page.remove_listener("response", remember)
    assert {name: thumbnails.get(f"{name}.jpg") for name in names} == {name: 200 for name in names}
    page.get_by_text("wan22_a14b_t2v_4step_fis", exact=True).first.click()
    page.wait_for_function("app.graph._nodes.filter((n) => n.type === 'FrameInterleavedSparsity').length === 2")
    assert page.locator(VIEW).count() == 2


def test_the_fis_nodes_help_page_shows_in_the_properties_panel(page):
    """Select the FIS node, open the properties panel's Info tab: the front end fetches web/docs/<NodeName>.md from
    the server and shows it, the schedule picture loaded beside the text (without the page it shows the node's
    description instead)."""
    new_workflow(page)
    page.evaluate("""() => {
      const node = LiteGraph.createNode("FrameInterleavedSparsity");
      node.pos = [300, 200];
      app.graph.add(node);
      app.canvas.selectNode(node);
    }""")
    page.get_by_role("button", name="Toggle properties panel").click()
    try:
        page.get_by_role("tab", name="Info").click()
        help_page = page.locator(".node-help-content")
        help_page.get_by_text("Where it goes").wait_for()
        text = help_page.inner_text()
        assert "Frame Interleaved Sparsity (FIS)" in text and "Load Diffusion Model" in text
        for preset in ("balanced", "faithful", "fastest", "custom"):
            assert preset in text
        assert "28.6 dB" in text and "2.89x" in text     # the measured figures
        page.wait_for_function("""() => { const img = document.querySelector('.node-help-content img');
                                          return img && img.complete && img.naturalWidth > 0; }""")
        assert page.evaluate("document.querySelector('.node-help-content img').src").endswith(
            "/extensions/ComfyUI-FIS/docs/schedule.png")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "node_help.png")
    finally:
        page.get_by_role("button", name="Toggle properties panel").click()

def test_a_connected_fis_node_converts_to_a_subgraph(page):
    """Loader -> FIS -> ModelSamplingSD3, FIS and ModelSamplingSD3 converted to a subgraph (the front end configures a
    copy of each node outside any graph, where the schedule view cannot follow the model link): one subgraph node
    whose FIS still reads the model through the subgraph's input."""
    new_workflow(page)
    inside = page.evaluate("""(file) => {
      const loader = LiteGraph.createNode("UNETLoader"), fis = LiteGraph.createNode("FrameInterleavedSparsity");
      const sampling = LiteGraph.createNode("ModelSamplingSD3");
      for (const node of [loader, fis, sampling]) app.graph.add(node);
      loader.widgets.find((w) => w.name === "unet_name").value = file;
      loader.connect(0, fis, 0);
      fis.connect(0, sampling, 0);
      const { node } = app.graph.convertToSubgraph(new Set([fis, sampling]));
      return node.subgraph.nodes.map((n) => n.type).sort();
    }""", TINY_MODEL)
    assert inside == ["FrameInterleavedSparsity", "ModelSamplingSD3"]
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    fis = next(node for node in prompt.values() if node["class_type"] == "FrameInterleavedSparsity")
    assert prompt[fis["inputs"]["model"][0]]["class_type"] == "UNETLoader"

def test_the_wan22_blueprint_is_one_node_from_the_search_box(page, server):
    """subgraphs/*.json, which the host serves as this pack's subgraph blueprints: the search box finds the
    two-expert Wan 2.2 A14B sampler, and Enter adds it as one node whose subgraph has FIS on each expert."""
    name = "Wan 2.2 A14B 4-step sampler (FIS)"
    listed = server.get_json("/global_subgraphs").values()
    assert [e["name"] for e in listed if e["info"]["node_pack"] == "custom_nodes.ComfyUI-FIS"] == [name]
    new_workflow(page)
    for _ in range(5):  # the first double-click can land before the canvas listens
        page.mouse.dblclick(520, 160)
        try:
            page.wait_for_function("document.activeElement?.tagName === 'INPUT'", timeout=3000)
            break
        except Exception:
            continue
    page.keyboard.type("4-step sampler (FIS)", delay=20)
    page.get_by_text(name).first.wait_for()
    page.keyboard.press("Enter")
    page.wait_for_function("app.graph._nodes.length === 1 && app.graph._nodes[0].subgraph")
    node = page.evaluate("""() => { const node = app.graph._nodes[0];
      return { inputs: node.inputs.map((i) => i.label ?? i.name), outputs: node.outputs.map((o) => o.label ?? o.name),
               inside: node.subgraph.nodes.map((n) => n.type).sort(),
               fis: node.subgraph.nodes.filter((n) => n.type === "FrameInterleavedSparsity").map((n) => n.title) }; }""")
    assert node["inputs"] == ["high_noise_model", "low_noise_model", "positive", "negative", "latent_image"]
    assert node["outputs"] == ["latent"]
    assert node["inside"] == ["FrameInterleavedSparsity"] * 2 + ["KSamplerAdvanced"] * 2 + ["ModelSamplingSD3"] * 2
    assert sorted(node["fis"]) == ["FIS (high-noise expert)", "FIS (low-noise expert)"]
    assert not [e for e in page.errors if "fis" in str(e).lower()]

def fis_settings_saved(node: dict) -> dict:
    """The settings an earlier release's FIS node ran, from its file: flat widgets, with or without ``quality``
    first (without: the release before presets, whose widgets ran as they are, as ``custom`` does now)."""
    values = node["widgets_values"]
    names = ["sparse_blocks", "groups", "pattern", "interpolation", "anchor_frames", "start_percent", "end_percent"]
    saved = dict(zip(["quality", *names], values)) if len(values) == 8 else {"quality": "custom", **dict(zip(names, values))}
    if saved["quality"] != "custom":
        return {"quality": saved["quality"], "pattern": saved["pattern"], "anchor_frames": saved["anchor_frames"]}
    return {"quality": "custom", "pattern": saved["pattern"], "anchor_frames": saved["anchor_frames"],
            **{f"quality.{n}": saved[n] for n in ("sparse_blocks", "groups", "interpolation", "start_percent",
                                                   "end_percent")}}


@pytest.mark.parametrize("path", OLD_WORKFLOWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_an_earlier_release_s_workflow_loads_into_the_settings_it_ran(page, path):
    """The workflows of the release before ``quality`` (7 flat widgets) and of the release with a flat ``quality``
    (8) load into the FIS node of today's schema with the settings they ran: the front end's own prompt (what Run
    sends) holds them by name, the same as the saved file's values."""
    workflow = json.loads(path.read_text())
    page.console.clear()
    output = page.evaluate("async (workflow) => { await app.loadGraphData(workflow); return (await app.graphToPrompt()).output; }",
                           workflow)
    fis_nodes = [n for n in workflow["nodes"] if n["type"] == "FrameInterleavedSparsity"]
    assert fis_nodes
    for node in fis_nodes:
        inputs = {k: v for k, v in output[str(node["id"])]["inputs"].items() if k != "model"}
        assert inputs == fis_settings_saved(node), node["id"]
    assert not [m for m in page.console if "ComfyUI-FIS" in m or "FIS node" in m]


def test_an_earlier_release_s_raylight_fis_node_loads_into_the_settings_it_ran(page):
    """The Raylight variant saves the FIS node's flat widgets after its RAY_ACTORS input: a file of the release before
    ``quality`` (7 values) loads as ``custom`` with its values in place, not shifted by one."""
    values = ["2-37", 3, "interleave", "linear", "auto", 0.0, 1.0]
    workflow = {"last_node_id": 1, "last_link_id": 0, "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4,
                "nodes": [{"id": 1, "type": "FrameInterleavedSparsityRaylight", "pos": [0, 0], "size": [400, 300],
                           "flags": {}, "order": 0, "mode": 0, "properties": {}, "widgets_values": values,
                           "inputs": [{"name": "ray_actors", "type": "RAY_ACTORS", "link": None}],
                           "outputs": [{"name": "RAY_ACTORS", "type": "RAY_ACTORS", "links": None}]}]}
    page.console.clear()
    output = page.evaluate("async (workflow) => { await app.loadGraphData(workflow); return (await app.graphToPrompt()).output; }",
                           workflow)
    names = ["sparse_blocks", "groups", "pattern", "interpolation", "anchor_frames", "start_percent", "end_percent"]
    assert output["1"]["inputs"] == {"quality": "custom", **dict(zip(names, values))}
    assert not [m for m in page.console if "match no layout" in m]


def test_a_workflow_of_no_known_layout_says_which_node_and_what_to_do(page):
    workflow = json.loads(OLD_WORKFLOWS[0].read_text())
    node = next(n for n in workflow["nodes"] if n["type"] == "FrameInterleavedSparsity")
    node["widgets_values"] = ["auto", "two", "interleave"]
    page.console.clear()
    output = page.evaluate("async (workflow) => { await app.loadGraphData(workflow); return (await app.graphToPrompt()).output; }",
                           workflow)
    said = [m for m in page.console if "match no layout" in m]
    assert len(said) == 1 and said[0].startswith(f"FIS node #{node['id']} (")
    assert "set quality (and custom's widgets) again and save the workflow" in said[0]
    assert output[str(node["id"])]["inputs"]["quality"] == "balanced"     # the defaults, not shifted values


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_the_front_end_reads_each_workflow_as_the_tests_do(page, server, path):
    """The front end loads the workflow without complaint, and its own API conversion (graphToPrompt, what Run
    sends) is the prompt that tests/test_workflows_validate.py validates."""
    workflow = json.loads(path.read_text())
    page.console.clear()
    output = page.evaluate("async (workflow) => { await app.loadGraphData(workflow); return (await app.graphToPrompt()).output; }",
                           workflow)
    assert not [m for m in page.console if "invalid workflow" in m.lower()]
    assert {i: {k: v for k, v in node.items() if k != "_meta"} for i, node in output.items()} == \
        to_api(workflow, server.get_json("/object_info"))


def set_sparse_blocks(page, value: str):
    """quality custom, and ``value`` typed into its sparse_blocks as the widget's own edit does."""
    set_widget(page, "quality", "custom")
    set_widget(page, "quality.sparse_blocks", value)


def wait_for_view(page, attribute: str, value: str):
    page.wait_for_function(f"document.querySelector('{VIEW}').dataset.{attribute} === {value!r}")


@pytest.mark.parametrize("vue_nodes", [False, True], ids=["canvas", "vue-nodes"])
def test_the_view_draws_a_profile(page, vue_nodes):
    """Loader (the tiny Wan file) -> FIS with sparse_blocks 'profile:tiny_wan6[:K]': the view asks the server, draws
    the blocks the node would make sparse and the profile's defects beside them, and says the node's error for a
    missing profile, in the classic canvas and in the Vue node rendering."""
    page.evaluate("(on) => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', on)", vue_nodes)
    try:
        new_workflow(page)
        page.evaluate("""(file) => {
          const fis = LiteGraph.createNode("FrameInterleavedSparsity");
          const loader = LiteGraph.createNode("UNETLoader");
          fis.pos = [420, 60];
          loader.pos = [40, 60];
          app.graph.add(fis);
          app.graph.add(loader);
          loader.widgets.find((w) => w.name === "unet_name").value = file;
          loader.connect(0, fis, 0);
        }""", TINY_MODEL)
        wait_for_view(page, "source", "connected")
        plain = view_state(page)
        set_sparse_blocks(page, "profile:tiny_wan6")
        wait_for_view(page, "profile", "0,1,3,5")                     # as many as auto, of least defect
        state = view_state(page)
        assert page.evaluate("app.graph._nodes[0].widgets.find((w) => w.name === 'quality').value") == "custom"
        assert state["summary"] == summary(6, 2, sparse=(0, 1, 3, 5)) and state["error"] == ""
        assert state["pixels"] != plain["pixels"]
        page.mouse.move(1300, 900)
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"schedule_profile_{'vue' if vue_nodes else 'canvas'}.png",
                        clip=node_geometry(page, "quality")["box"])

        set_sparse_blocks(page, "profile:tiny_wan6:2")
        wait_for_view(page, "profile", "1,3")
        assert view_state(page)["summary"] == summary(6, 2, sparse=(1, 3))
        set_sparse_blocks(page, "profile:nope")
        page.wait_for_function(f"document.querySelector('{VIEW}').dataset.error.includes('no profile')")
        assert view_state(page)["error"].startswith("sparse_blocks: there is no profile 'nope'; run a FIS Calibrate")
        assert page.locator("[data-node-id]").count() == (2 if vue_nodes else 0)  # the rendering asked for
        assert not [e for e in page.errors if "fis" in str(e).lower()]
    finally:
        page.evaluate("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false)")


@pytest.mark.parametrize("vue_nodes", [False, True], ids=["canvas", "vue-nodes"])
def test_the_compare_node_shows_its_report_after_a_run(page, vue_nodes):
    """Two plain-colour batches 10/255 apart, through FIS Compare run by the server: the node shows the report it
    returned, with the PSNR of that difference, in the classic canvas and in the Vue node rendering."""
    page.evaluate("(on) => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', on)", vue_nodes)
    try:
        new_workflow(page)
        page.evaluate("""() => {
          const images = [0x808080, 0x8a8a8a].map((color) => {
            const node = LiteGraph.createNode("EmptyImage");
            app.graph.add(node);
            for (const [name, value] of Object.entries({ width: 64, height: 48, batch_size: 3, color })) {
              node.widgets.find((w) => w.name === name).value = value;
            }
            return node;
          });
          const compare = LiteGraph.createNode("FISCompare");
          compare.pos = [500, 100];
          app.graph.add(compare);
          images[0].connect(0, compare, 0);
          images[1].connect(0, compare, 1);
        }""")
        report = page.locator(".fis-compare-report")
        report.wait_for()
        assert "Run the workflow" in report.text_content()
        page.evaluate("app.queuePrompt(0)")
        page.wait_for_function("document.querySelector('.fis-compare-report').textContent.includes('PSNR')",
                               timeout=60_000)
        text = report.text_content()
        assert "3 frames of 64x48" in text and f"PSNR {20 * math.log10(25.5):.1f} dB" in text
        assert "sampling time: not measured" in text and report.is_visible()
        assert page.locator("[data-node-id]").count() == (3 if vue_nodes else 0)  # the rendering asked for
        ARTIFACTS.mkdir(exist_ok=True)
        page.mouse.move(1300, 900)
        page.screenshot(path=ARTIFACTS / f"compare_report_{'vue' if vue_nodes else 'canvas'}.png")
    finally:
        page.evaluate("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false)")
