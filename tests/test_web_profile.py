"""What the schedule view learns about a calibration profile (nodes/server/profile_info.py), through the host's real server:
the profile's measurements and the blocks the FIS node itself applies for ``profile:NAME[:K]``, and a clear error
with a 4xx status for a bad name, a missing, broken, oversized or foreign profile."""
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from comfy_server import ComfyServer
from limits import refused_at_once
from test_calibration_host import sparse_blocks_of, user_directory
from tiny_models import fis, tiny_wan

DEFECT = [0.05, 0.02, 0.09, 0.01, 0.07, 0.03]   # least first: blocks 3, 1, 5, 0, 4, 2
#: Profiles whose values the node cannot use (as the 6-block profile, with this change): a calibration of a model whose
#: output held NaN, an infinite defect (1e999 reads as one), a string, booleans for numbers.
BAD_VALUES = {"nan_defect": {"defect": DEFECT[:2] + [float("nan")] + DEFECT[3:]},
              "inf_defect": {"defect": [float("inf")] + DEFECT[1:]}, "text_defect": {"defect": ["low"] + DEFECT[1:]},
              "true_defect": {"defect": [True] + DEFECT[1:]}, "true_blocks": {"blocks": True, "defect": [0.1]},
              "nan_steps": {"steps": float("nan")}}


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
    for name, change in BAD_VALUES.items():
        (profiles / f"{name}.json").write_text(json.dumps(profile | change))
    (profiles / "deep.json").write_text("[" * 100_000)
    (profiles / "deep_key.json").write_text(json.dumps(profile)[:-1] + ', "notes": ' + "[" * 5000 + "]" * 5000 + "}")
    with ComfyServer(host, base) as running:
        yield running


def strict_json(raw: bytes):
    """``raw`` parsed as the browser's ``JSON.parse`` does: NaN and Infinity are no JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON: the view's JSON.parse would fail")
    return json.loads(raw, parse_constant=refuse)


def ask(server, **query) -> tuple[int, dict]:
    """(status, JSON answer) of ``GET /fis/profile`` with ``query``."""
    try:
        with urllib.request.urlopen(f"{server.url}/fis/profile?{urllib.parse.urlencode(query)}", timeout=30) as response:
            return response.status, strict_json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, strict_json(error.read())


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
    ({"name": "broken"}, 422, "broken.json is not a FIS profile (not JSON: Expecting"),
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


@pytest.mark.parametrize("name, reason", [
    ("nan_defect", "the defect of block 2 is NaN or infinite, not a finite number"),
    ("inf_defect", "the defect of block 0 is NaN or infinite, not a finite number"),
    ("text_defect", "the defect of block 0 is a str, not a number"),
    ("true_defect", "the defect of block 0 is a bool, not a number"),
    ("true_blocks", "'blocks' is a bool, not a number of blocks"),
    ("nan_steps", "'steps' is a float, not a number of steps"),
    ("deep", "nested too deeply"),
    ("deep_key", "nested too deeply"),
])
def test_values_the_node_cannot_use_are_refused_by_the_route_and_the_node_alike(server, name, reason):
    """Never NaN in the answer (the view's JSON.parse would fail), never a 500: the reader's refusal, naming the
    widget, from the route and from the node."""
    status, body = ask(server, name=name)
    assert status == 422 and body["error"].startswith("sparse_blocks: ") and \
        f"{name}.json is not a FIS profile ({reason}); calibrate again with profile_name '{name}'" in body["error"], body
    with user_directory(server.base / "user"):
        message = refused_at_once(lambda: fis(tiny_wan(num_layers=6), sparse_blocks=f"profile:{name}"))
    assert message == body["error"]
