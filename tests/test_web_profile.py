"""What the schedule view learns about a calibration profile (nodes/server/profile_info.py), through the host's real server:
the profile's measurements and the blocks the FIS node itself applies for ``profile:NAME[:K]``, and a clear error
with a 4xx status for a bad name, a missing, broken, oversized or foreign profile."""
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from comfy_server import ComfyServer
from test_calibration_host import sparse_blocks_of, user_directory
from tiny_models import fis, tiny_wan

DEFECT = [0.05, 0.02, 0.09, 0.01, 0.07, 0.03]   # least first: blocks 3, 1, 5, 0, 4, 2


@pytest.fixture(scope="module")
def server(host, tmp_path_factory):
    """The host's server with profiles in its user directory: a 6-block Wan one, a broken one and an oversized one."""
    base = tmp_path_factory.mktemp("comfy_base")
    profiles = base / "user" / "fis_profiles"
    profiles.mkdir(parents=True)
    profile = {"family": "wan", "blocks": 6, "steps": 4, "defect": DEFECT, "defect_by_step": [DEFECT] * 4}
    (profiles / "wan6.json").write_text(json.dumps(profile))
    (profiles / "broken.json").write_text('{"family": "wan"')
    (profiles / "huge.json").write_bytes(b" " * 2_000_001)
    with ComfyServer(host, base) as running:
        yield running


def ask(server, **query) -> tuple[int, dict]:
    """(status, JSON answer) of ``GET /fis/profile`` with ``query``."""
    try:
        with urllib.request.urlopen(f"{server.url}/fis/profile?{urllib.parse.urlencode(query)}", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_route_sends_the_measurements_and_the_node_s_own_blocks(server):
    status, body = ask(server, name="wan6", family="wan", blocks=6)
    assert status == 200
    assert (body["family"], body["blocks"], body["steps"], body["defect"]) == ("wan", 6, 4, DEFECT)
    assert body["chosen"] == [0, 1, 3, 5]                      # as many as auto (all but two), of least defect
    assert ask(server, name="wan6", count="2", family="wan", blocks="6")[1]["chosen"] == [1, 3]
    assert ask(server, name="wan6")[1]["chosen"] == [0, 1, 3, 5]   # no model given: the profile's own
    with user_directory(server.base / "user"):                  # the FIS node, on a model of that family and depth
        model = tiny_wan(num_layers=6)
        assert sparse_blocks_of(fis(model, sparse_blocks="profile:wan6")) == (0, 1, 3, 5)
        assert sparse_blocks_of(fis(model, sparse_blocks="profile:wan6:2")) == (1, 3)


@pytest.mark.parametrize("query, status, message", [
    ({"name": "../escape"}, 400, "sparse_blocks: '../escape' is not a profile name"),
    ({}, 400, "sparse_blocks: '' is not a profile name"),
    ({"name": "nope"}, 404, "sparse_blocks: there is no profile 'nope'; run a FIS Calibrate node"),
    ({"name": "broken"}, 422, "broken.json is not a FIS profile; calibrate again"),
    ({"name": "huge"}, 422, "has 2000001 bytes, more than the 2 MB a FIS profile may have"),
    ({"name": "wan6", "family": "wan", "blocks": "40"}, 422,
     "sparse_blocks: profile 'wan6' was measured on a wan model of 6 blocks, and this is a wan model of 40 blocks"),
    ({"name": "wan6", "count": "7"}, 422, "sparse_blocks: 7 sparse blocks is out of range"),
    ({"name": "wan6", "count": "two"}, 422, "sparse_blocks: 'two' is not a number"),
    ({"name": "wan6", "family": "sd15"}, 400, "'sd15' is not a model family FIS knows"),
    ({"name": "wan6", "blocks": "many"}, 400, "blocks: 'many' is not a number of blocks"),
])
def test_bad_requests_are_refused_saying_why(server, query, status, message):
    answer = ask(server, **query)
    assert answer[0] == status and message in answer[1]["error"], answer
