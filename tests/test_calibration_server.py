"""FIS Calibrate as a long ComfyUI job, through the host's real server (``main.py --cpu``): a prompt samples a tiny
Wan file with the calibration on; the Calibrate node shows a progress bar (the server's ``progress`` messages for
that node, to the last block of the last step), the queue's cancel stops the run early, and a cancelled run leaves
the earlier profile as it was, with no partial or temporary file beside it."""
import asyncio
import json
import uuid

import aiohttp
import pytest

from comfy_server import ComfyServer
from host_path import PACK_ROOT

TINY_MODEL = "fis_test_tiny_wan.safetensors"
BLOCKS = 6
STEPS = 12
CALIBRATE = "2"
SAMPLER = "5"
EARLIER = {"family": "wan", "blocks": BLOCKS, "steps": 1, "defect": [0.1] * BLOCKS, "anchors": []}


@pytest.fixture(scope="module")
def server(host, tmp_path_factory):
    """The server with a tiny Wan file, the test conditioning node, and an earlier profile ``tiny``."""
    import safetensors.torch
    from tiny_models import tiny_wan
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "models" / "diffusion_models").mkdir(parents=True)
    weights = tiny_wan(num_layers=BLOCKS).model.diffusion_model.state_dict()
    safetensors.torch.save_file({k: v.contiguous() for k, v in weights.items()},
                                base / "models" / "diffusion_models" / TINY_MODEL)
    (base / "custom_nodes").mkdir()
    node = PACK_ROOT / "tests" / "server_nodes" / "fis_test_conditioning.py"
    (base / "custom_nodes" / node.name).symlink_to(node)
    (base / "user" / "fis_profiles").mkdir(parents=True)
    with ComfyServer(host, base) as running:
        yield running


def calibration_prompt(seed: int) -> dict:
    """Loader -> FIS Calibrate (profile 'tiny') -> KSampler on 9 latent frames, the latent saved."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_MODEL, "weight_dtype": "default"}},
        CALIBRATE: {"class_type": "FISCalibrate", "inputs": {"model": ["1", 0], "profile_name": "tiny"}},
        "3": {"class_type": "FISTestConditioning", "inputs": {"seed": 1}},
        "4": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 33,
                                                                 "batch_size": 1}},
        SAMPLER: {"class_type": "KSampler", "inputs": {
            "model": [CALIBRATE, 0], "seed": seed, "steps": STEPS, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "denoise": 1.0}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": [SAMPLER, 0], "filename_prefix": "fis_test"}},
    }


async def run(server, prompt: dict, cancel_at_first_progress: bool) -> tuple[str, list]:
    """Queue ``prompt``; returns how it ended (the server's last message type) and the progress messages, after
    pressing cancel (``POST /interrupt``) at the first progress of the Calibrate node if asked."""
    client = uuid.uuid4().hex
    progress = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.url}/ws?clientId={client}") as socket:
            async with session.post(f"{server.url}/prompt", json={"prompt": prompt, "client_id": client}) as answer:
                assert answer.status == 200, await answer.text()
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                if event["type"] == "progress":
                    progress.append(event["data"])
                    if cancel_at_first_progress and event["data"]["node"] == CALIBRATE and len(
                            [p for p in progress if p["node"] == CALIBRATE]) == 1:
                        async with session.post(f"{server.url}/interrupt", json={}) as answer:
                            assert answer.status == 200
                if event["type"] in ("execution_success", "execution_interrupted", "execution_error"):
                    return event["type"], progress
    raise AssertionError("the server closed the socket before the run ended")


def profile_files(server) -> list:
    return sorted(p.name for p in (server.base / "user" / "fis_profiles").iterdir())


def test_a_cancelled_calibration_keeps_the_earlier_profile(server):
    path = server.base / "user" / "fis_profiles" / "tiny.json"
    path.write_text(json.dumps(EARLIER))
    written = path.read_bytes()
    ended, progress = asyncio.run(asyncio.wait_for(run(server, calibration_prompt(seed=1), True), 240))
    assert ended == "execution_interrupted", server.log()
    calibrating = [p for p in progress if p["node"] == CALIBRATE]
    assert calibrating and calibrating[0]["max"] == STEPS * BLOCKS
    stepped = [p["value"] for p in progress if p["node"] == SAMPLER]
    assert max(stepped, default=0) < STEPS               # stopped inside the run, not after it
    assert path.read_bytes() == written and profile_files(server) == ["tiny.json"]


def test_a_finished_calibration_shows_its_progress_and_writes_the_profile(server):
    ended, progress = asyncio.run(asyncio.wait_for(run(server, calibration_prompt(seed=2), False), 240))
    assert ended == "execution_success", server.log()
    calibrating = [(p["value"], p["max"]) for p in progress if p["node"] == CALIBRATE]
    assert calibrating[-1] == (STEPS * BLOCKS, STEPS * BLOCKS)
    assert [value for value, _ in calibrating] == sorted(value for value, _ in calibrating)
    profile = json.loads((server.base / "user" / "fis_profiles" / "tiny.json").read_text())
    assert profile["steps"] == STEPS and profile["blocks"] == BLOCKS and profile != EARLIER
    assert profile_files(server) == ["tiny.json"]
