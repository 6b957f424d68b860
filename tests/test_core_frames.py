"""Gather, restore and interpolation (no host needed)."""
import pytest
import torch

from comfyui_fis.fis_core import FrameLayout, build_plan, gather, interpolation_sources, restore

LAYOUT = FrameLayout(prefix=3, frames=9, tokens_per_frame=4, suffix=2)


def frame_of_token(layout):
    """Frame index of every token (-1 for prefix/suffix)."""
    index = torch.full((layout.length,), -1)
    index[layout.frame_tokens] = torch.arange(layout.frames).repeat_interleave(layout.tokens_per_frame)
    return index


def linear_update(x, layout):
    """A 'block' whose update is linear in the frame index: frame f gets a + b*f; others get c."""
    a, b, c = torch.randn(3, x.shape[-1], generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    ids = frame_of_token(layout)
    full_update = torch.where((ids >= 0).unsqueeze(-1), a + b * ids.unsqueeze(-1), c)
    return full_update


@pytest.mark.parametrize("computed", [(0, 2, 4, 6, 8), (0, 3, 5, 8), (0, 8)])
def test_linear_restores_a_linear_update_exactly(computed):
    x = torch.randn(2, LAYOUT.length, 6, dtype=torch.float64)
    update = linear_update(x, LAYOUT)
    plan = build_plan(LAYOUT, computed, "linear", "cpu")
    x_sub = gather(x, plan)
    y_sub = x_sub + gather(update.unsqueeze(0), plan)
    out = restore(x, y_sub, plan, x_sub)
    torch.testing.assert_close(out, x + update, rtol=0, atol=1e-12)


def test_linear_holds_the_nearest_update_outside_the_computed_frames():
    x = torch.randn(1, LAYOUT.length, 6, dtype=torch.float64)
    update = linear_update(x, LAYOUT)
    plan = build_plan(LAYOUT, (2, 4, 6), "linear", "cpu")
    out = restore(x, gather(x + update, plan), plan)
    frames_out = (out - x)[0, LAYOUT.frame_tokens].unflatten(0, (9, 4))
    frames_update = update[LAYOUT.frame_tokens].unflatten(0, (9, 4))
    for f, source in [(0, 2), (1, 2), (7, 6), (8, 6), (3, 3), (5, 5)]:
        torch.testing.assert_close(frames_out[f], frames_update[source], rtol=0, atol=1e-12)


def test_none_leaves_skipped_frames_untouched_and_copies_computed_tokens():
    x = torch.randn(2, LAYOUT.length, 6)
    computed = (1, 4, 7)
    plan = build_plan(LAYOUT, computed, "none", "cpu")
    y_sub = torch.randn(2, plan.num_tokens, 6)
    out = restore(x, y_sub, plan)
    ids = frame_of_token(LAYOUT)
    kept = torch.tensor([i < 0 or int(i) in computed for i in ids])
    assert torch.equal(out[:, ~kept], x[:, ~kept])
    assert torch.equal(out[:, kept], y_sub)


def test_nearest_copies_the_closest_computed_update():
    x = torch.zeros(1, LAYOUT.length, 1)
    plan = build_plan(LAYOUT, (0, 3, 8), "nearest", "cpu")
    y_sub = torch.zeros(1, plan.num_tokens, 1)
    frames = y_sub[0, LAYOUT.prefix:LAYOUT.prefix + 3 * 4].view(3, 4)
    frames[:] = torch.tensor([10.0, 30.0, 80.0]).view(3, 1)
    out = restore(x, y_sub, plan)[0, LAYOUT.frame_tokens, 0].view(9, 4)[:, 0]
    assert out.tolist() == [10, 10, 30, 30, 30, 30, 80, 80, 80]


def test_interpolation_sources():
    skipped, lo, hi, weight = interpolation_sources((0, 3), 5, "linear")
    assert skipped == [1, 2, 4] and lo == [0, 0, 1] and hi == [1, 1, 1]
    assert weight == pytest.approx([1 / 3, 2 / 3, 0.0])
    with pytest.raises(ValueError, match="interpolation"):
        interpolation_sources((0,), 3, "cubic")


def test_gather_takes_prefix_frames_and_suffix_in_order():
    x = torch.arange(LAYOUT.length).view(1, -1, 1)
    plan = build_plan(LAYOUT, (1, 5), "linear", "cpu")
    tokens = gather(x, plan).flatten().tolist()
    assert tokens == [0, 1, 2] + list(range(7, 11)) + list(range(23, 27)) + [39, 40]
    assert plan.num_tokens == 3 + 2 * 4 + 2
    assert [plan.kept_before(p) for p in (0, 3, 7, 11, 23, 27, 39, 41)] == [0, 3, 3, 7, 7, 11, 11, 13]


def test_shifted_plan_puts_text_first():
    plan = build_plan(FrameLayout(0, 4, 2), (0, 2), "linear", "cpu").shifted(3)
    assert plan.token_index.tolist() == [0, 1, 2, 3, 4, 7, 8]


def test_bad_subsets_are_refused():
    for computed in [(), (9,), (3, 1), (1, 1)]:
        with pytest.raises(ValueError, match="computed frames"):
            build_plan(LAYOUT, computed, "linear", "cpu")
