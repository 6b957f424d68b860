"""FIS on real ComfyUI Wan models (tiny, random weights), sampled with ComfyUI's own samplers on the CPU: what is
Wan's own, and what the tiny Wan shows for every family (the contract every family keeps is in
test_family_contract.py)."""
import logging

import pytest
import torch

from limits import refused_at_once
from tiny_models import (TOKENS_PER_FRAME as T, block_output_recorder, fis, record_attention_tokens, relative_error,
                         sample, text, tiny_wan, wan_attention, wan_latent)


@pytest.fixture(scope="module")
def wan(host):
    return tiny_wan(num_layers=6)


# --- what each block computes ------------------------------------------------------------------------

@pytest.mark.parametrize("start, end, expected", [(0.0, 0.4, [5, 4, 9, 9]), (0.45, 1.0, [9, 9, 5, 4])])
def test_start_and_end_percent_limit_fis_to_part_of_the_schedule(wan, start, end, expected):
    # 4 'simple' steps of a shift-8 flow model run at sigma 1.0, 0.96, 0.89, 0.73; percent 0.4 is
    # sigma 0.92 and percent 0.45 sigma 0.91, as ComfyUI's percent_to_sigma converts them. The one sparse
    # block takes the even frames at even steps, the odd ones at odd steps (the groups rotate).
    patched = fis(wan, sparse_blocks="2", start_percent=start, end_percent=end)
    with record_attention_tokens({2: wan.model.diffusion_model.blocks[2].self_attn}) as calls:
        sample(patched, wan_latent(9), text(), steps=4)
    assert [tokens // T for _, tokens, _ in calls] == expected


# --- how skipped frames are restored -----------------------------------------------------------------

def frames_of(tokens, frames):
    return tokens[:, :frames * T].unflatten(1, (frames, T))


@pytest.mark.parametrize("interpolation", ["none", "linear", "nearest"])
def test_skipped_frames_get_the_interpolated_update(wan, interpolation):
    recorded, record = block_output_recorder(fis(wan, sparse_blocks="3", groups=2, interpolation=interpolation))
    sample(recorded, wan_latent(9), text(), steps=1)
    x_in, x_out = frames_of(record[0][2], 9), frames_of(record[0][3], 9)   # block 3 computes group 0
    update = x_out - x_in
    computed_update = update[:, 0::2]
    skipped_update = update[:, 1::2]
    assert computed_update.abs().amax() > 0
    if interpolation == "none":
        assert torch.equal(x_out[:, 1::2], x_in[:, 1::2])
    elif interpolation == "linear":
        torch.testing.assert_close(skipped_update, (computed_update[:, :-1] + computed_update[:, 1:]) / 2)
    else:
        torch.testing.assert_close(skipped_update, computed_update[:, :-1])


def test_computed_frames_match_a_dense_block_on_the_same_frames(wan):
    """A sparse block is the original block run on the chosen frames, with their RoPE rows."""
    from comfyui_fis.nodes.families import FrameGrid
    from comfyui_fis.nodes.patcher import FisCall, FisRuntime, FisSettings
    from comfyui_fis.fis_core import FisSchedule
    import comfy.ldm.wan.model
    model = wan.model.diffusion_model
    block = model.blocks[1]
    x = torch.randn(1, 9 * T, 128)
    context = model.text_embedding(text()[0][0])
    e0 = torch.randn(1, 1, 6, 128)
    freqs = model.rope_encode(9, 8, 8, device=x.device, dtype=x.dtype)
    options = {"grid_sizes": torch.Size((9, 4, 4))}
    runtime = FisRuntime(comfy_family(), FisSettings((1,), 2), 6)
    computed = (0, 2, 4, 6, 8)
    call = FisCall(runtime, FisSchedule((1,), 2), FrameGrid(9, 4, 4), {computed: runtime.plan(9, computed, "cpu")})

    def original(args):
        return {"img": block(args["img"], e=args["vec"], freqs=args["pe"], context=args["txt"], transformer_options=args["transformer_options"])}

    out = call.run_block(1, ("double_block", 1), {"img": x, "txt": context, "vec": e0, "pe": freqs, "transformer_options": options}, original)["img"]
    kept = torch.arange(9 * T).view(9, T)[0::2].flatten()
    alone = block(x[:, kept], e=e0, freqs=freqs[:, kept], context=context)
    torch.testing.assert_close(out[:, kept], alone)
    assert isinstance(model, comfy.ldm.wan.model.WanModel)


def comfy_family():
    from comfyui_fis.nodes.families import WanFamily
    return WanFamily()


# --- deviation from dense is bounded -----------------------------------------------------------------

def test_deviation_from_dense_is_bounded_and_grows_with_groups(wan):
    x = wan_latent(9)
    dense = sample(wan, x, text())
    errors = {g: relative_error(sample(fis(wan, groups=g), x, text()), dense) for g in (2, 3)}
    assert 0 < errors[2] < 0.1 and 0 < errors[3] < 0.1
    assert errors[2] < errors[3]


# --- models and inputs -------------------------------------------------------------------------------

def test_batch_entries_do_not_mix(wan):
    """FIS computes the same frames for every sample in the batch: each one comes out as if sampled alone."""
    patched = fis(wan)
    x = wan_latent(9, batch=2)
    both = sample(patched, x, text(), steps=2)
    alone = sample(patched, x[:1], text(), steps=2)
    torch.testing.assert_close(both[:1], alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frames", [7, 2, 1])
def test_odd_and_short_frame_counts(wan, frames, caplog):
    x = wan_latent(frames)
    with caplog.at_level(logging.WARNING), record_attention_tokens(wan_attention(wan)) as calls:
        out = sample(fis(wan, groups=3), x, text(), steps=1)
    assert torch.isfinite(out).all()
    tokens = [t for _, t, _ in calls]
    if frames == 7:
        assert tokens == [7 * T, 3 * T, 2 * T, 2 * T, 3 * T, 7 * T]
    elif frames == 2:   # fewer frames than groups: groups drop to 2, with a warning
        assert tokens == [2 * T, T, T, T, T, 2 * T]
        assert "fewer than groups=3" in caplog.text
    else:               # a single frame: nothing to interleave
        assert tokens == [T] * 6


def test_a_single_frame_runs_dense_and_the_log_says_why(wan, caplog):
    x = wan_latent(1)
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        out = sample(fis(wan), x, text(), steps=2)
    assert torch.equal(out, sample(wan, x, text(), steps=2))
    assert "1 latent frame cannot be split into groups; the model runs dense" in caplog.text
    assert "never called its block replacements" not in caplog.text


def test_anchors_covering_every_frame_run_dense_and_the_log_says_why(wan, caplog):
    x = wan_latent(2)
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        out = sample(fis(wan, anchor_frames="0,-1"), x, text(), steps=1)
    assert torch.equal(out, sample(wan, x, text(), steps=1))
    assert "anchor_frames: the anchors [-1, 0] cover all 2 latent frames (set in anchor_frames)" in caplog.text
    assert "called its sparse blocks, but each ran on all the latent frames" in caplog.text
    assert "never called its block replacements" not in caplog.text


def test_a_conditioning_that_gives_every_frame_runs_dense_and_the_log_says_why(host, caplog):
    """An image-to-video mask that gives every frame (a video to keep) leaves nothing to skip; the warning names
    ``auto`` and the way out."""
    model = tiny_wan(in_dim=36, num_layers=4)
    positive = text(concat_latent_image=torch.randn(1, 16, 3, 8, 8), concat_mask=torch.zeros(1, 1, 3, 8, 8))
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        out = sample(fis(model), wan_latent(3), positive, steps=1)
    assert torch.equal(out, sample(model, wan_latent(3), positive, steps=1))
    assert ("the anchors [0, 1, 2] cover all 3 latent frames ('auto': the frames the conditioning gives whole; set "
            "anchor_frames empty") in caplog.text


def test_image_to_video_keeps_the_first_frame_in_every_sparse_block(host):
    model = tiny_wan(in_dim=36, num_layers=4)
    x = wan_latent(9)
    image = torch.randn(1, 16, 9, 8, 8)
    mask = torch.ones(1, 1, 9, 8, 8)
    mask[:, :, 0] = 0.0   # ComfyUI's WanImageToVideo: 0 where a frame is given
    positive = text(concat_latent_image=image, concat_mask=mask)
    with record_attention_tokens(wan_attention(model)) as calls:
        out = sample(fis(model), x, positive, steps=2)
    assert torch.isfinite(out).all()
    subsets = [s for _, _, s in calls if s is not None]
    assert subsets == [(0, 2, 4, 6, 8), (0, 1, 3, 5, 7), (0, 1, 3, 5, 7), (0, 2, 4, 6, 8)]   # step 2 rotated
    with record_attention_tokens(wan_attention(model)) as calls:
        sample(fis(model, anchor_frames=""), x, positive, steps=1)
    assert [s for _, _, s in calls if s is not None] == [(0, 2, 4, 6, 8), (1, 3, 5, 7)]


def test_ti2v_5b_per_frame_timesteps_with_a_kept_first_frame(host):
    model = tiny_wan(in_dim=48, out_dim=48, num_layers=4)
    assert type(model.model).__name__ == "WAN22"
    x = wan_latent(9, channels=48)
    noise_mask = torch.ones(1, 1, 9, 8, 8)
    noise_mask[:, :, 0] = 0.0   # Wan22ImageToVideoLatent keeps the first frame
    vec_rows = []
    block = model.model.diffusion_model.blocks[1]
    handle = block.register_forward_pre_hook(lambda m, a, k: vec_rows.append(k["e"].shape[1]), with_kwargs=True)
    try:
        with record_attention_tokens(wan_attention(model)) as calls:
            out = sample(fis(model), x, text(), steps=2, noise_mask=noise_mask)
    finally:
        handle.remove()
    assert vec_rows == [5, 5]   # per-frame modulation cut to the 5 computed frames
    assert [s for _, _, s in calls if s is not None] == [(0, 2, 4, 6, 8), (0, 1, 3, 5, 7), (0, 1, 3, 5, 7), (0, 2, 4, 6, 8)]
    dense = sample(model, x, text(), steps=2, noise_mask=noise_mask)
    assert torch.equal(out[:, :, 0], dense[:, :, 0])   # the kept frame stays the given one
    assert relative_error(out, dense) < 0.1


def test_reference_image_tokens_stay_dense(host):
    model = tiny_wan(num_layers=4, ref_conv=True)
    reference = torch.randn(1, 16, 1, 8, 8)
    positive = text(reference_latents=[reference])
    x = wan_latent(9)
    with record_attention_tokens(wan_attention(model)) as calls:
        out = sample(fis(model), x, positive, steps=1)
    assert torch.isfinite(out).all()
    assert [t for _, t, _ in calls] == [T + 9 * T, T + 5 * T, T + 4 * T, T + 9 * T]
    assert relative_error(out, sample(model, x, positive, steps=1)) < 0.1


# --- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("widgets, message", [
    (dict(sparse_blocks="40-10"), "sparse_blocks: range '40-10' runs backwards"),
    (dict(sparse_blocks="a-b"), "sparse_blocks: 'a' is not a number"),
    (dict(sparse_blocks="2-6"), "sparse_blocks: block 6 does not exist; this model has blocks 0-5"),
    (dict(groups=0), "groups: must be at least 1"),
    (dict(anchor_frames="first"), "anchor_frames: 'first' is not a number"),
    (dict(start_percent=0.8, end_percent=0.2), "start_percent/end_percent"),
])
def test_bad_widget_values_fail_with_a_message_naming_the_widget(wan, widgets, message):
    with pytest.raises(ValueError) as error:
        fis(wan, **widgets)
    assert message in str(error.value)


