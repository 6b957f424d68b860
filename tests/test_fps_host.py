"""The FPSAttention node on a tiny real Wan model in the host: off is bit-identical, only video
self-attention changes, dense_steps, composition with FIS in either order, unsupported models."""
import logging

import pytest
import torch

from tiny_models import fis, relative_error, sample, text, tiny_hunyuan_video, tiny_wan

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

    def __call__(self, func, q, k, v, heads, **kwargs):
        self.calls.append((q.shape[1], k.shape[1], tuple(kwargs["transformer_options"].get("grid_sizes", ()))))
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
    out = sample(patched, x, text(tokens=8), steps=1)
    tokens = FRAMES * (SIZE // 2) ** 2
    # self-attention went to FPS; text cross-attention (8 keys) went on to the override underneath, once per block
    assert recorder.calls == [(tokens, 8, (FRAMES, 8, 8))] * 4
    override = patched.model_options["transformer_options"]["optimized_attention_override"]
    assert override.calls == 4
    error = relative_error(out, sample(wan, x, text(tokens=8), steps=1))
    assert 1e-4 < error < 0.5


def test_dense_steps_follow_the_schedule(wan):
    x = latent()
    patched = fps(wan, dense_steps="30-60")
    sample(patched, x, text(), steps=4)
    import comfy.samplers
    sampling = patched.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 4)[:-1].tolist()
    exact = [sampling.percent_to_sigma(0.6) < s <= sampling.percent_to_sigma(0.3) for s in sigmas]
    assert exact == [False, False, True, False]           # sigmas 1.0, 0.96, 0.89, 0.73 (shift 8)
    override = patched.model_options["transformer_options"]["optimized_attention_override"]
    assert override.calls == 4 * 3


def test_composes_with_fis_in_either_order(wan):
    x = latent()
    first, second = fps(fis(wan)), fis(fps(wan))
    out = sample(first, x, text(), steps=1)
    assert torch.equal(out, sample(second, x, text(), steps=1))
    recorded, recorder = with_recorder(wan)
    sample(fis(fps(recorded)), x, text(), steps=1)
    # FIS's sparse blocks (1, 2) compute 3 and 2 of the 5 frames: the grid the attention sees follows them
    assert [grid for _, keys, grid in recorder.calls] == [(5, 8, 8), (3, 8, 8), (2, 8, 8), (5, 8, 8)]
    assert relative_error(out, sample(fis(wan), x, text(), steps=1)) < 0.5


def test_a_second_fps_replaces_the_first_and_bad_widgets_name_themselves(wan):
    twice = fps(fps(wan, sparsity=0.75), sparsity=0.25)
    override = twice.model_options["transformer_options"]["optimized_attention_override"]
    assert override.previous is None and override.settings.sparsity == 0.25
    assert len(twice.wrappers["apply_model"]) == 1
    for widget, value in (("tile", "3x3x3"), ("dense_steps", "50"), ("precision", "int4")):
        with pytest.raises(ValueError, match=widget):
            fps(wan, **{widget: value})


def test_unsupported_models_pass_through_with_one_warning(host, caplog):
    model = tiny_hunyuan_video("1.5")
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        patched = fps(model)
    assert "optimized_attention_override" not in patched.model_options["transformer_options"]
    assert sum("not supported" in r.getMessage() for r in caplog.records) == 1


def test_the_node_says_which_path_it_uses(wan, caplog):
    with caplog.at_level(logging.INFO, logger="ComfyUI-FIS"):
        sample(fps(wan), latent(), text(), steps=2)
    lines = [r.getMessage() for r in caplog.records if "FPS attention" in r.getMessage()]
    assert len(lines) == 1 and "PyTorch reference path" in lines[0] and "tile 2x8x8" in lines[0], lines
