"""Every workflow in workflows/, converted to the API format, passes the host server's own validation
(``execution.validate_prompt``) with the host's nodes and this pack loaded as ComfyUI loads them.

Checked: every node type exists, every link joins an output to an input of the same type, every widget value
is valid for its input (numbers in range, choices in their lists: model file names, the input image, sampler
names), and every required input is given. The model files are tiny stand-ins under the exact file names the
workflows reference: the diffusion models are tiny real Wan / HunyuanVideo state dicts (so the schedule view's
model reader recognises them), the others one-tensor placeholders. Not checked: that the real models load or
the graph runs (validation does not execute it).
"""
import asyncio
import copy
import json

import pytest

from host_path import PACK_ROOT
from workflow_api import VIRTUAL_NODES, node_definitions, to_api

WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
#: (node type, widget) -> model folder of the file it names.
FILE_WIDGETS = {
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
}
#: What each workflow runs: its diffusion models' family (as the view reads it), its number of FIS nodes and of
#: FPS nodes (each right after a FIS node).
EXPECTED = {
    "wan22_a14b_t2v_4step_fis": ("wan", 2, 0),
    "wan22_a14b_i2v_4step_fis": ("wan", 2, 0),
    "wan22_a14b_t2v_4step_fis_fps": ("wan", 2, 2),
    "wan22_ti2v_5b_fis": ("wan", 1, 0),
    "hunyuanvideo15_t2v_4step_fis": ("hunyuan_video", 1, 0),
    "hunyuanvideo15_i2v_step_distilled_fis": ("hunyuan_video", 1, 0),
    "wan22_a14b_t2v_4step_compare": ("wan", 2, 2),
    "hunyuanvideo15_t2v_4step_compare": ("hunyuan_video", 1, 0),
}
#: The A/B workflows: a dense and an accelerated branch of one model, FIS Compare at the end.
COMPARE = [p for p in WORKFLOWS if p.stem.endswith("_compare")]
SAMPLERS = {"KSampler", "KSamplerAdvanced"}


def load(path):
    return json.loads(path.read_text())


def missing_nodes(workflow, definitions) -> list:
    """The node types ``workflow`` uses that the host does not have (nodes of a newer ComfyUI)."""
    return sorted({n["type"] for n in workflow["nodes"] if n["type"] not in definitions and n["type"] not in VIRTUAL_NODES})


def load_for_host(path, definitions):
    """``path``'s workflow; the test skips where the host lacks one of its nodes."""
    workflow = load(path)
    missing = missing_nodes(workflow, definitions)
    if missing:
        pytest.skip(f"this ComfyUI has no {', '.join(missing)}")
    return workflow


@pytest.fixture(scope="module")
def sandbox(host, tmp_path_factory):
    """Temporary model and input folders for this module (node definitions create folders in the input folder)."""
    import folder_paths
    root = tmp_path_factory.mktemp("comfy")
    saved_paths, saved_input = copy.deepcopy(folder_paths.folder_names_and_paths), folder_paths.get_input_directory()
    (root / "input").mkdir()
    folder_paths.set_input_directory(str(root / "input"))
    yield root
    folder_paths.folder_names_and_paths.clear()
    folder_paths.folder_names_and_paths.update(saved_paths)
    folder_paths.set_input_directory(saved_input)
    folder_paths.filename_list_cache.clear()


@pytest.fixture(scope="module")
def definitions(sandbox):
    """The host's nodes and this pack's, loaded the way ComfyUI's server loads them."""
    import nodes
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    assert asyncio.run(nodes.load_custom_node(str(PACK_ROOT))), "ComfyUI could not load the pack"
    return node_definitions()


def referenced_files(prompt) -> dict:
    """file name -> model folder, for every model file the prompt's loaders name."""
    return {inputs[widget]: folder for node in prompt.values() for (kind, widget), folder in FILE_WIDGETS.items()
            if node["class_type"] == kind and isinstance(inputs := node["inputs"], dict) and widget in inputs}