@pytest.mark.parametrize("widgets, message", [
    (dict(sparse_blocks="0-99999999999"), "sparse_blocks: block 99999999999 does not exist; this model has blocks 0-5"),
    (dict(sparse_blocks="1,3-4,2-99999999999,9"), "sparse_blocks: block 99999999999 does not exist"),
    (dict(sparse_blocks="9" * 16), "sparse_blocks: '9999999999999999' is too large a number"),
    (dict(sparse_blocks="1" * 10_000), "sparse_blocks: '" + "1" * 40 + "...' (10000 characters) is too large a number"),
    (dict(sparse_blocks="1-" + "x" * 10_000), "sparse_blocks: '" + "x" * 40 + "...' (10000 characters) is not a number"),
    (dict(anchor_frames="99999999999"), "anchor_frames: frame 99999999999 is out of range; frames go from -4096 to 4095"),
    (dict(anchor_frames="0," + "x" * 10_000), "anchor_frames: '" + "x" * 40 + "...' (10000 characters) is not a number"),
])
def test_huge_and_long_values_are_refused_at_once_with_a_short_message(wan, widgets, message):
    error = refused_at_once(lambda: fis(wan, **widgets))
    assert message in error and len(error) < 300, error


# --- quality presets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("quality, blocks, ends", [("balanced", (1, 2, 3, 4), (False, False)),
                                                   ("faithful", (0, 1, 2, 3, 4, 5), (True, True)),
                                                   ("fastest", (0, 1, 2, 3, 4, 5), (False, False))])
