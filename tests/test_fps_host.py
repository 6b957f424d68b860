"""The FPSAttention node on tiny real Wan and HunyuanVideo 1.5 models in the host: off is bit-identical,
only video self-attention changes, dense_steps, composition with FIS in either order, unsupported models."""
import logging

import pytest
import torch

from limits import refused_at_once
from tiny_models import (fis, hunyuan_text, record_fps_attention, relative_error, sample, text, tiny_hunyuan_video,
                         tiny_mochi, tiny_wan)

FRAMES, SIZE = 5, 16            # latent 5 x 16 x 16: a grid of 5 x 8 x 8 tokens (patch 2x2)


@pytest.fixture(scope="module")
def wan(host):
    return tiny_wan(num_layers=4)


def latent():
    return torch.randn(1, 16, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def fps(model, **widgets):
    from comfyui_fis.nodes import FPSAttention
    defaults = dict(precision="fp8", tile="auto", sparsity=0.5, pattern="window", dense_steps="")
    return FPSAttention().patch(model, **(defaults | widgets))[0]


class Recorder:
    """An attention override that records the shapes it sees and passes everything on (put under FPS)."""

    def __init__(self):
        self.calls = []

    def __deepcopy__(self, memo):   # one recorder through the model's clones (older ComfyUI deep-copies model_options)
        return self

    def __call__(self, func, q, k, v, heads, **kwargs):
        self.calls.append((q.shape[1], k.shape[1]))
        return func(q, k, v, heads, **kwargs)


def with_recorder(model):
    recorder = Recorder()
    recorded = model.clone()
    recorded.model_options["transformer_options"]["optimized_attention_override"] = recorder
    return recorded, recorder


def test_off_is_bit_identical(wan):
    x = latent()
    assert torch.equal(sample(fps(wan, precision="bf16", sparsity=0.0), x, text(), steps=2), sample(wan, x, text(), steps=2))
    assert torch.equal(sample(fps(wan, dense_steps="0-100"), x, text(), steps=2), sample(wan, x, text(), steps=2))


def test_only_video_self_attention_runs_fps(wan):
    recorded, recorder = with_recorder(wan)
    patched = fps(recorded)
    x = latent()
    with record_fps_attention() as fps_calls:
        out = sample(patched, x, text(tokens=8), steps=1)
    tokens = FRAMES * (SIZE // 2) ** 2
    # self-attention went to FPS; text cross-attention (8 keys) went on to the override underneath, once per block
    assert recorder.calls == [(tokens, 8)] * 4
    assert len(fps_calls) == 4
    error = relative_error(out, sample(wan, x, text(tokens=8), steps=1))
    assert 1e-4 < error < 0.5


def test_dense_fps_hands_its_attention_to_a_faster_installed_one(wan, caplog, monkeypatch, request):
    """At sparsity 0 FPS skips nothing: the first installed attention of REGISTERED_ORDER takes the video
    self-attention, said once; where tiles are skipped, or none is installed, FPS's kernel runs. (On the CPU none of
    the measured ones is registered: the host's own 'pytorch' attention stands in for one.)"""
    from comfyui_fis.nodes.patching import dense_attention
    x = latent()
    dense_attention.dense_route.cache_clear()
    with record_fps_attention() as fps_calls:
        sample(fps(wan, sparsity=0.0), x, text(), steps=1)
    assert len(fps_calls) == 4                                       # none installed: FPS's kernel
    monkeypatch.setattr(dense_attention, "REGISTERED_ORDER", ("sage", "pytorch"))
    dense_attention.dense_route.cache_clear()
    request.addfinalizer(dense_attention.dense_route.cache_clear)   # no stand-in route left for the other tests
    with record_fps_attention() as fps_calls, caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        out = sample(fps(wan, sparsity=0.0), x, text(), steps=1)
        sample(fps(wan, sparsity=0.5), x, text(), steps=1)
    assert len(fps_calls) == 4                                       # the sparse run's only
    assert torch.equal(out, sample(wan, x, text(), steps=1))
    assert sum("dense FPS attention runs ComfyUI's 'pytorch' attention" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("skip_reshape", [False, True])
def test_flash_attention_3_takes_comfyui_attention_layouts(host, skip_reshape):
    """FlashAttention-3 runs only on Hopper; its interface's ``flash_attn_func`` ([B, L, H, D] in and out, and the
    log-sum-exp in a tuple) is stood in for by SDPA here, so that the layouts FPS hands it are checked against the
    host's own attention in both of ComfyUI's layouts."""
    import comfy.ldm.modules.attention as host_attention
    from types import SimpleNamespace
    from comfyui_fis.nodes.patching.dense_attention import fa3_attention

    def flash_attn_func(q, k, v, softmax_scale=None):
        out = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), scale=softmax_scale)
        return out.transpose(1, 2), None
    attention = fa3_attention(SimpleNamespace(flash_attn_func=flash_attn_func))
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=generator) for _ in range(3))    # [B, H, L, D]
    if not skip_reshape:
        q, k, v = (x.transpose(1, 2).reshape(2, 40, 48) for x in (q, k, v))
    for skip_output_reshape in (False, True):
        options = dict(skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape)
        expected = host_attention.attention_pytorch(q, k, v, 3, **options)
        assert torch.allclose(attention(q, k, v, 3, **options), expected, atol=1e-5)


