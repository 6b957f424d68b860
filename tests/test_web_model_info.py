"""What the schedule view learns about the connected model file (nodes/server/model_files.py): family and block count
read from the safetensors header with the host's model detection, for files saved from tiny real models; and
files that are not what they claim, in-process and through the host's real server."""
import json
import os
import re
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import safetensors.torch
import torch

from comfy_server import ComfyServer
from limits import refused_at_once
from tiny_models import tiny_hunyuan_video, tiny_ltxv, tiny_mochi, tiny_wan


def save(tmp_path, model, prefix=""):
    path = tmp_path / "model.safetensors"
    weights = model.model.diffusion_model.state_dict()
    safetensors.torch.save_file({prefix + k: v.contiguous() for k, v in weights.items()}, path)
    return path


@pytest.mark.parametrize("build, expected", [
    (lambda: tiny_wan(num_layers=6), {"family": "wan", "blocks": 6, "frames": 21, "image_to_video": False}),
    (lambda: tiny_wan(num_layers=3, in_dim=36), {"family": "wan", "blocks": 3, "image_to_video": True}),
    (lambda: tiny_hunyuan_video("1.5", depth=5), {"family": "hunyuan_video", "blocks": 5, "label": "HunyuanVideo 1.5"}),
    (lambda: tiny_hunyuan_video("1.0", depth=2, single_depth=3),
     {"family": "hunyuan_video", "blocks": 5, "label": "HunyuanVideo 1.0 (2 double + 3 single)"}),
    (lambda: tiny_ltxv(layers=3), {"family": "ltxv", "blocks": 3, "frames": 16, "image_to_video": False}),
    # counted from the file (ComfyUI's detection gives every Mochi file the 48 blocks of Mochi 1)
    (lambda: tiny_mochi(depth=2), {"family": "mochi", "blocks": 2, "frames": 28, "label": "Mochi 1"}),
    (lambda: tiny_mochi(depth=3), {"family": "mochi", "blocks": 3, "frames": 28, "label": "Mochi 1"}),
])
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])  # a diffusion model file, a checkpoint
def test_family_and_blocks_from_the_header(host, tmp_path, build, expected, prefix):
    from comfyui_fis.nodes.server.model_files import model_info
    info = model_info(save(tmp_path, build(), prefix))
    assert {k: info[k] for k in expected} == expected


def test_other_models_are_not_supported(host, tmp_path):
    from comfyui_fis.nodes.server.model_files import model_info
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"encoder.weight": torch.zeros(4, 4)}, path)
    assert model_info(path) is None


def test_a_wan_variant_fis_runs_dense_is_not_described(host, tmp_path):
    """HuMo is a Wan by its config, but FIS runs it dense: the view must not draw a schedule for it."""
    import comfy.ldm.wan.model
    import comfy.ops
    from comfyui_fis.nodes.server.model_files import model_info
    from tiny_models import _load
    humo = _load(comfy.ldm.wan.model.HumoWanModel(dim=128, ffn_dim=256, num_heads=1, num_layers=2,
                                                  operations=comfy.ops.disable_weight_init), 0)
    assert model_info(save(tmp_path, humo)) is None


# --- files that are not what they claim: refused at once, saying why, while the server keeps answering -----------

def write_header(path, header: dict, claimed: int | None = None):
    """A safetensors header alone (the tensor data is not needed to read it); ``claimed`` overrides its length field."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if claimed is None else claimed) + raw)
    return path


def huge_header_file(path, claimed=1 << 30):
    """A file whose length field claims ``claimed`` header bytes and which is that long (sparse: no disk)."""
    path.write_bytes(struct.pack("<Q", claimed))
    os.truncate(path, 8 + claimed)
    return path


def deep_wan_header(blocks: int) -> dict:
    """The header of a Wan model with ``blocks`` blocks: valid, but the host's detection takes seconds on it."""
    weights = tiny_wan(num_layers=1).model.diffusion_model.state_dict()
    entry = lambda tensor: {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [0, 0]}  # noqa: E731
    header = {name.replace("blocks.0.", f"blocks.{i}.", 1): entry(tensor)
              for i in range(blocks) for name, tensor in weights.items() if name.startswith("blocks.0.")}
    return header | {name: entry(tensor) for name, tensor in weights.items() if not name.startswith("blocks.")}