def test_a_quality_preset_sets_its_widgets_and_leaves_the_others(wan, quality, blocks, ends):
    from comfyui_fis.nodes.fis_node import settings_from_widgets
    settings = settings_from_widgets(wan, "0", 5, "contiguous", "none", "0", 0.5, 0.6, quality)
    assert (settings.sparse_blocks, settings.groups, settings.interpolation) == (blocks, 2, "corrected")
    assert (settings.start_percent, settings.end_percent) == (0.0, 1.0)
    assert (settings.dense_first_step, settings.dense_final_step) == ends
    assert (settings.pattern, settings.anchors) == ("contiguous", (0,))     # not a preset's: the widgets'


def test_a_prompt_value_a_preset_replaces_is_said_in_one_log_line(wan, caplog):
    """A prompt in API format (a script, another front end) with quality 'balanced' and groups 1 runs G=2, and with
    sparse_blocks '40-10' runs auto: one warning names each replaced widget, its value and the one used. The widgets'
    defaults (which every prompt carries) and custom say nothing."""
    from comfyui_fis.nodes.fis_node import settings_from_widgets
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        settings = settings_from_widgets(wan, "40-10", 1, "interleave", "corrected", "auto", 0.0, 1.0, "balanced")
    assert settings.groups == 2 and settings.sparse_blocks == (1, 2, 3, 4)
    assert [r.getMessage() for r in caplog.records] == [
        "FIS: quality 'balanced' replaces sparse_blocks '40-10' with 'auto', groups 1 with 2; set quality to 'custom' "
        "to use the prompt's values"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        settings_from_widgets(wan, " AUTO ", 2, "contiguous", "corrected", "0", 0.0, 1.0, "balanced")
        settings_from_widgets(wan, "auto", 2, "interleave", "corrected", "auto", 0.0, 1.0, "faithful")
        settings_from_widgets(wan, "1-3", 3, "interleave", "linear", "auto", 0.2, 0.9, "custom")
        settings_from_widgets(wan, "all", 2, "interleave", "corrected", "auto", 0.0, 1.0, "fastest")
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        settings_from_widgets(wan, "auto", 2, "interleave", "linear", "auto", 0.0, 0.5, "fastest")
    assert [r.getMessage() for r in caplog.records] == [
        "FIS: quality 'fastest' replaces interpolation 'linear' with 'corrected', end_percent 0.5 with 1.0; set "
        "quality to 'custom' to use the prompt's values"]

def test_custom_uses_the_widgets_and_a_bad_preset_names_the_widget(wan):
    from comfyui_fis.nodes.fis_node import settings_from_widgets
    settings = settings_from_widgets(wan, "all", 3, "interleave", "linear", "auto", 0.0, 1.0, "custom")
    assert (settings.sparse_blocks, settings.groups, settings.interpolation) == ((0, 1, 2, 3, 4, 5), 3, "linear")
    with pytest.raises(ValueError, match="quality: 'best' is unknown; choose one of balanced, faithful, fastest, custom"):
        settings_from_widgets(wan, "auto", 2, "interleave", "corrected", "auto", 0.0, 1.0, "best")


def test_faithful_runs_the_first_and_final_steps_dense_and_an_expert_run_sparse_where_it_has_neither(wan):
    """The first step starts from pure noise, the final one lands on sigma 0. The two experts of Wan 2.2 A14B
    split the schedule: the high-noise one starts from noise and stops early, the low-noise one starts later."""
    import comfy.sample
    attention = {1: wan.model.diffusion_model.blocks[1].self_attn}
    with record_attention_tokens(attention) as calls:
        sample(fis(wan, quality="faithful"), wan_latent(9), text(), steps=4)
    assert [tokens // T for _, tokens, _ in calls] == [9, 5, 4, 9]
    x = wan_latent(9)
    for start, end, frames in [(0, 2, [9, 5]), (2, 4, [4, 9])]:
        with record_attention_tokens(attention) as calls:
            comfy.sample.sample(fis(wan, quality="faithful"), torch.randn_like(x), 4, 1.0, "euler", "simple", text(),
                                text(), x, start_step=start, last_step=end, force_full_denoise=end == 4)
        assert [tokens // T for _, tokens, _ in calls] == frames, (start, end)


def test_a_second_sampling_run_starts_its_fit_sums_afresh(wan):
    """The corrected interpolation carries each block's fit sums over the steps of one run only: the same run
    twice gives the same video."""
    patched, x = fis(wan), wan_latent(9)
    first = sample(patched, x, text(), steps=3)
    assert torch.equal(sample(patched, x, text(), steps=3), first)


def test_the_correction_form_reaches_the_fit(wan):
    """``FisSettings.correction`` (the study's knob, no widget) is how each sparse block fits its maps: 64-channel
    maps on this 128-channel model give another video than the shipped form, which the node's defaults use."""
    from dataclasses import replace

    from comfyui_fis.fis_core import CorrectionForm
    from comfyui_fis.nodes.fis_node import settings_from_widgets
    from comfyui_fis.nodes.patcher import apply_fis
    defaults = settings_from_widgets(wan, "auto", 2, "interleave", "corrected", "auto", 0.0, 1.0, "balanced")
    assert defaults.correction == CorrectionForm()
    x = wan_latent(9)
    shipped = sample(fis(wan), x, text(), steps=2)
    assert torch.equal(sample(apply_fis(wan, defaults), x, text(), steps=2), shipped)
    smaller = sample(apply_fis(wan, replace(defaults, correction=CorrectionForm(map_channels=64))), x, text(), steps=2)
    assert torch.isfinite(smaller).all() and not torch.equal(smaller, shipped)
    assert relative_error(smaller, shipped) < 0.05


def test_the_compile_signature_holds_the_correction_form_in_plain_values(wan):
    """A compiled model guards its inputs, the signature among them: another form of the corrected interpolation is
    another graph; with the linear one the form does not matter. Plain values only (a guard reads them as constants)."""
    from dataclasses import replace

    from comfyui_fis.fis_core import CorrectionForm
    from comfyui_fis.nodes.families import FrameGrid
    from comfyui_fis.nodes.patcher import FisCall, FisRuntime, FisSettings, model_block_keys
    family, keys = model_block_keys(wan)

    def signature(**settings):
        runtime = FisRuntime(family, FisSettings((1, 2, 3), 2, **settings), len(keys))
        return FisCall(runtime, runtime.schedule, FrameGrid(9, 4, 4), {}, step=1).signature

    smaller = CorrectionForm(map_channels=64)
    assert signature() != signature(correction=smaller)
    assert signature(interpolation="linear") == signature(interpolation="linear", correction=smaller)

    def plain(value):
        return isinstance(value, (int, float, str)) or isinstance(value, tuple) and all(plain(v) for v in value)
    assert plain(signature(correction=replace(smaller, fit_dtype=torch.bfloat16)))


@pytest.mark.parametrize("reference", [False, True])
def test_vace_runs_its_hint_blocks_on_every_frame_after_the_sparse_blocks(host, reference):
    """Wan VACE adds its hint blocks' output (computed from the control video over every frame) after main blocks; FIS
    makes the main blocks sparse and leaves the hint blocks alone: both run, and the video stays near dense. A
    reference image (WanVaceToVideo puts it in front of the video, its mask 0 over the whole frame) is anchored, so
    every sparse block keeps it; a frame masked 0 in part only (an inpainted one) is not."""
    import comfy.ldm.wan.model
    import comfy.ops
    from tiny_models import _load
    module = comfy.ldm.wan.model.VaceWanModel(dim=128, ffn_dim=256, num_heads=1, num_layers=4, vace_layers=2,
                                              vace_in_dim=96, operations=comfy.ops.disable_weight_init)
    model = _load(module, 0)
    assert type(model.model.diffusion_model).__name__ == "VaceWanModel"
    diffusion_model, x = model.model.diffusion_model, wan_latent(9)
    positive = text()
    if reference:   # as WanVaceToVideo gives them: frame 0 the reference image; frame 5 kept on its left half
        mask = torch.ones(1, 64, 9, 8, 8)
        mask[:, :, 0] = 0.0
        mask[:, :, 5, :, :4] = 0.0
        positive = text(vace_frames=[torch.randn(1, 32, 9, 8, 8)], vace_mask=[mask], vace_strength=[1.0])
    attention = {i: diffusion_model.blocks[i].self_attn for i in (1, 2)}
    attention[10] = diffusion_model.vace_blocks[0].self_attn
    with record_attention_tokens(attention) as calls:
        out = sample(fis(model), x, positive, steps=1)
    assert [(block, tokens // T) for block, tokens, _ in calls] == [(10, 9), (1, 5), (2, 4 + reference)]
    assert calls[2][2] == ((0, 1, 3, 5, 7) if reference else (1, 3, 5, 7))
    assert 0 < relative_error(out, sample(model, x, positive, steps=1)) < 0.5


@pytest.mark.parametrize("motion", [False, True])
def test_s2v_with_its_reference_image_and_motion_frames_runs_sparse(host, caplog, motion):
    """Wan S2V appends its reference image's tokens (and a continuation's motion frames) after the frames, and
    modulates rows of consecutive tokens: a frame each, the reference counted as one more (with motion frames: half
    a frame each). A sparse block takes the rows of the tokens it keeps (every block computes the appended ones),
    and the video stays near dense."""
    import comfy.ldm.wan.model
    import comfy.ops
    from tiny_models import _load
    module = comfy.ldm.wan.model.WanModel_S2V(dim=128, ffn_dim=256, num_heads=1, num_layers=4,
                                              operations=comfy.ops.disable_weight_init)
    model = _load(module, 0)
    assert type(model.model.diffusion_model).__name__ == "WanModel_S2V"
    extra = {"reference_motion": torch.randn(1, 16, 19, 8, 8)} if motion else {}   # packed into 24 more tokens
    x, positive = wan_latent(9), text(reference_latents=[torch.randn(1, 16, 1, 8, 8)], **extra)
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        with record_attention_tokens({1: model.model.diffusion_model.blocks[1].self_attn}) as calls:
            out = sample(fis(model), x, positive, steps=1)
    if "gets no transformer_options from this ComfyUI" in caplog.text:
        pytest.skip("this ComfyUI's S2V gives its blocks no transformer_options: FIS runs it dense, with one warning")
    assert [(tokens, frames) for _, tokens, frames in calls] == [(5 * T + T + 24 * motion, (0, 2, 4, 6, 8))]
    assert "FIS" not in caplog.text                                   # no block ran dense
    assert 0 < relative_error(out, sample(model, x, positive, steps=1)) < 0.5


def test_scail_keeps_its_reference_frame_in_every_sparse_block(host, caplog):
    """SCAIL puts its reference image in front of the video as a latent frame and its pose video (at half size) after
    it as tokens: FIS anchors the reference frame (every frame looks at it for the subject's identity; before, half
    the sparse blocks skipped it) and every block keeps the pose tokens; the video stays near dense."""
    import comfy.ldm.wan.model
    import comfy.ops
    from tiny_models import _load
    if not hasattr(comfy.ldm.wan.model, "SCAILWanModel"):
        pytest.skip("this ComfyUI has no SCAIL")
    module = comfy.ldm.wan.model.SCAILWanModel(dim=128, ffn_dim=256, num_heads=1, num_layers=4, in_dim=20,
                                               operations=comfy.ops.disable_weight_init)
    model = _load(module, 0)
    x = wan_latent(9)
    positive = text(reference_latents=[torch.randn(1, 16, 1, 8, 8)], pose_video_latent=torch.randn(1, 16, 9, 4, 4))
    blocks = model.model.diffusion_model.blocks
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        with record_attention_tokens({b: blocks[b].self_attn for b in (1, 2)}) as calls:
            out = sample(fis(model), x, positive, steps=1)
    pose = 9 * 4                                     # a 4x4-token pose frame per video frame, kept by every block
    assert [(tokens, frames) for _, tokens, frames in calls] == [(5 * T + pose, (0, 2, 4, 6, 8)),
                                                                 (6 * T + pose, (0, 1, 3, 5, 7, 9))]
    assert "anchors [0], 10 latent frames" in caplog.text
    assert 0 < relative_error(out, sample(model, x, positive, steps=1)) < 0.5


def test_phantom_keeps_its_subject_images_in_every_sparse_block(host, caplog):
    """Phantom (WanPhantomSubjectToVideo) appends its subject images to the video as latent frames
    (``time_dim_concat``): FIS anchors them, so every sparse block keeps the subject; the video stays near dense."""
    model, x = tiny_wan(num_layers=4), wan_latent(9)
    positive = text(time_dim_concat=torch.randn(1, 16, 2, 8, 8))      # two subject images
    blocks = model.model.diffusion_model.blocks
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        with record_attention_tokens({b: blocks[b].self_attn for b in (1, 2)}) as calls:
            out = sample(fis(model), x, positive, steps=1)
    assert [frames for _, _, frames in calls] == [(0, 2, 4, 6, 8, 9, 10), (1, 3, 5, 7, 9, 10)]
    assert "anchors [9, 10], 11 latent frames" in caplog.text
    assert 0 < relative_error(out, sample(model, x, positive, steps=1)) < 0.5


@pytest.mark.parametrize("latent, in_dim, control, mask_index, image", [
    (16, 36, False, 0, "start"),       # I2V, FLF2V, Fun InP, Camera 2.2: [mask, image]
    (16, 32, False, None, "start"),    # Camera 2.1: [image]
    (16, 32, False, None, "video"),    # the same with an image in every frame (a video to follow): no frame given
    (16, 48, True, None, "start"),     # Fun Control 2.1: [control, image]
    (16, 48, True, None, None),        # the same with a control video alone: no frame given
    (16, 52, True, 16, "start"),       # Wan 2.2 Fun Control: [control, mask, image]
    (48, 100, False, 0, "start"),      # Wan 2.2 5B Fun InP: [mask, image] of 48-channel latents
    (48, 148, True, 48, "start"),      # Wan 2.2 5B Fun Control: [control, mask, image]
])
def test_the_frames_a_concatenated_image_gives_are_anchored_whatever_the_layout(host, caplog, latent, in_dim, control,
                                                                                   mask_index, image):
    """Wan models take their conditioning latents by concatenation in several layouts (built here as ComfyUI's
    nodes build them): ``auto`` anchors the frames a start image gives, and only those. Before, FIS read the first 4
    channels as the mask in every layout, so a Fun Control video anchored every frame and ran dense (the start image
    here is faint, so that reading image channels as a mask finds no frame either)."""
    import comfy.latent_formats
    model = tiny_wan(in_dim=in_dim, out_dim=latent, num_layers=4)
    form = comfy.latent_formats.Wan21() if latent == 16 else comfy.latent_formats.Wan22()
    zero = form.process_out(torch.zeros(1, latent, 9, 8, 8))              # a latent that reads as 0 in the model
    generator = torch.Generator().manual_seed(4)
    latents = [form.process_out(torch.randn(1, latent, 9, 8, 8, generator=generator))] if control else []
    given = zero.clone()
    if image is not None:
        frames = slice(0, 1) if image == "start" else slice(None)
        given[:, :, frames] = form.process_out(0.1 * torch.randn(1, latent, 9, 8, 8, generator=generator))[:, :, frames]
    conditioning = {"concat_latent_image": torch.cat(latents + [given], dim=1)}
    if mask_index is not None:
        mask = torch.ones(1, 1, 9, 8, 8)
        mask[:, :, 0] = 0.0                                                # 0 where a frame is given
        conditioning.update(concat_mask=mask, concat_mask_index=mask_index)
    x = torch.randn(1, latent, 9, 8, 8, generator=generator)
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        with record_attention_tokens(wan_attention(model)) as calls:
            sample(fis(model), x, text(**conditioning), steps=1)
    start = image == "start"
    assert f"anchors {[0] if start else 'none'}, 9 latent frames" in caplog.text
    assert [frames for _, _, frames in calls if frames is not None] == [
        (0, 2, 4, 6, 8), (0, 1, 3, 5, 7) if start else (1, 3, 5, 7)]


def test_humo_runs_dense_with_one_warning(host, caplog):
    """HuMo's blocks pair each frame's tokens with that frame's audio, which they get outside their arguments, so a
    block on a frame subset cannot run (its audio cross-attention fails): FIS leaves HuMo dense and says so once."""
    import comfy.ldm.wan.model
    import comfy.ops
    from tiny_models import _load
    module = comfy.ldm.wan.model.HumoWanModel(dim=128, ffn_dim=256, num_heads=1, num_layers=4,
                                              operations=comfy.ops.disable_weight_init)
    model = _load(module, 0)
    x, positive = wan_latent(9), text(audio_embed=torch.randn(1, 9, 8, 5, 1280))
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        patched = fis(model)
    assert torch.equal(sample(patched, x, positive, steps=1), sample(model, x, positive, steps=1))
    assert caplog.text.count("HumoWanModel is not a supported model") == 1


@pytest.mark.parametrize("speakers", [1, 2])
def test_infinitetalk_audio_follows_the_frames_of_a_sparse_block(host, speakers):
    """InfiniteTalk/MultiTalk (a model patch over Wan I2V) puts its audio per latent frame in transformer_options and
    pairs it with the frames of the host's grid in every block's audio cross-attention: a sparse block gets the
    computed frames' audio (it failed with a RuntimeError before), and the video stays near dense. With two
    speakers, a self-attention patch maps each token to its speaker (masks of one frame's tokens) from the block's
    queries and the keys of its first frame: a sparse block's first computed frame (in image-to-video frame 0, the
    anchor every block computes), which the cut grid makes consistent."""
    import comfy.model_patcher
    import comfy.ops
    try:
        from comfy.ldm.wan.model_multitalk import MultiTalkCrossAttnPatch, MultiTalkGetAttnMapPatch
        from comfy_extras.nodes_model_patch import MultiTalkModelPatch
    except ImportError:
        pytest.skip("this ComfyUI has no InfiniteTalk/MultiTalk")
    wan = tiny_wan(dim=640, num_layers=4)            # the audio attention has 40 heads: a width divisible by 40
    module = MultiTalkModelPatch(in_dim=640, out_dim=64, intermediate_dim=32, num_layers=4,
                                 operations=comfy.ops.disable_weight_init)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    talking = wan.clone()
    # 32 audio tokens per frame and speaker, the speakers' side by side (as ComfyUI's project_audio_features gives them)
    talking.model_options["transformer_options"]["audio_embeds"] = torch.randn(1, 9, 32 * speakers, 64, generator=generator)
    patch = comfy.model_patcher.ModelPatcher(module, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    talking.set_model_patch(MultiTalkCrossAttnPatch(patch, 1.0), "attn2_patch")
    speaker_maps = []                                    # the tokens of each block's speaker map

    class RecordedSpeakerMaps(MultiTalkGetAttnMapPatch):
        def __call__(self, kwargs):
            out = super().__call__(kwargs)
            speaker_maps.append(tuple(kwargs["transformer_options"]["x_ref_attn_map"].shape))
            return out

    if speakers == 2:                                    # speaker 1 on the left half of a frame, speaker 2 on the right
        left = torch.zeros(4, 4, dtype=torch.bool)
        left[:, :2] = True
        talking.set_model_patch(RecordedSpeakerMaps(torch.stack([left, ~left]).view(2, T)), "attn1_patch")
    x = wan_latent(9)
    dense = sample(talking, x, text(), steps=1)
    assert relative_error(dense, sample(wan, x, text(), steps=1)) > 1e-3            # the audio does something
    speaker_maps.clear()
    with record_attention_tokens({1: talking.model.diffusion_model.blocks[1].self_attn}) as calls:
        out = sample(fis(talking), x, text(), steps=1)
    assert [tokens // T for _, tokens, _ in calls] == [5]
    if speakers == 2:   # blocks 0 and 3 dense, 1 and 2 sparse (5 and 4 of the 9 frames)
        assert speaker_maps == [(2, 9 * T), (2, 5 * T), (2, 4 * T), (2, 9 * T)]
    assert 0 < relative_error(out, dense) < 0.5


def test_infinitetalk_motion_frames_are_anchored(host, caplog):
    """InfiniteTalk writes its motion frames (when it extends a video, the last frames of the clip before) into the
    first latent frames at every model call, through an apply-model wrapper its outer-sample wrapper installs: they
    are given frames, so ``auto`` anchors them and every sparse block keeps them."""
    import comfy.patcher_extension
    try:
        from comfy.ldm.wan.model_multitalk import InfiniteTalkOuterSampleWrapper
    except ImportError:
        pytest.skip("this ComfyUI has no InfiniteTalk")
    wan = tiny_wan(num_layers=4).clone()
    motion = torch.randn(1, 16, 3, 8, 8)                  # the previous clip's last 9 video frames: 3 latent frames
    wan.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, "infinite_talk_outer_sample",
                             InfiniteTalkOuterSampleWrapper(motion, None))
    blocks = wan.model.diffusion_model.blocks
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        with record_attention_tokens({b: blocks[b].self_attn for b in (1, 2)}) as calls:
            sample(fis(wan), wan_latent(9), text(), steps=1)
    assert "anchors [0, 1, 2], 9 latent frames" in caplog.text
    assert [frames for _, _, frames in calls] == [(0, 1, 2, 4, 6, 8), (0, 1, 2, 3, 5, 7)]


def test_animate_2_is_not_taken(host):
    """Wan Animate 2's blocks pair each frame with its pose frame through the whole video's frame count, passed outside
    their arguments: FIS does not take the model (it runs dense, with the unsupported-model warning)."""
    try:
        from comfy.ldm.wan.model_animate2 import WanAnimate2Model
    except ImportError:
        pytest.skip("this ComfyUI has no Wan Animate 2")
    import comfy.ops
    from comfyui_fis.nodes.families import find_family
    model = WanAnimate2Model(dim=128, ffn_dim=256, num_heads=1, num_layers=2, operations=comfy.ops.disable_weight_init)
    assert find_family(model) is None
    assert find_family(tiny_wan(num_layers=2).model.diffusion_model).name == "wan"


def test_animate_runs_sparse(host):
    """Wan Animate adds its pose to the patch embedding and its face adapter to the whole sequence after every fifth
    block, outside the blocks FIS replaces: its blocks run sparse like Wan I2V's (here without pose or face inputs)."""
    import comfy.ldm.wan.model_animate
    import comfy.ops
    from tiny_models import _load
    model = _load(comfy.ldm.wan.model_animate.AnimateWanModel(dim=128, ffn_dim=256, num_heads=1, num_layers=10, in_dim=36,
                                                              operations=comfy.ops.disable_weight_init), 0)
    x = wan_latent(9)
    with record_attention_tokens({1: model.model.diffusion_model.blocks[1].self_attn}) as calls:
        out = sample(fis(model), x, text(), steps=1)
    assert [(tokens // T, frames) for _, tokens, frames in calls] == [(5, (0, 2, 4, 6, 8))]
    assert 0 < relative_error(out, sample(model, x, text(), steps=1)) < 0.5