def test_dense_steps_follow_the_schedule(wan):
    x = latent()
    patched = fps(wan, dense_steps="30-60")
    with record_fps_attention() as fps_calls:
        sample(patched, x, text(), steps=4)
    import comfy.samplers
    sampling = patched.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 4)[:-1].tolist()
    exact = [sampling.percent_to_sigma(0.6) < s <= sampling.percent_to_sigma(0.3) for s in sigmas]
    assert exact == [False, False, True, False]           # sigmas 1.0, 0.96, 0.89, 0.73 (shift 8)
    assert len(fps_calls) == 4 * 3


def test_composes_with_fis_in_either_order(wan):
    x = latent()
    first, second = fps(fis(wan)), fis(fps(wan))
    out = sample(first, x, text(), steps=1)
    assert torch.equal(out, sample(second, x, text(), steps=1))
    with record_fps_attention() as fps_calls:
        sample(fis(fps(wan)), x, text(), steps=1)
    # FIS's sparse blocks (1, 2) compute 3 and 2 of the 5 frames: the grid FPS attention tiles follows them
    assert fps_calls == [(5, 8, 8), (3, 8, 8), (2, 8, 8), (5, 8, 8)]
    assert relative_error(out, sample(fis(wan), x, text(), steps=1)) < 0.5


def test_a_wan_reference_image_in_front_of_the_frames_is_kept_like_the_first_frame(host, caplog):
    model = tiny_wan(num_layers=4, ref_conv=True)
    positive = text(reference_latents=[torch.randn(1, 16, 1, SIZE, SIZE)])   # 64 tokens in front of the frames
    x = latent()
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        for patched, calls in ((fps(model), 4), (fis(fps(model)), 4)):
            with record_fps_attention() as fps_calls:
                out = sample(patched, x, positive, steps=1)
            assert len(fps_calls) == calls
            assert 1e-4 < relative_error(out, sample(model, x, positive, steps=1)) < 0.5
    assert not any("does not fit" in r.getMessage() for r in caplog.records)


def test_a_run_s_tile_tables_are_released_when_it_ends(wan, monkeypatch):
    """FPS keeps its tile layouts and their tables on the device (by shape) for one sampling run: they are made while
    it runs and gone when it ends."""
    from comfyui_fis.fis_core.fps import SHAPES
    made = []
    get = SHAPES.get
    monkeypatch.setattr(SHAPES, "get", lambda key, make: get(key, lambda: made.append(key) or make()))
    sample(fps(wan), latent(), text(), steps=1)
    assert made and len(SHAPES) == 0


def test_a_second_fps_replaces_the_first_and_bad_widgets_name_themselves(wan):
    twice = fps(fps(wan, sparsity=0.75), sparsity=0.25)
    override = twice.model_options["transformer_options"]["optimized_attention_override"]
    assert override.previous is None and override.settings.sparsity == 0.25
    assert len(twice.wrappers["apply_model"]) == 1
    for widget, value in (("tile", "3x3x3"), ("dense_steps", "50"), ("precision", "int4")):
        with pytest.raises(ValueError, match=widget):
            fps(wan, **{widget: value})


@pytest.mark.parametrize("widgets, message", [
    (dict(dense_steps="0-1," * 64 + "2-3"), "dense_steps: more than 64 ranges"),
    (dict(dense_steps="0-1," * 100_000), "dense_steps: more than 64 ranges"),
    (dict(dense_steps="40-" + "6" * 10_000), "dense_steps: '40-" + "6" * 37 + "...' (10003 characters) is not a range"),
    (dict(tile="1x" * 5_000), "tile: '" + "1x" * 20 + "...' (10000 characters) is not 'auto' or frames x rows x columns"),
    (dict(tile="1x8x" + "9" * 10_000), "tile: '1x8x" + "9" * 36 + "...' (10004 characters) is not 'auto'"),
])
def test_long_values_are_refused_at_once_with_a_short_message(wan, widgets, message):
    error = refused_at_once(lambda: fps(wan, **widgets))
    assert message in error and len(error) < 300, error


