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