def tiny_diffusion_model(name: str) -> dict:
    """A tiny real state dict of the model family ``name`` is (Wan 2.2 A14B T2V/I2V, TI2V-5B, HunyuanVideo 1.5)."""
    from tiny_models import tiny_hunyuan_video, tiny_wan
    if name.startswith("hunyuanvideo1.5"):
        model = tiny_hunyuan_video("1.5")
    elif "ti2v_5B" in name:
        model = tiny_wan(in_dim=48, out_dim=48)
    else:
        model = tiny_wan(in_dim=36 if "_i2v_" in name else 16)
    return {k: v.contiguous() for k, v in model.model.diffusion_model.state_dict().items()}


@pytest.fixture(scope="module")
def model_folders(definitions, sandbox):
    """Tiny files under the names the workflows reference, and the input image, in the sandbox's folders."""
    import folder_paths
    import safetensors.torch
    import torch
    from PIL import Image

    files = {}
    for workflow in map(load, WORKFLOWS):
        if not missing_nodes(workflow, definitions):
            files.update(referenced_files(to_api(workflow, definitions)))
    for name, folder in files.items():
        (sandbox / folder).mkdir(exist_ok=True)
        weights = tiny_diffusion_model(name) if folder == "diffusion_models" else {"weight": torch.zeros(1)}
        safetensors.torch.save_file(weights, sandbox / folder / name)
        folder_paths.add_model_folder_path(folder, str(sandbox / folder), is_default=True)
    Image.new("RGB", (64, 64), "gray").save(sandbox / "input" / "example.png")
    folder_paths.filename_list_cache.clear()
    return sandbox


def source(prompt, node, name):
    """The node that feeds input ``name`` of ``node``."""
    return prompt[node["inputs"][name][0]]


def model_chain(prompt, node) -> list:
    """The nodes up the MODEL links from ``node``'s model input, nearest first, to the loader."""
    chain = []
    while "model" in node["inputs"]:
        node = source(prompt, node, "model")
        chain.append(node)
    return chain


def validate(prompt):
    import execution
    return asyncio.run(execution.validate_prompt("fis-workflow-test", prompt, None))


