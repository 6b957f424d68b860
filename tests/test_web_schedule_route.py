"""What the schedule view draws, as the server computes it (nodes/server/schedule_view.py, ``GET /fis/schedule``): the
node's own reading of the widgets (presets, ``auto``, profiles, anchors) on the model the view draws, the core's cells
and text, and the node's errors for values it would refuse. The browser test checks that the view draws this."""
import math

import pytest

from comfyui_fis.fis_core import FisSchedule, estimated_speedup
from comfyui_fis.fis_core.schedule_image import estimate_lines, schedule_cells

CODES = {"computed": "c", "interpolated": "i", "anchor": "a", "dense": "d"}


def view(**query):
    from comfyui_fis.nodes.server.schedule_view import schedule_view
    return schedule_view({"family": "wan", "blocks": "40", "frames": "21", "image_to_video": "0",
                          **{k: str(v) for k, v in query.items()}})


def refused(**query) -> tuple[int, str]:
    from comfyui_fis.nodes.server.profile_info import RequestError
    with pytest.raises(RequestError) as error:
        view(**query)
    return error.value.status, str(error.value)


def cells(schedule, blocks, frames):
    return ["".join(CODES[kind] for kind in row) for row in schedule_cells(schedule, blocks, frames)]


@pytest.mark.parametrize("quality, sparse", [("balanced", range(1, 39)), ("fastest", range(40)),
                                             ("custom", (4, 5, 6, 30))])
def test_the_view_draws_the_blocks_the_node_makes_sparse(host, quality, sparse):
    answer = view(quality=quality, sparse_blocks="4-6,30", groups=3, anchor_frames="")
    groups = 3 if quality == "custom" else 2       # a preset sets groups and sparse_blocks, not the anchors
    schedule = FisSchedule(tuple(sparse), groups)
    assert answer["cells"] == cells(schedule, 40, 21)
    assert answer["lines"] == estimate_lines(schedule, 40, 21) and answer["profile"] is None
    assert [entry["code"] for entry in answer["legend"]] == ["c", "i", "a", "d"]


def test_auto_anchors_are_the_family_s_given_frame_where_the_view_draws_image_to_video(host):
    i2v = view(sparse_blocks="1-38", anchor_frames="auto", image_to_video=1)
    assert i2v["cells"] == cells(FisSchedule(tuple(range(1, 39)), 2, anchors=(0,)), 40, 21)
    assert view(anchor_frames="auto")["cells"] == cells(FisSchedule(tuple(range(1, 39)), 2), 40, 21)
    mochi = view(family="mochi", blocks=48, frames=28, anchor_frames="auto", image_to_video=1)   # ComfyUI has no Mochi i2v
    assert mochi["cells"] == cells(FisSchedule(tuple(range(1, 47)), 2), 48, 28)
    assert view(anchor_frames="0,-1", image_to_video=1)["cells"] == \
        cells(FisSchedule(tuple(range(1, 39)), 2, anchors=(0, -1)), 40, 21)


def test_a_preset_with_dense_steps_says_so_under_the_estimate(host):
    """faithful runs its first and final steps dense: the estimate is for the steps between, and says so."""
    faithful, balanced = view(quality="faithful")["lines"], view(quality="balanced")["lines"]
    assert faithful[-2] == "the first and final sampling steps run dense; the estimate is for the others"
    per_step = estimated_speedup(FisSchedule(tuple(range(40)), 2), 40, 21, "720p")     # every block sparse
    runs = {n: math.floor(100 * n / (2 + (n - 2) / per_step) + 0.5) / 100 for n in (4, 8, 20)}
    assert faithful[-1] == (f"a whole run at 720p: about {runs[4]:.2f}x in 4 steps, {runs[8]:.2f}x in 8, "
                            f"{runs[20]:.2f}x in 20")
    assert 1.0 < runs[4] < runs[8] < runs[20] < per_step
    assert balanced == estimate_lines(FisSchedule(tuple(range(1, 39)), 2), 40, 21)


def test_more_groups_than_frames_fit_to_the_frames_and_groups_1_is_off(host):
    assert view(quality="custom", groups=8, frames=3)["cells"] == cells(FisSchedule(tuple(range(1, 39)), 3), 40, 3)
    off = view(quality="custom", groups=1)
    assert off["cells"] == ["d" * 21] * 40
    assert off["lines"] == ["Estimate: 0% of the block compute saved",
                            "blocks 1.00x faster at 720p, 1.00x at 480p (H100 envelope)"]


@pytest.mark.parametrize("query, status, message", [
    (dict(quality="custom", sparse_blocks="4-40"), 422, "sparse_blocks: block 40 does not exist; this model has blocks 0-39"),
    (dict(quality="custom", sparse_blocks="1-" + "x" * 10_000), 422,
     "sparse_blocks: '" + "x" * 40 + "...' (10000 characters) is not a number"),
    (dict(anchor_frames="5,x"), 422, "anchor_frames: 'x' is not a number"),
    (dict(quality="best"), 422, "quality: 'best' is unknown; choose one of balanced, faithful, fastest, custom"),
    (dict(quality="custom", groups="two"), 422, "groups: 'two' is not a number"),
    (dict(quality="custom", groups=0), 422, "groups: must be at least 1 (1 turns FIS off); got 0"),
    (dict(pattern="spiral"), 422, "pattern: 'spiral' is unknown"),
    (dict(family="cogvideox"), 400, "family: 'cogvideox' is not a model family FIS knows"),
    (dict(blocks="0"), 400, "blocks: '0' is not a number of blocks from 1 to 4096"),
    (dict(blocks="9" * 10_000), 400, "blocks: '9999999999999999999999999999999999999999...' (10000 characters)"),
    (dict(frames="257"), 400, "frames: '257' is not a number of frames from 1 to 256"),
])
def test_values_the_node_refuses_are_refused_with_its_message(host, query, status, message):
    got_status, got = refused(**query)
    assert got_status == status and got.startswith(message) and len(got) < 300, got
