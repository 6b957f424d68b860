"""A profile rewritten on disk (a recalibration) makes the FIS node run again, through the host's real server and its
cache: the same graph queued twice reuses every node's output, and queued again after the profile changed reruns the
FIS node and what follows it with the new profile's blocks.

The graph is made of the host's own nodes around a tiny Wan file: Load Diffusion Model -> FIS (``profile:tiny:2``)
-> KSampler -> Save Latent, the latent and the text embedding from Load Training Dataset (a shard as the host's
dataset nodes save it), so that no text encoder is needed.
"""
import json
import time
import urllib.request
import uuid

import pytest
import safetensors.torch
import torch

from comfy_server import ComfyServer
from tiny_models import text, tiny_wan, wan_latent

BLOCKS = 6
#: Two calibrations of the same model: the two blocks of least defect are 0-1, then 4-5.
DEFECTS = {"0-1": [0.01, 0.02, 0.5, 0.6, 0.7, 0.8], "4-5": [0.8, 0.7, 0.6, 0.5, 0.02, 0.01]}


def graph() -> dict:
    widgets = {"quality": "custom", "sparse_blocks": "profile:tiny:2", "groups": 2, "pattern": "interleave",
               "interpolation": "corrected", "anchor_frames": "auto", "start_percent": 0.0, "end_percent": 1.0}
    return {
        "load": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny.safetensors", "weight_dtype": "default"}},
        "fis": {"class_type": "FrameInterleavedSparsity", "inputs": {"model": ["load", 0], **widgets}},
        "data": {"class_type": "LoadTrainingDataset", "inputs": {"folder_name": "tiny"}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["fis", 0], "seed": 0, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["data", 1], "negative": ["data", 1], "latent_image": ["data", 0], "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sampler", 0], "filename_prefix": "fis"}},
    }


def write_profile(directory, blocks: str):
    defect = DEFECTS[blocks]
    profile = {"family": "wan", "blocks": BLOCKS, "steps": 1, "defect": defect, "defect_by_step": [defect]}
    (directory / "tiny.json").write_text(json.dumps(profile))


def queue(server) -> dict:
    """Queue the graph, wait for it; its history entry (status messages, outputs)."""
    body = json.dumps({"prompt": graph(), "client_id": str(uuid.uuid4())}).encode()
    request = urllib.request.Request(f"{server.url}/prompt", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        prompt_id = json.loads(response.read())["prompt_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        history = server.get_json(f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            entry = history[prompt_id]
            assert entry["status"]["status_str"] == "success", (entry["status"], server.log())
            return entry
        time.sleep(0.2)
    raise TimeoutError(f"prompt {prompt_id} did not finish:\n{server.log()}")


def cached_nodes(entry: dict) -> set:
    return {node for event, data in entry["status"]["messages"] if event == "execution_cached" for node in data["nodes"]}


def saved_latents(server) -> list:
    """What Save Latent wrote, in order (a cached Save Latent writes nothing)."""
    paths = sorted((server.base / "output").glob("fis_*.latent"))
    return [safetensors.torch.load_file(path)["latent_tensor"] for path in paths]


def fis_log_lines(server) -> list[str]:
    return [line for line in server.log_path.read_text().splitlines() if "FIS: wan, sparse blocks" in line]


@pytest.fixture(scope="module")
def server(host, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    models = base / "models" / "diffusion_models"
    models.mkdir(parents=True)
    weights = tiny_wan(num_layers=BLOCKS).model.diffusion_model.state_dict()
    safetensors.torch.save_file({k: v.contiguous() for k, v in weights.items()}, models / "tiny.safetensors")
    dataset = base / "datasets" / "tiny"
    dataset.mkdir(parents=True)
    (dataset / "metadata.json").write_text("{}")
    torch.save({"latents": [{"samples": wan_latent(9)}], "conditioning": [text()]}, dataset / "shard_0000.pkl")
    (base / "user" / "fis_profiles").mkdir(parents=True)
    with ComfyServer(host, base) as running:
        yield running


def test_a_rewritten_profile_makes_the_node_run_again(server):
    profiles = server.base / "user" / "fis_profiles"
    write_profile(profiles, "0-1")
    first = queue(server)
    assert not cached_nodes(first) & {"fis", "sampler", "save"}
    assert [" sparse blocks 0-1 of 6," in line for line in fis_log_lines(server)] == [True]

    again = queue(server)   # nothing changed: the host's cache serves every node
    assert cached_nodes(again) == set(graph())
    assert len(fis_log_lines(server)) == 1 and len(saved_latents(server)) == 1

    write_profile(profiles, "4-5")   # a recalibration rewrites the profile
    rerun = queue(server)
    assert cached_nodes(rerun) == {"load", "data"}, cached_nodes(rerun)
    lines = fis_log_lines(server)
    assert len(lines) == 2 and " sparse blocks 4-5 of 6," in lines[1], lines
    first_latent, rerun_latent = saved_latents(server)
    assert not first_latent.equal(rerun_latent)
