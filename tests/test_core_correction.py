"""The corrected interpolation (no host needed): what the fitted map recovers, per batch entry, and when it stays off."""
import pytest
import torch

from comfyui_fis.fis_core import CorrectionForm, FrameLayout, build_plan, correction_flops, gather, restore, token_index

MAP_CHANNELS = CorrectionForm().map_channels

FRAMES, TOKENS, CHANNELS = 9, 256, 2 * MAP_CHANNELS
LAYOUT = FrameLayout(prefix=2, frames=FRAMES, tokens_per_frame=TOKENS, suffix=3)


def block_diagonal_maps(batch: int, seed: int = 0) -> torch.Tensor:
    """One random block-diagonal C x C map per batch entry (blocks of MAP_CHANNELS channels)."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.zeros(batch, CHANNELS, CHANNELS)
    for start in range(0, CHANNELS, MAP_CHANNELS):
        part = slice(start, start + MAP_CHANNELS)
        maps[:, part, part] = torch.randn(batch, MAP_CHANNELS, MAP_CHANNELS, generator=generator) / MAP_CHANNELS ** 0.5
    return maps


def video(batch: int, seed: int = 1) -> torch.Tensor:
    """Tokens [B, L, C] whose frames share a common part and each have their own (what the map must predict)."""
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn(batch, 1, TOKENS, CHANNELS, generator=generator)
    own = torch.randn(batch, FRAMES, TOKENS, CHANNELS, generator=generator)
    frames = (common + own).reshape(batch, FRAMES * TOKENS, CHANNELS)
    return torch.cat([torch.randn(batch, 2, CHANNELS), frames, torch.randn(batch, 3, CHANNELS)], dim=1)


def run_sparse(x, block, computed, mode, form=CorrectionForm()):
    plan = build_plan(FRAMES, computed, mode, "cpu", form)
    return restore(x, block(gather(x, token_index(LAYOUT, plan))), LAYOUT, plan)


def frame_error(out, reference, frames):
    index = torch.tensor(frames)
    view = lambda t: t[:, LAYOUT.frame_tokens].unflatten(1, (FRAMES, TOKENS)).index_select(1, index)  # noqa: E731
    return ((view(out) - view(reference)).norm() / (view(reference)).norm()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_linear_update_is_recovered_per_batch_entry(dtype):
    """Each batch entry's block adds x A_b: the interpolated update misses each frame's own part, the corrected
    one recovers it (up to the ridge), with each entry's own map."""
    maps = block_diagonal_maps(2)
    x = video(2).to(dtype)
    block = lambda t: t + torch.bmm(t.float(), maps).to(t.dtype)  # noqa: E731
    reference, skipped = block(x), [1, 3, 5, 7]
    linear = run_sparse(x, block, (0, 2, 4, 6, 8), "linear")
    corrected = run_sparse(x, block, (0, 2, 4, 6, 8), "corrected")
    assert frame_error(linear, reference, skipped) > 0.3
    assert frame_error(corrected, reference, skipped) < 0.15 * frame_error(linear, reference, skipped)
    assert torch.equal(corrected[:, :2], reference[:, :2]) and torch.equal(corrected[:, -3:], reference[:, -3:])
    assert torch.equal(corrected, corrected.to(dtype))


def test_computed_frames_and_non_frame_tokens_are_the_block_output():
    x = video(1)
    block = lambda t: torch.tanh(t) * 2  # noqa: E731
    out, reference = run_sparse(x, block, (0, 2, 4, 6, 8), "corrected"), block(x)
    assert frame_error(out, reference, [0, 2, 4, 6, 8]) == 0.0


def test_the_form_sets_the_maps_the_fit_reads_and_its_products_dtype():
    """A map that mixes all channels is recovered by the full map (map_channels = C), not by block-diagonal ones;
    a smaller fit_tokens budget reads fewer tokens for a close map; bf16 products give nearly the fp32 maps."""
    generator = torch.Generator().manual_seed(3)
    full_map = torch.randn(1, CHANNELS, CHANNELS, generator=generator) / CHANNELS ** 0.5
    x = video(1)
    block = lambda t: t + t @ full_map  # noqa: E731
    reference, skipped, computed = block(x), [1, 3, 5, 7], (0, 2, 4, 6, 8)
    error = {form: frame_error(run_sparse(x, block, computed, "corrected", form), reference, skipped)
             for form in (CorrectionForm(), CorrectionForm(map_channels=CHANNELS), CorrectionForm(fit_tokens=TOKENS),
                          CorrectionForm(fit_dtype=torch.bfloat16))}
    default, full, subsampled, bf16 = error.values()
    assert full < 0.5 * default
    assert default < subsampled < 1.5 * default       # 3 fit frames of 256 tokens, a third of them read
    assert bf16 != default and abs(bf16 - default) < 0.02 * default
    assert correction_flops(3, 4, TOKENS, CHANNELS, CorrectionForm(fit_tokens=TOKENS)) < correction_flops(3, 4, TOKENS, CHANNELS)
    assert correction_flops(3, 4, TOKENS, CHANNELS, CorrectionForm(map_channels=CHANNELS)) > correction_flops(3, 4, TOKENS, CHANNELS)


