"""The pure-torch parts of the quality study: latent map, scenes, text tokens, metrics, schedule."""
import random

import pytest
import torch

from comfyui_fis.quality import latent, metrics, scenes, text
from comfyui_fis.quality.model import schedule_sigmas, shift_sigma


@pytest.fixture(scope="module")
def videos():
    generator = torch.Generator().manual_seed(0)
    indices = scenes.random_indices(6, generator)
    return indices, scenes.render(indices, generator)


def test_latent_map_is_orthonormal_and_decode_inverts_encode(videos):
    _, video = videos
    torch.testing.assert_close(latent.ROTATION @ latent.ROTATION.T, torch.eye(16))
    z = latent.encode(video)
    assert z.shape == (6, 16, scenes.FRAMES, scenes.SIZE // 2, scenes.SIZE // 2)
    torch.testing.assert_close(latent.decode(z), video, atol=1e-5, rtol=0)
    assert 0.7 < z.std().item() < 1.3                     # SCALE gives about unit variance
    # any latent decodes to the projection of what encode can produce: encode(decode(.)) is idempotent
    noise = torch.randn_like(z)
    projected = latent.encode(latent.decode(noise))
    torch.testing.assert_close(latent.encode(latent.decode(projected)), projected, atol=1e-5, rtol=0)


def test_a_latent_pixel_holds_exactly_its_2x2_rgb_patch(videos):
    _, video = videos
    changed = video.clone()
    changed[0, :, 3, 4:6, 10:12] = 0.0
    diff = (latent.encode(changed) - latent.encode(video)).abs().sum(dim=1)
    assert torch.nonzero(diff).tolist() == [[0, 3, 2, 5]]


def test_scenes_move_and_match_their_descriptions(videos):
    indices, video = videos
    assert video.shape == (6, 3, scenes.FRAMES, scenes.SIZE, scenes.SIZE)
    assert video.min() >= -1 and video.max() <= 1
    motion = video.diff(dim=2).abs().mean(dim=(1, 3, 4))
    assert (motion > 0.005).all()                          # every clip moves in every frame
    for row in indices.tolist():
        scene = scenes.Scene(tuple(slot[i] for slot, i in zip(scenes.SLOTS, row)))
        assert scenes.Scene.parse(scene.description) == scene
        assert scene.words[0] != scene.words[3]            # the two shapes differ in colour


def test_a_shape_moves_the_way_its_description_says():
    """A white circle moving right over a plain background with a static camera: its centre of mass
    moves right, steadily."""
    scene = scenes.Scene(("white", "circle", "right", "blue", "square", "down", "plain", "static"))
    generator = torch.Generator().manual_seed(1)
    video = scenes.render(torch.tensor([scene.indices]), generator)
    white = (video.min(dim=1).values > 0.5).float()[0]     # [F, H, W]: only the white shape is that bright
    columns = torch.arange(scenes.SIZE).float()
    x = (white.sum(dim=1) * columns).sum(dim=1) / white.sum(dim=(1, 2)).clamp(min=1)
    assert x[-1] - x[0] > 6 and (x.diff() > -0.5).all()


def test_random_scenes_are_portable_and_parse_back():
    first = [scenes.random_scene(random.Random(3)).description for _ in range(2)]
    assert first[0] == first[1]
    scene = scenes.random_scene(random.Random(4))
    assert scenes.Scene.parse(scene.description) == scene
    with pytest.raises(ValueError, match="a scene is 8 words"):
        scenes.Scene.parse("red square moving left")


def test_text_tokens_are_fixed_and_tell_words_and_positions_apart():
    scene = scenes.Scene(("red", "square", "left", "blue", "circle", "up", "checks", "pan-right"))
    tokens = text.embed([scene])
    assert tokens.shape == (1, 8, 4096)
    assert torch.equal(tokens, text.embed([scene]))
    assert len(text.VOCABULARY) == 27
    words = text.WORD_VECTORS
    torch.testing.assert_close(words @ words.T, 4096 * torch.eye(len(words)))
    # the same word in the two colour slots gives different tokens (position vectors differ)
    swapped = scenes.Scene(("blue", "square", "left", "red", "circle", "up", "checks", "pan-right"))
    assert not torch.equal(text.embed([swapped])[0, 0], tokens[0, 3])
    assert torch.equal(text.embed([swapped])[0, 0] - text.POSITION_VECTORS[0], tokens[0, 3] - text.POSITION_VECTORS[3])


def test_metrics_on_known_cases(videos):
    _, video = videos
    clip = (video + 1) / 2
    assert torch.all(metrics.psnr_per_frame(clip, clip) == metrics.MAX_PSNR)
    torch.testing.assert_close(metrics.ssim_per_frame(clip, clip), torch.ones(6, scenes.FRAMES))
    assert torch.all(metrics.temporal_error(clip, clip) == 0)
    shifted = (clip + 0.1).clamp(0, 1)
    noisy = (clip + 0.1 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert metrics.psnr_per_frame(noisy, clip).mean() < 25
    assert metrics.ssim_per_frame(noisy, clip).mean() < metrics.ssim_per_frame(shifted, clip).mean() < 1
    # a constant offset keeps the motion: small temporal error; frozen frames lose all of it
    frozen = clip[:, :, :1].expand_as(clip)
    assert (metrics.temporal_error(shifted, clip) < 0.3).all()
    torch.testing.assert_close(metrics.temporal_error(frozen, clip), torch.ones(6))
    assert metrics.pooled_psnr([0.0, 0.0]) == metrics.MAX_PSNR
    assert metrics.pooled_psnr([0.01, 0.03]) == pytest.approx(10 * torch.log10(torch.tensor(50.0)).item())


def test_block_flops_grow_linearly_in_projections_and_quadratically_in_attention():
    tokens, dim, ffn, context = 1088, 256, 512, 8
    full = metrics.block_flops(tokens, dim, ffn, context)
    half = metrics.block_flops(tokens // 2, dim, ffn, context)
    attention = 4 * tokens * tokens * dim
    assert full - 2 * half == pytest.approx(attention / 2 - 2 * context * 2 * dim * dim)
    assert 0.5 < 1 - half / full < 0.75                    # half the tokens: more than half the work saved


def test_schedule_sigmas_are_the_shifted_simple_schedule():
    assert schedule_sigmas(4) == pytest.approx([1.0, 0.9, 0.75, 0.5, 0.0])
    assert shift_sigma(0.5, 1.0) == 0.5


def test_correction_forms_are_costed_at_wan14b_as_they_would_run_there():
    """The study's cost column: the full 5120 x 5120 map is about a tenth of a sparse block in FLOPs (the fidelity
    issue's figure), the shipped 128-channel maps under half a percent, and a form reading fewer tokens costs less."""
    from comfyui_fis.quality.correction_forms import forms, wan14b_share
    rows = {name: wan14b_share(there) for name, _, there in forms(256)}
    shipped_all, full = rows["128-channel maps, every fit token, fp32 products"], rows["full map (256 x 256)"]
    eighth = rows["fit on 1/8 of the tokens"]
    assert 0.08 < full < 0.12
    assert eighth < shipped_all < 0.005
    assert [there.get("fit_tokens") for name, _, there in forms(256) if "1/8" in name] == [4050, 4050]


def test_the_fit_study_restore_is_the_products_corrected_restore_with_nothing_added():
    """Each candidate of ``quality.fit_study`` is today's corrected restore plus one mechanism, so its stand-in with
    no mechanism must give the product's restore, its sums over earlier calls included (two calls of one block); a
    mechanism changes the skipped frames only, and it keeps what it says it keeps."""
    from comfyui_fis.fis_core import FitSums, FrameLayout, build_plan, restore
    from comfyui_fis.quality.fit_study import MECHANISMS, StudyRestore, wan14b_kept_mb
    generator = torch.Generator().manual_seed(0)
    frames, tokens, channels = 9, 6, 256
    layout = FrameLayout(0, frames, tokens)
    today, study, sums = StudyRestore(MECHANISMS[0], groups=2), StudyRestore(MECHANISMS[3], groups=2), FitSums()
    for computed in ((0, 2, 4, 6, 8), (1, 3, 5, 7)):
        plan = build_plan(frames, computed, "corrected", "cpu")
        x = torch.randn(1, frames * tokens, channels, generator=generator, dtype=torch.float64).float()
        y_sub = torch.randn(1, len(computed) * tokens, channels, generator=generator, dtype=torch.float64).float()
        product = restore(x, y_sub, layout, plan, (sums, "key"))
        torch.testing.assert_close(today(x, y_sub, layout, plan, (None, "key")), product, rtol=1e-4, atol=1e-4)
        other = study(x, y_sub, layout, plan, (None, "key")).view(1, frames, tokens, channels)
        for frame in computed:
            assert torch.equal(other[0, frame], product.view(1, frames, tokens, channels)[0, frame])
    assert not torch.allclose(other, product.view_as(other))          # the second call used the first call's pairs
    assert today.kept_values == 2 * 128 * channels                    # the carried Gram and cross sums
    assert 190 < wan14b_kept_mb(MECHANISMS[0], 2) < 210                # "about 200 MB for 38 sparse blocks" (README)


def _restore_inputs(generator, frames, tokens, channels, computed):
    x = torch.randn(1, frames * tokens, channels, generator=generator, dtype=torch.float64).float()
    y_sub = torch.randn(1, len(computed) * tokens, channels, generator=generator, dtype=torch.float64).float()
    return x, y_sub


def test_the_fit_study_keeps_the_own_residual_one_step_and_cuts_it_as_it_says():
    """At G=3 the own residual of the previous step alone (``own_age=1``): a frame computed one step ago gets it, one
    computed two steps ago does not, and only one step's residuals are kept; FP8 keeps it within FP8's precision,
    pooling keeps a residual that is constant over the frame exactly; the Wan-14B figures follow."""
    from dataclasses import replace

    from comfyui_fis.fis_core import FrameLayout, build_plan
    from comfyui_fis.quality.fit_study import (G3_MECHANISMS, Mechanism, StudyRestore, own_residual_bytes, pack_residual,
                                               unpack_residual)
    generator = torch.Generator().manual_seed(1)
    frames, tokens, channels = 9, 4, 128
    layout = FrameLayout(0, frames, tokens)
    previous_only = G3_MECHANISMS[2]
    runs = {name: StudyRestore(m, groups=3) for name, m in
            (("today", Mechanism("today")), ("any", replace(previous_only, own_age=None)), ("previous", previous_only))}
    outs = {}
    for computed in ((0, 3, 6), (1, 4, 7), (2, 5, 8)):            # the groups of three steps, as they rotate
        plan = build_plan(frames, computed, "corrected", "cpu")
        x, y_sub = _restore_inputs(generator, frames, tokens, channels, computed)
        outs = {name: run(x, y_sub, layout, plan, (None, "key")).view(frames, tokens, channels) for name, run in runs.items()}
    # third step: frames 1, 4, 7 were computed one step ago, 0, 3, 6 two steps ago (both between 2, 5, 8)
    for frame in (4, 7):
        assert not torch.allclose(outs["previous"][frame], outs["today"][frame])
    for frame in (3, 6):
        torch.testing.assert_close(outs["previous"][frame], outs["today"][frame])
        assert not torch.allclose(outs["any"][frame], outs["today"][frame])
    assert len(runs["previous"].state["key"]["residual"]) == 2       # frames 2 and 5 of the last step (against 0, 3, 6)
    assert len(runs["any"].state["key"]["residual"]) > 2
    # at Wan-14B 720p, per sparse block: a third of 21 frames of 3600 x 5120 in bf16 for the previous step's alone
    assert own_residual_bytes(previous_only, 3) == 7 * 3600 * 5120 * 2
    assert own_residual_bytes(replace(previous_only, own_age=None), 3) == 21 * 3600 * 5120 * 2     # 1 + 2 thirds
    assert own_residual_bytes(replace(previous_only, own_fp8=True), 3) == 7 * 3600 * 5120
    assert own_residual_bytes(replace(previous_only, own_pool=2), 3) == 7 * 3600 * 5120 * 2 / 4
    residual = torch.randn(2, 16, 8, generator=generator)
    packed = pack_residual(residual, 1, True)
    assert packed[0].dtype == torch.float8_e4m3fn
    torch.testing.assert_close(unpack_residual(packed, 16), residual, rtol=0.07, atol=residual.abs().max() * 2 ** -9)
    constant = torch.randn(2, 1, 8, generator=generator).expand(2, 16, 8)
    assert pack_residual(constant, 2, False)[0].shape == (2, 4, 8)
    torch.testing.assert_close(unpack_residual(pack_residual(constant, 2, False), 16), constant)


def test_the_fit_study_probes_take_the_dense_blocks_output_where_they_say():
    """``computed``: the computed frames are the dense block's output (the skipped ones restored from them);
    ``skipped``: the skipped frames are, the computed ones the sparse block's."""
    from comfyui_fis.fis_core import FrameLayout, build_plan
    from comfyui_fis.quality.fit_study import PROBES, StudyRestore
    generator = torch.Generator().manual_seed(2)
    frames, tokens, channels, computed = 7, 4, 128, (0, 3, 6)
    layout, plan = FrameLayout(0, frames, tokens), build_plan(frames, computed, "corrected", "cpu")
    x, y_sub = _restore_inputs(generator, frames, tokens, channels, computed)
    dense = torch.randn(1, frames * tokens, channels, generator=generator)
    skipped = [f for f in range(frames) if f not in computed]
    outs = {}
    for probe in PROBES[:2]:
        study = StudyRestore(probe, groups=3)
        study.dense_update = dense - x
        outs[probe.oracle] = study(x, y_sub, layout, plan, (None, "key")).view(frames, tokens, channels)
    dense, sparse = dense.view(frames, tokens, channels), y_sub.view(len(computed), tokens, channels)
    torch.testing.assert_close(outs["computed"][list(computed)], dense[list(computed)])
    assert not torch.allclose(outs["computed"][skipped], dense[skipped])
    torch.testing.assert_close(outs["skipped"][skipped], dense[skipped])
    torch.testing.assert_close(outs["skipped"][list(computed)], sparse)


def test_the_own_residual_errors_vanish_where_the_activations_repeat_and_grow_where_they_do_not():
    """On a block whose input and update repeat at every step, a skipped frame's residual of an earlier step (its
    neighbours exact then) is what today's correction misses now, but for the maps, which the rotating groups' pairs
    change from step to step; where each step's are unrelated, adding it only adds error."""
    from comfyui_fis.quality.fit_study import OWN_RESIDUAL_ROWS, own_residual_errors
    generator = torch.Generator().manual_seed(3)
    frames, tokens, channels, steps = 10, 4, 128, 3

    def activations():
        return tuple(torch.randn(1, frames, tokens, channels, generator=generator) for _ in range(2))
    same = activations()
    repeating = own_residual_errors({(0, 0, s): same for s in range(steps)}, [0], frames, steps)
    unrelated = own_residual_errors({(0, 0, s): activations() for s in range(steps)}, [0], frames, steps)
    assert set(repeating) == {"G=2, age 1", "G=3, age 1", "G=3, age 2"}
    exact = OWN_RESIDUAL_ROWS[1]
    for key, rows in repeating.items():
        assert rows[exact] < 0.25 * rows["today"], key
        assert unrelated[key][exact] > unrelated[key]["today"], key


def test_the_fit_study_pools_the_skipped_frames_tokens_by_window_at_each_windows_centre():
    """The pooled context: one token per window of each skipped frame, the window's mean, at the position of the token
    nearest its centre (its RoPE)."""
    from comfyui_fis.quality.fit_study import pooled_tokens
    frames, side, channels = 3, 4, 5
    x = torch.arange(frames * side * side, dtype=torch.float32).view(1, -1, 1).expand(2, -1, channels)
    pooled, positions = pooled_tokens(x, frames, [0, 2], 2)
    assert pooled.shape == (2, 8, channels)
    first = x[0, :16, 0].view(side, side)[:2, :2].mean()        # frame 0's top-left window
    torch.testing.assert_close(pooled[:, 0], first.expand(2, channels))
    assert positions.tolist() == [5, 7, 13, 15, 37, 39, 45, 47]     # (1,1) (1,3) (3,1) (3,3) of frames 0 and 2