def test_unsupported_models_pass_through_with_one_warning(host, caplog):
    model = tiny_mochi()
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        patched = fps(model)
    assert "optimized_attention_override" not in patched.model_options["transformer_options"]
    assert sum("not supported" in r.getMessage() for r in caplog.records) == 1


class JointRecorder:
    """Records (query tokens, key tokens, mask given) of every attention under FPS, and passes it on."""

    def __init__(self):
        self.calls = []

    def __call__(self, func, q, k, v, heads, **kwargs):
        self.calls.append((q.shape[2], k.shape[2], kwargs.get("mask") is not None))
        return func(q, k, v, heads, **kwargs)


@pytest.fixture(scope="module")
def hv15(host):
    return tiny_hunyuan_video("1.5", depth=3)


def hv_latent(frames=5):
    return torch.randn(1, 32, frames, 8, 8, generator=torch.Generator().manual_seed(4))   # 64 tokens a frame


def test_hunyuan_video_joint_attention_runs_fps_with_the_text_kept(hv15):
    """HunyuanVideo 1.5's double blocks attend over text then image tokens: FPS takes those (the text as
    tiles every query keeps), the text-only token refiner passes through, and off is bit-identical."""
    x, cond = hv_latent(), hunyuan_text(tokens=8, byt5_tokens=4)
    dense = sample(hv15, x, cond, steps=1)
    assert torch.equal(sample(fps(hv15, precision="bf16", sparsity=0.0), x, cond, steps=1), dense)
    recorded = hv15.clone()
    recorder = recorded.model_options["transformer_options"]["optimized_attention_override"] = JointRecorder()
    patched = fps(recorded, tile="1x8x8", sparsity=0.5)
    with record_fps_attention() as fps_calls:
        out = sample(patched, x, cond, steps=1)
    joint = 8 + 4 + 5 * 64
    assert len(fps_calls) == 3                                   # the three double blocks
    assert all(q != joint for q, _, _ in recorder.calls)         # none of the joint attention went through
    assert any(q == 8 for q, _, _ in recorder.calls)             # the token refiner (text alone) did
    assert 1e-4 < relative_error(out, dense) < 0.5


def test_hunyuan_video_fps_follows_fis_frames_and_leaves_masked_text_alone(hv15, caplog):
    x = hv_latent()
    cond = hunyuan_text(tokens=8)
    recorded = hv15.clone()
    recorded.model_options["transformer_options"]["optimized_attention_override"] = JointRecorder()
    patched = fis(fps(recorded, tile="1x8x8"), sparse_blocks="1", groups=2)
    with record_fps_attention() as fps_calls:
        sample(patched, x, cond, steps=1)
    assert len(fps_calls) == 3                                   # block 1 saw 3 of the 5 frames, and fit
    masked = hunyuan_text(tokens=8, attention_mask=torch.tensor([[1] * 6 + [0] * 2]))
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        sample(fps(hv15), x, masked, steps=1)
    assert any("text mask" in r.getMessage() for r in caplog.records)
    assert not any("does not fit" in r.getMessage() for r in caplog.records)


def test_the_node_says_which_path_it_uses(wan, caplog):
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        sample(fps(wan), latent(), text(), steps=2)
    lines = [r.getMessage() for r in caplog.records if "FPS attention" in r.getMessage()]
    assert len(lines) == 1 and "PyTorch reference path" in lines[0] and "tile 2x8x8" in lines[0], lines


def test_a_wan_whose_forward_gives_no_grid_runs_fps_on_the_latent_grid(host, caplog):
    """Camera Wan (like HuMo, and every Wan in ComfyUI 0.3.64) gives its attention no ``grid_sizes``: FPS tiles the
    latent's grid, with the frames FIS names in a sparse block, instead of running the original attention."""
    import comfy.ldm.wan.model
    import comfy.ops
    from tiny_models import _load
    camera = comfy.ldm.wan.model.CameraWanModel(model_type="camera_2.2", in_dim=36, dim=128, ffn_dim=256, num_heads=1,
                                                num_layers=4, operations=comfy.ops.disable_weight_init)
    model = _load(camera, 0)
    assert type(model.model.diffusion_model).__name__ == "CameraWanModel"
    x = latent()
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        for patch, grids in ((fps, [(5, 8, 8)] * 4), (lambda m: fis(fps(m)), [(5, 8, 8), (3, 8, 8), (2, 8, 8), (5, 8, 8)])):
            with record_fps_attention() as fps_calls:
                out = sample(patch(model), x, text(), steps=1)
            assert fps_calls == grids
            assert 1e-4 < relative_error(out, sample(model, x, text(), steps=1)) < 0.5
    assert not any("does not fit" in r.getMessage() for r in caplog.records)