def framed(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def many_tensors_header(tensors: int) -> bytes:
    """A valid safetensors header (framed) of ``tensors`` one-number tensors: no model, but JSON whose parsing holds
    Python's interpreter lock the longer the more tensors it has (300,000: 21 MB)."""
    entries = b",".join(b'"t%d":{"dtype":"F32","shape":[1],"data_offsets":[%d,%d]}' % (i, 4 * i, 4 * i + 4)
                        for i in range(tensors))
    return framed(b"{" + entries + b"}")


@pytest.mark.parametrize("content, reason", [
    (b"plain text, not a model", "more than the 100 MB a safetensors header may have"),
    (b"\x05\x00", "the file has 2 bytes, too few for a safetensors header"),
    (struct.pack("<Q", 1000) + b"{}", "says 1000 bytes, but the file has only 2 after it (a truncated file)"),
    (framed(b"not json!"), "its header is not valid JSON (Expecting value"),
    (framed(b"[]"), "its header is a JSON list, not a safetensors header"),
    (framed(b"\x80\x81\x82\x83"), "its header is not text"),
    (framed(b'{"w": {"dtype": "F32"}}'), "an entry without a tensor shape"),
])
def test_unreadable_files_say_what_is_wrong(host, tmp_path, content, reason):
    from comfyui_fis.nodes.server.model_files import model_info
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert reason in refused_at_once(lambda: model_info(path))


def test_a_header_length_beyond_the_format_s_cap_is_refused_without_reading_it(host, tmp_path):
    from comfyui_fis.nodes.server.model_files import model_info
    path = huge_header_file(tmp_path / "huge.safetensors")
    assert "says 1073741824 bytes, more than the 100 MB" in refused_at_once(lambda: model_info(path))


def test_a_header_bigger_than_any_supported_model_s_is_refused_without_parsing_it(host, tmp_path):
    """Every model FIS supports has a header of well under 1 MB (a 40-block Wan's: 0.11 MB); a bigger one is not read,
    so it cannot hold the server (parsing JSON holds Python's interpreter lock)."""
    from comfyui_fis.nodes.server.model_files import MAX_MODEL_HEADER_BYTES, model_info
    wan_40_blocks = json.dumps(deep_wan_header(40)).encode()
    assert len(wan_40_blocks) < MAX_MODEL_HEADER_BYTES / 10
    path = tmp_path / "many.safetensors"
    path.write_bytes(many_tensors_header(300_000))
    message = refused_at_once(lambda: model_info(path), seconds=0.2, megabytes=5)
    assert "its header has 20.6 MB, more than the 2 MB of any model FIS supports (a 14B Wan's: 0.1 MB)" in message


#: Blocks of the slow-to-detect Wan header: 800 make a 1.98 MB header, the largest the reader parses.
DEEP_BLOCKS = 800


@pytest.fixture(scope="module")
def server(host, tmp_path_factory):
    """The host's server with a tiny Wan file, a file claiming a 1 GiB header, and a valid but slow-to-detect one."""
    base = tmp_path_factory.mktemp("comfy_base")
    models = base / "models" / "diffusion_models"
    models.mkdir(parents=True)
    save(models, tiny_wan(num_layers=6)).rename(models / "tiny.safetensors")
    huge_header_file(models / "huge.safetensors")
    write_header(models / "deep.safetensors", deep_wan_header(DEEP_BLOCKS))
    (models / "many.safetensors").write_bytes(many_tensors_header(300_000))
    (models / "text.safetensors").write_text("plain text, not a model")
    with ComfyServer(host, base) as running:
        yield running


def model_info_request(server, name: str) -> tuple[int, dict, float]:
    """(status, JSON answer, seconds) of ``GET /fis/model_info`` for ``name`` in diffusion_models."""
    start = time.monotonic()
    query = urllib.parse.urlencode({"folder": "diffusion_models", "name": name})
    try:
        with urllib.request.urlopen(f"{server.url}/fis/model_info?{query}", timeout=120) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body), time.monotonic() - start


