"""FIS Compare and FIS Timer: the report's figures are the quality study's, the side-by-side is laid out as said,
bad inputs stop at once naming the input, and the timers time real ComfyUI sampling runs."""
import math
import re
import time

import pytest
import torch

VIDEO_SEED = 0


@pytest.fixture(scope="module")
def nodes(host):
    from comfyui_fis.nodes import FISCompare, FISTimer
    return FISCompare(), FISTimer()


@pytest.fixture(scope="module")
def clips():
    """Two different real videos of the quality study (17 frames of 32x32), as IMAGE batches [F, H, W, 3]."""
    from comfyui_fis.quality import scenes
    generator = torch.Generator().manual_seed(VIDEO_SEED)
    videos = (scenes.render(scenes.random_indices(2, generator), generator) + 1) / 2
    return videos[0].permute(1, 2, 3, 0).contiguous(), videos[1].permute(1, 2, 3, 0).contiguous()


def run(compare, reference, accelerated, gain=4.0, **timings):
    out = compare.compare(reference, accelerated, gain, **timings)
    image, text = out["result"]
    assert out["ui"] == {"text": [text]}
    return image, text


def as_clip(images):
    return images.permute(3, 0, 1, 2).unsqueeze(0)


def test_the_figures_are_the_quality_modules(nodes, clips):
    from comfyui_fis.nodes.compare.figures import measure
    from comfyui_fis.quality import metrics
    reference, other = clips
    accelerated = (0.7 * reference + 0.3 * other)
    expected = metrics.fidelity(as_clip(accelerated), as_clip(reference))
    figures = measure(reference, accelerated)
    assert figures.psnr == metrics.pooled_psnr(expected["mse"])
    assert figures.frame_psnr[figures.worst_frame] == pytest.approx(expected["psnr_min_frame"][0], abs=1e-6)
    assert figures.ssim == pytest.approx(expected["ssim"][0], abs=1e-6)
    assert figures.temporal_error == pytest.approx(expected["temporal_error"][0], abs=1e-6)
    _, text = run(nodes[0], reference, accelerated)
    assert f"PSNR {figures.psnr:.1f} dB (all frames pooled), worst frame {figures.worst_frame}: " \
           f"{expected['psnr_min_frame'][0]:.1f} dB" in text
    assert f"SSIM {expected['ssim'][0]:.4f}" in text
    assert f"temporal error {100 * expected['temporal_error'][0]:.1f}%" in text
    assert "17 frames of 32x32" in text and "x4" in text


def test_a_clip_against_itself_is_identical(nodes, clips):
    reference, _ = clips
    image, text = run(nodes[0], reference, reference.clone())
    assert "PSNR 100.0 dB: identical to the reference" in text
    assert "SSIM 1.0000" in text and "temporal error 0.0%" in text
    w = reference.shape[2]
    assert torch.equal(image[:, -8:, -w:], torch.zeros_like(image[:, -8:, -w:]))  # no difference, below the label