def test_a_bad_form_is_refused():
    for bad in [dict(map_channels=0), dict(fit_tokens=0), dict(map_channels=64.0), dict(fit_dtype=torch.float16)]:
        with pytest.raises(ValueError, match="correction form"):
            CorrectionForm(**bad)


def test_too_few_computed_frames_to_fit_is_linear_exactly():
    """With no computed frame between two others there is nothing to fit on: the restore is the linear one."""
    x = video(1)
    block = lambda t: t + torch.sin(t)  # noqa: E731
    for computed in [(0, 8), (4,)]:
        assert not build_plan(FRAMES, computed, "corrected", "cpu").corrects
        assert torch.equal(run_sparse(x, block, computed, "corrected"), run_sparse(x, block, computed, "linear"))


def test_correction_flops_count_fit_solve_and_apply():
    # 7 fit frames (25,200 tokens, of which the fit reads every 7th: 7 x 515) and 8 skipped frames of 3600 tokens
    # at 5120 channels: 40 maps of 128
    flops = correction_flops(7, 8, 3600, 5120)
    apply = 2 * 8 * 3600 * 5120 * 128
    products = 2 * 2 * 7 * 515 * 5120 * 128
    assert apply + products < flops < 1.2 * (apply + products)
    assert correction_flops(0, 8, 3600, 5120) == 0.0


def test_carried_sums_fit_as_if_the_calls_data_were_one():
    """With a FitSums, a call's fit takes the earlier calls' sums too: the same maps as one fit on all their tokens;
    ``clear`` starts afresh."""
    from comfyui_fis.fis_core import FitSums
    from comfyui_fis.fis_core.correction import fit_maps
    plan = build_plan(FRAMES, (0, 2, 4, 6, 8), "corrected", "cpu")
    maps = block_diagonal_maps(1)
    calls = []
    for seed in (1, 2):
        x = video(1, seed)[:, LAYOUT.frame_tokens][:, :, :].unflatten(1, (FRAMES, TOKENS))[:, :, :64]
        y = (x + torch.tanh(x @ maps)).index_select(1, plan.frame_index)
        calls.append((x, y))
    sums = FitSums()
    first = fit_maps(*calls[0], plan.fit, plan.fit_weight, plan.frame_index, (sums, "key"))
    second = fit_maps(*calls[1], plan.fit, plan.fit_weight, plan.frame_index, (sums, "key"))
    together = fit_maps(torch.cat([calls[0][0], calls[1][0]], 2), torch.cat([calls[0][1], calls[1][1]], 2),
                        plan.fit, plan.fit_weight, plan.frame_index)
    torch.testing.assert_close(second, together, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(first, second, atol=1e-3)
    sums.clear()
    torch.testing.assert_close(fit_maps(*calls[0], plan.fit, plan.fit_weight, plan.frame_index, (sums, "key")), first)


def one_frame_at_a_time(out, x, maps, corrected):
    """The apply as a loop over single frames (what apply_maps computes in strided runs)."""
    batch, _, tokens, channels = x.shape
    n, c = maps.shape[1], maps.shape[2]
    for frame, low, high, weight in corrected:
        dx = x[:, frame] - torch.lerp(x[:, low], x[:, high], weight)
        out[:, frame] += (dx.view(batch, tokens, n, c).transpose(1, 2) @ maps.to(x.dtype)).transpose(1, 2).reshape(
            batch, tokens, channels)
    return out


@pytest.mark.parametrize("computed", [(0, 2, 4, 6, 8), (0, 3, 6), (0, 1, 4, 8), (2, 3), (0, 8)])
@pytest.mark.parametrize("frames_at_once", [1, 2, 3, 16])
def test_the_apply_in_strided_runs_equals_one_frame_at_a_time(monkeypatch, computed, frames_at_once):
    """Runs of evenly spaced frames (G=2: every other one) take one strided view each, up to APPLY_TOKENS tokens;
    every skipped frame is corrected once, as frame by frame, and the others are untouched."""
    from comfyui_fis.fis_core import correction
    monkeypatch.setattr(correction, "APPLY_TOKENS", frames_at_once * TOKENS)
    plan = build_plan(FRAMES, computed, "corrected", "cpu")
    runs = correction.frame_runs(plan.corrected, frames_at_once)
    assert sorted(f + s * i for f, _, _, _, s, count in runs for i in range(count)) == [f[0] for f in plan.corrected]
    assert all(count <= frames_at_once for *_, count in runs)
    x = video(2).narrow(1, 2, FRAMES * TOKENS).reshape(2, FRAMES, TOKENS, CHANNELS)
    maps = torch.randn(2, CHANNELS // MAP_CHANNELS, MAP_CHANNELS, MAP_CHANNELS) / MAP_CHANNELS
    out = torch.randn_like(x)
    expected = one_frame_at_a_time(out.clone(), x, maps, plan.corrected)
    torch.testing.assert_close(correction.apply_maps(out, x, maps, plan), expected, rtol=1e-5, atol=1e-5)
    if frames_at_once > 1 and computed == (0, 2, 4, 6, 8):
        assert len(runs) == -(-4 // frames_at_once)          # G=2: the 4 skipped frames in ceil(4 / K) runs