def test_there_are_the_promised_workflows():
    assert sorted(p.stem for p in WORKFLOWS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_passes_the_server_validation(path, definitions, model_folders):
    prompt = to_api(load_for_host(path, definitions), definitions)
    valid, error, good_outputs, node_errors = validate(prompt)
    assert valid is True, (error, node_errors)
    assert node_errors == {}
    outputs = {i for i, node in prompt.items() if definitions[node["class_type"]].get("output_node")}
    assert outputs and set(good_outputs) == outputs


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_fis_on_the_model_it_names(path, definitions, model_folders):
    import folder_paths
    from comfyui_fis.nodes.server.model_files import model_info
    family, fis_nodes, fps_nodes = EXPECTED[path.stem]
    prompt = to_api(load_for_host(path, definitions), definitions)
    fis = [node for node in prompt.values() if node["class_type"] == "FrameInterleavedSparsity"]
    assert len(fis) == fis_nodes
    fps = [node for node in prompt.values() if node["class_type"] == "FPSAttention"]
    assert len(fps) == fps_nodes
    assert all(prompt[node["inputs"]["model"][0]]["class_type"] == "FrameInterleavedSparsity" for node in fps)
    loaders = [node["inputs"]["unet_name"] for node in prompt.values() if node["class_type"] == "UNETLoader"]
    assert len(loaders) == fis_nodes
    for name in loaders:
        assert model_info(folder_paths.get_full_path("diffusion_models", name))["family"] == family
    for node in fis:  # each FIS node takes its model straight from a loader, as the README says; in the A/B
        chain = model_chain(prompt, node)  # workflows after the LoRA and ModelSamplingSD3 both branches share
        assert chain[-1]["class_type"] == "UNETLoader"
        assert len(chain) == (3 if path in COMPARE else 1)


@pytest.mark.parametrize("path", COMPARE, ids=lambda p: p.stem)
def test_compare_workflow_samples_one_model_both_ways_with_one_seed(path, definitions):
    """FIS Compare gets the decoded frames of two branches whose samplers differ only in their model: the same
    shared model, plain on the reference branch, through FIS (and FPS) on the accelerated one; the same fixed seed;
    each branch's FIS Timer chain covers all its samplers and feeds the matching timing input."""
    workflow = load_for_host(path, definitions)
    prompt = to_api(workflow, definitions)
    compare, = [node for node in prompt.values() if node["class_type"] == "FISCompare"]
    assert [source(prompt, n, "images") for n in prompt.values() if n["class_type"] == "SaveAnimatedWEBP"] == [compare]
    branches = {}
    for name in ("reference", "accelerated"):
        samplers = [source(prompt, source(prompt, compare, name), "samples")]
        while source(prompt, samplers[-1], "latent_image")["class_type"] in SAMPLERS:
            samplers.append(source(prompt, samplers[-1], "latent_image"))
        timers = [source(prompt, sampler, "model") for sampler in samplers]
        assert {t["class_type"] for t in timers} == {"FISTimer"}
        chained, timer = [], source(prompt, compare, f"{name}_timing")
        while True:
            chained.append(timer)
            if "timing" not in timer["inputs"]:
                break
            timer = source(prompt, timer, "timing")
        assert sorted(map(id, chained)) == sorted(map(id, timers))
        branches[name] = samplers, [model_chain(prompt, t) for t in timers]
    (dense, dense_chains), (fast, fast_chains) = branches["reference"], branches["accelerated"]
    _, fis_nodes, fps_nodes = EXPECTED[path.stem]
    assert len(dense) == len(fast) == fis_nodes
    for a, b, dense_chain, fast_chain in zip(dense, fast, dense_chains, fast_chains):
        # the same seed, steps and conditioning; a second expert starts from its own branch's first
        assert {k for k in a["inputs"] if a["inputs"][k] != b["inputs"][k]} <= {"model", "latent_image"}
        assert list(map(id, dense_chain)) == list(map(id, fast_chain[-len(dense_chain):]))  # one shared model
        extra = [n["class_type"] for n in fast_chain[:-len(dense_chain)]]
        assert extra == ["FPSAttention"] * (fps_nodes > 0) + ["FrameInterleavedSparsity"]
    seeds = [n for n in workflow["nodes"] if n["type"] in SAMPLERS]
    assert seeds and not [n for n in seeds if "randomize" in n["widgets_values"]]  # a fixed seed, or the runs part


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_note_says_where_to_get_every_model(path, definitions):
    workflow = load_for_host(path, definitions)
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] in VIRTUAL_NODES]
    assert len(notes) == 1
    for name, folder in referenced_files(to_api(workflow, definitions)).items():
        assert f"/{name})" in notes[0] and "https://huggingface.co/Comfy-Org/" in notes[0], name
        assert f"`{folder}`" in notes[0]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_links_join_matching_slots(path, definitions):
    workflow = load_for_host(path, definitions)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        output, entry = nodes[origin]["outputs"][origin_slot], nodes[target]["inputs"][target_slot]
        assert link_id in output["links"] and entry["link"] == link_id
        assert output["type"] == entry["type"] == kind
        assert definitions[nodes[origin]["type"]]["output"][origin_slot] == kind


@pytest.mark.parametrize("change, error", [
    (lambda prompt, fis: fis["inputs"].update({"quality": "custom", "quality.groups": 9}), "value_bigger_than_max"),
    (lambda prompt, fis: fis["inputs"].update(pattern="diagonal"), "value_not_in_list"),
    (lambda prompt, fis: prompt[fis["inputs"]["model"][0]]["inputs"].update(unet_name="missing.safetensors"),
     "value_not_in_list"),
    (lambda prompt, fis: fis["inputs"].pop("anchor_frames"), "required_input_missing"),
])
def test_the_validation_catches_bad_values(definitions, model_folders, change, error):
    """The check above can fail: a broken copy of a workflow does not validate."""
    workflow = next(w for w in map(load, WORKFLOWS) if not missing_nodes(w, definitions))
    prompt = to_api(workflow, definitions)
    change(prompt, next(n for n in prompt.values() if n["class_type"] == "FrameInterleavedSparsity"))
    valid, _, _, node_errors = validate(prompt)
    assert valid is False
    assert error in [e["type"] for node in node_errors.values() for e in node["errors"]]