def test_a_known_offset_gives_its_psnr_and_keeps_the_motion(nodes, clips):
    """+0.01 on every pixel: MSE 1e-4, 40 dB on every frame; the motion is the same; the difference panel shows
    0.01 x gain."""
    from comfyui_fis.nodes.compare.figures import measure
    from comfyui_fis.nodes.compare.side_by_side import GAP
    reference = 0.1 + 0.8 * clips[0]
    accelerated = reference + 0.01
    figures = measure(reference, accelerated)
    assert figures.psnr == pytest.approx(40.0, abs=1e-3)
    assert figures.frame_psnr == pytest.approx([40.0] * 17, abs=1e-3)
    assert figures.temporal_error == pytest.approx(0.0, abs=1e-5)
    image, text = run(nodes[0], reference, accelerated, gain=10.0)
    f, h, w, _ = reference.shape
    assert image.shape == (f, h, 3 * w + 2 * GAP, 3)
    bottom = slice(h // 2, h)  # below the labels
    torch.testing.assert_close(image[:, bottom, :w], reference[:, bottom])
    torch.testing.assert_close(image[:, bottom, w + GAP:2 * w + GAP], accelerated[:, bottom])
    torch.testing.assert_close(image[:, bottom, -w:], torch.full_like(reference[:, bottom], 0.1), atol=1e-5, rtol=0)
    assert "PSNR 40.0 dB" in text and "|accelerated - reference| x10" in text


def test_the_panels_are_labelled_on_the_frame(nodes, clips):
    """Each panel's top-left corner carries a label, white text on a dark box; the rest is the clip's."""
    from comfyui_fis.nodes.compare.side_by_side import GAP
    reference, other = clips
    big = [c.repeat_interleave(4, 1).repeat_interleave(4, 2) for c in (reference, other)]  # 128x128: 10-pixel labels
    image, _ = run(nodes[0], big[0], big[1])
    w = big[0].shape[2]
    difference = (big[1] - big[0]).abs().mul(4).clamp(0, 1)
    for i, panel in enumerate((big[0], big[1], difference)):
        out = image[:, :, i * (w + GAP):i * (w + GAP) + w]
        assert out[:, :12, :40].amax() > 0.95 and not torch.equal(out[:, :12, :40], panel[:, :12, :40])
        torch.testing.assert_close(out[:, 40:], panel[:, 40:])


@pytest.mark.parametrize("change, message", [
    (lambda r, a: (r, a[:-1]), r"accelerated: 16 frames, but reference has 17"),
    (lambda r, a: (r, a[:, :-4]), r"accelerated: frames of 32x28, but reference's are 32x32"),
    (lambda r, a: (r[:0], a), r"reference: the IMAGE batch is empty"),
    (lambda r, a: (r, a[..., :2]), r"accelerated: expected an IMAGE batch \[frames, height, width, 3\]"),
    (lambda r, a: (r[0], a), r"reference: expected an IMAGE batch .* got \(32, 32, 3\)"),
    (lambda r, a: (r, None), r"accelerated: expected an IMAGE batch .* got NoneType"),
    (lambda r, a: (r[:, :8, :8], a[:, :8, :8]), r"reference: frames of 8x8; SSIM needs at least 11x11 pixels"),
])
def test_bad_inputs_name_the_input(nodes, clips, change, message):
    with pytest.raises(ValueError, match=message):
        nodes[0].compare(*change(*clips), 4.0)


def test_bad_gain_names_the_widget(nodes, clips):
    with pytest.raises(ValueError, match="difference_gain: must be above 0"):
        nodes[0].compare(*clips, 0.0)


def test_timers_time_the_sampling_and_the_report_gives_the_speedup(nodes):
    """Dense and FIS runs of a tiny Wan through ComfyUI's sampler, each model behind an FIS Timer: the report gives
    each run's time, which is within the sampler call's wall time, and their ratio."""
    from comfyui_fis.quality.latent import to_pixels
    from tiny_models import fis, sample, text, tiny_wan
    compare, timer = nodes
    model = tiny_wan(num_layers=6)
    latent = torch.randn(1, 16, 9, 8, 8, generator=torch.Generator().manual_seed(0))
    images, walls, timings = [], [], []
    for branch in (model, fis(model)):
        timed, timing = timer.time(branch)
        started = time.perf_counter()
        out = sample(timed, latent, text(), steps=3)
        walls.append(time.perf_counter() - started)
        images.append(to_pixels(out)[0].permute(1, 2, 3, 0))
        timings.append(timing)
    assert all(0 < t.seconds <= wall for t, wall in zip(timings, walls))
    _, report = run(compare, *images, reference_timing=timings[0], accelerated_timing=timings[1])
    seconds = [float(s) for s in re.search(r"reference ([\d.]+) s, accelerated ([\d.]+) s", report).groups()]
    assert seconds == pytest.approx([round(t.seconds, 1) for t in timings])
    assert f"speed-up {timings[0].seconds / timings[1].seconds:.2f}x" in report
    _, untimed = run(compare, *images, reference_timing=timings[0])
    assert "accelerated not timed (put an FIS Timer right before each branch's sampler)" in untimed
    assert "speed-up" not in untimed
    _, neither = run(compare, *images)
    assert "sampling time: not measured (put an FIS Timer right before each branch's sampler)" in neither


def test_a_chained_timer_adds_the_second_expert_and_keeps_each_samplers_latest_run(nodes):
    """Wan 2.2 A14B: two samplers per branch, one timing. ComfyUI's execution context names the sampler node;
    a rerun replaces that sampler's time, a cached sampler keeps the time of the run that made its output."""
    from comfy_execution.utils import CurrentNodeContext
    from tiny_models import sample, text, tiny_wan
    timer = nodes[1]
    latent = torch.randn(1, 16, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    high, timing = timer.time(tiny_wan(num_layers=2, seed=1))
    low, chained = timer.time(tiny_wan(num_layers=2, seed=2), timing)
    assert chained is timing and timing.seconds is None
    for node, model in (("high", high), ("low", low)):
        with CurrentNodeContext("prompt-1", node):
            sample(model, latent, text(), steps=2)
    first = dict(timing.runs)
    assert set(first) == {"high", "low"} and timing.seconds == pytest.approx(first["high"][1] + first["low"][1])
    with CurrentNodeContext("prompt-2", "low"):
        sample(low, latent, text(), steps=2)
    assert timing.runs["high"] == first["high"] and timing.runs["low"][0] == "prompt-2"
    assert timing.from_earlier_prompt("prompt-2")
    with CurrentNodeContext("prompt-2", "compare"):
        _, report = run(nodes[0], *[torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(s)) for s in (0, 1)],
                        reference_timing=timing)
    assert "(an earlier run: its output was cached)" in report


def test_a_second_timer_on_a_timed_model_replaces_the_first(nodes):
    from tiny_models import sample, text, tiny_wan
    timer = nodes[1]
    once, first = timer.time(tiny_wan(num_layers=2))
    twice, second = timer.time(once)
    sample(twice, torch.randn(1, 16, 5, 8, 8), text(), steps=2)
    assert first.seconds is None and second.seconds > 0


# --- a broken run (NaN or infinite pixels) is reported as broken, never measured -----------------------------------

def with_nonfinite(clip, frames, value=float("nan")):
    """``clip`` with ``value`` in one pixel of each of ``frames`` (an FP8 overflow, a bad LoRA)."""
    broken = clip.clone()
    broken[list(frames), 5, 7, 1] = value
    return broken


@pytest.mark.parametrize("broken, share", [
    (lambda r, a: (r, torch.full_like(a, float("nan"))), {"accelerated": "17 of 17 frames (100%)"}),
    (lambda r, a: (r, with_nonfinite(a, range(0, 17, 2))), {"accelerated": "9 of 17 frames (53%)"}),
    (lambda r, a: (with_nonfinite(r, [3], float("-inf")), a), {"reference": "1 of 17 frames (6%)"}),
    (lambda r, a: (torch.full_like(r, float("inf")), torch.full_like(a, float("inf"))),
     {"reference": "17 of 17 frames (100%)", "accelerated": "17 of 17 frames (100%)"}),
])
def test_non_finite_pixels_are_reported_naming_the_input_and_no_psnr(nodes, clips, broken, share):
    reference, accelerated = broken(clips[0], 0.7 * clips[0] + 0.3 * clips[1])
    image, text = run(nodes[0], reference, accelerated)
    for name in ("reference", "accelerated"):
        if name in share:
            assert f"{name}: NaN or infinite pixels in {share[name]}" in text, text
        else:
            assert f"{name}: NaN" not in text
    assert "no PSNR, SSIM or temporal error" in text
    assert "dB" not in text and "identical" not in text and "nan" not in text, text
    assert image.shape == (17, 32, 3 * 32 + 16, 3)


def test_the_study_s_figures_claim_nothing_for_a_broken_clip(host, clips):
    """The quality study's figures (fis_core.metrics, as quality/ imports them): a NaN or infinite clip has no
    PSNR (not 100 dB, not a math domain error), and which of its frames are broken is known."""
    from comfyui_fis.fis_core.metrics import nonfinite_frames
    from comfyui_fis.quality import metrics
    reference = as_clip(clips[0])
    for value in (float("nan"), float("inf")):
        broken = as_clip(with_nonfinite(clips[0], range(17), value))
        figures = metrics.fidelity(broken, reference)
        assert math.isnan(figures["psnr"][0]) and math.isnan(figures["psnr_min_frame"][0]), figures
        assert math.isnan(metrics.pooled_psnr(figures["mse"]))
        assert metrics.psnr_per_frame(broken, reference).isnan().all()
    assert math.isnan(metrics.pooled_psnr([float("inf")]))
    half = as_clip(with_nonfinite(clips[0], range(0, 17, 2)))
    assert nonfinite_frames(half).tolist() == [[f % 2 == 0 for f in range(17)]]
    assert not nonfinite_frames(reference).any()
