"""The schedule and the widget parsers (no host needed)."""
import pytest

from comfyui_fis.fis_core import FisSchedule, format_block_list, parse_block_list, parse_frame_list


@pytest.mark.parametrize("spec, expected", [
    ("4-7", (4, 5, 6, 7)),
    ("0,2,5-7", (0, 2, 5, 6, 7)),
    (" 3 , 1-2 ,3", (1, 2, 3)),
    ("", ()),
    ("9", (9,)),
])
def test_parse_block_list(spec, expected):
    assert parse_block_list(spec, 10) == expected


@pytest.mark.parametrize("spec, message", [
    ("40-10", "runs backwards"),
    ("a-b", "'a' is not a number"),
    ("1-", "not a block number or range"),
    ("-3", "not a block number or range"),
    ("x", "'x' is not a number"),
    ("3-12", "block 12 does not exist; this model has blocks 0-9"),
])
def test_parse_block_list_errors_name_the_widget(spec, message):
    with pytest.raises(ValueError, match="sparse_blocks") as error:
        parse_block_list(spec, 10)
    assert message in str(error.value)


def test_format_block_list_round_trips():
    for blocks in [(1, 2, 3, 7), (0,), (), (4, 6, 8), tuple(range(1, 39))]:
        assert parse_block_list(format_block_list(blocks)) == blocks


def test_parse_frame_list():
    assert parse_frame_list("0,-1") == (-1, 0)
    assert parse_frame_list("") == ()
    with pytest.raises(ValueError, match="anchor_frames"):
        parse_frame_list("first")


@pytest.mark.parametrize("groups", [2, 3, 4])
@pytest.mark.parametrize("frames", [5, 7, 21])
@pytest.mark.parametrize("pattern", ["interleave", "contiguous"])
def test_every_frame_refreshed_within_groups_sparse_blocks(groups, frames, pattern):
    schedule = FisSchedule(tuple(range(1, 39)), groups, pattern)
    subsets = [schedule.frames_for_block(b, frames) for b in schedule.sparse_blocks]
    for start in range(len(subsets) - groups + 1):
        window = set().union(*subsets[start:start + groups])
        assert window == set(range(frames))
    # groups are disjoint and together cover the frames exactly once
    groups_frames = [schedule.group_frames(g, frames) for g in range(groups)]
    assert sorted(f for g in groups_frames for f in g) == list(range(frames))


def test_interleave_groups_and_dense_blocks():
    schedule = FisSchedule((2, 3, 5), 2)
    assert schedule.frames_for_block(0, 7) is None          # dense
    assert schedule.frames_for_block(2, 7) == (0, 2, 4, 6)  # 1st sparse block: group 0
    assert schedule.frames_for_block(3, 7) == (1, 3, 5)     # 2nd: group 1
    assert schedule.frames_for_block(5, 7) == (0, 2, 4, 6)  # 3rd: group 0 again
    assert FisSchedule((1,), 3, "contiguous").frames_for_block(1, 7) == (0, 1)


def test_anchors_are_in_every_subset_and_negative_counts_from_end():
    schedule = FisSchedule((1, 2, 3), 3, anchors=(0, -1))
    for block in (1, 2, 3):
        frames = schedule.frames_for_block(block, 10)
        assert 0 in frames and 9 in frames
    assert schedule.frames_for_block(2, 10) == (0, 1, 4, 7, 9)


def test_subset_covering_all_frames_runs_dense():
    assert FisSchedule((1,), 2, anchors=(1, 3)).frames_for_block(1, 4) is None


def test_off_when_one_group_or_no_blocks():
    assert not FisSchedule((1, 2), 1).enabled
    assert not FisSchedule((), 2).enabled
    assert FisSchedule((1, 2), 1).frames_for_block(1, 9) is None


def test_fewer_frames_than_groups():
    schedule = FisSchedule((0, 1, 2), 4)
    with pytest.raises(ValueError, match="3 latent frames cannot be split into 4 groups"):
        schedule.frames_for_block(0, 3)
    fitted = schedule.fit_to(3)
    assert fitted.groups == 3 and fitted.frames_for_block(0, 3) == (0,)
    assert schedule.fit_to(1).frames_for_block(0, 1) is None  # a single frame: dense


def test_bad_settings():
    with pytest.raises(ValueError, match="groups"):
        FisSchedule((1,), 0)
    with pytest.raises(ValueError, match="pattern"):
        FisSchedule((1,), 2, "random")


def test_computed_fraction():
    # 40 blocks, 38 sparse at G=2 over 21 frames: groups of 11 and 10 frames
    fraction = FisSchedule(tuple(range(1, 39)), 2).computed_fraction(40, 21)
    assert fraction == pytest.approx((2 + 19 * 11 / 21 + 19 * 10 / 21) / 40)


def test_cost_model_matches_the_envelope_and_the_reference_schedule():
    from comfyui_fis.fis_core import block_ms, estimated_speedup
    assert block_ms(1.0) == pytest.approx(404.3) and block_ms(11 / 21, "480p") == pytest.approx(35.04)
    assert block_ms(9 / 21) == pytest.approx(62.76 + (131.37 - 62.76) / 2)
    # blocks 1-38 of 40 at G=2: the reference FIS measured 2.89x at 720p, 2.48x at 480p
    schedule = FisSchedule(tuple(range(1, 39)), 2)
    assert 2.85 < estimated_speedup(schedule, 40, 21, "720p") < 3.1
    assert 2.45 < estimated_speedup(schedule, 40, 21, "480p") < 2.8
    assert estimated_speedup(FisSchedule((), 2), 40) == pytest.approx(1.0)


def test_groups_rotate_across_steps():
    """At step s the k-th sparse block takes group (k + s) mod G; without rotation it keeps group k mod G."""
    schedule = FisSchedule((1, 2, 4), 3)
    assert [[schedule.group_of_block(b, step) for b in (1, 2, 4)] for step in range(4)] == [
        [0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert schedule.frames_for_block(1, 6, step=1) == (1, 4)
    fixed = FisSchedule((1, 2, 4), 3, rotate=False)
    assert [fixed.group_of_block(1, step) for step in range(3)] == [0, 0, 0]
    assert schedule.group_of_block(3, step=1) is None