def resident_bytes(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) * 1024


def answered_while_reading(server, name: str, after: float) -> tuple[tuple[int, dict, float], float, float]:
    """Ask for ``name``'s model info and, ``after`` seconds later, for /system_stats: (the model info answer, when
    /system_stats answered, how long it took), times from the first request."""
    with ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        reading = pool.submit(model_info_request, server, name)
        time.sleep(after)
        asked = time.monotonic()
        server.get_json("/system_stats")
        answered = time.monotonic()
        return reading.result(), answered - start, answered - asked


def test_the_server_sends_the_families_usual_models(server):
    from comfyui_fis.nodes.families import FAMILIES
    sent = server.get_json("/fis/families")["usual_models"]
    assert [(p["key"], p["blocks"], p["frames"]) for p in sent] == \
        [(p.key, p.model.blocks, p.model.frames) for f in FAMILIES for p in f.record.usual_models]
    assert len({p["key"] for p in sent}) == len(sent) and all(f.record.usual_models for f in FAMILIES)


def test_the_server_reads_the_connected_file(server):
    status, info, _ = model_info_request(server, "tiny.safetensors")
    assert status == 200 and (info["family"], info["blocks"]) == ("wan", 6)
    status, info, _ = model_info_request(server, "text.safetensors")
    assert status == 422 and "cannot read text.safetensors: its header length field says" in info["error"]


def test_a_huge_header_is_refused_at_once_and_the_server_keeps_answering(server):
    before = resident_bytes(server.process.pid)
    (status, info, seconds), _, waited = answered_while_reading(server, "huge.safetensors", after=0.2)
    assert status == 422 and "more than the 100 MB a safetensors header may have" in info["error"], info
    assert seconds < 1.0 and waited < 1.0
    assert resident_bytes(server.process.pid) - before < 100 << 20


def test_a_header_bigger_than_any_model_s_never_holds_the_server(server):
    """Four readers of a 21 MB header of 300,000 tensors at once: each refused at once, and a request between them
    answers within loose bounds (the aim is 0.2 s; before the bound it waited seconds)."""
    with ThreadPoolExecutor(4) as pool:
        readers = [pool.submit(model_info_request, server, "many.safetensors") for _ in range(4)]
        time.sleep(0.05)
        asked = time.monotonic()
        server.get_json("/system_stats")
        waited = time.monotonic() - asked
        answers = [reader.result() for reader in readers]
    for status, info, seconds in answers:
        assert status == 422 and "more than the 2 MB of any model FIS supports" in info["error"], info
        assert seconds < 1.0
    assert waited < 0.5, f"/system_stats waited {waited:.2f} s while the headers were read"


def test_a_slow_header_is_read_off_the_event_loop(server):
    """The largest header read (just under the cap), whose detection takes seconds: a request asked while it is
    parsed and detected answers within loose bounds (the aim is 0.2 s)."""
    from comfyui_fis.nodes.server.model_files import MAX_MODEL_HEADER_BYTES
    assert 0.9 * MAX_MODEL_HEADER_BYTES < (server.base / "models/diffusion_models/deep.safetensors").stat().st_size
    (status, info, seconds), answered, waited = answered_while_reading(server, "deep.safetensors", after=0.05)
    assert status == 200 and info["blocks"] == DEEP_BLOCKS
    assert answered < seconds, f"/system_stats answered after the {seconds:.1f} s read; the test proved nothing"
    assert waited < 0.5, f"/system_stats waited {waited:.2f} s for the model file to be read"
