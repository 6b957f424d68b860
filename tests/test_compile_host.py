"""FIS under ComfyUI's TorchCompileModel: the node's own compile wrapper and guard filter, with dynamo's
``eager`` backend (the same tracing, guards and recompiles as inductor, without a C++ build on the CI CPU)."""
import pytest
import torch

from tiny_models import fis, relative_error, sample, text, tiny_wan


@pytest.fixture
def dynamo():
    """Fresh dynamo caches and counters for one test."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


def compiled(model):
    """The host's TorchCompileModel node, with the eager backend."""
    from comfy_extras.nodes_torch_compile import TorchCompileModel
    return TorchCompileModel.execute(model, "eager")[0]


@pytest.fixture(scope="module")
def wan(host):
    return tiny_wan(num_layers=6)


def test_compiled_fis_is_one_graph_per_rotation_and_matches_eager(wan, dynamo):
    """The groups rotate across steps: one graph per rotation phase (2 here), and one more for the run's first call,
    whose fit has no earlier sums, however many steps."""
    x = torch.randn(1, 16, 9, 8, 8)
    patched = fis(wan)
    eager = sample(patched, x, text(), steps=3)
    out = sample(compiled(patched), x, text(), steps=3)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    assert dict(dynamo["graph_break"]) == {}
    assert dynamo["stats"]["unique_graphs"] == 3
    assert relative_error(out, sample(wan, x, text(), steps=3)) > 1e-3   # FIS really ran


@pytest.mark.parametrize("order", ["fis-then-compile", "compile-then-fis"])
def test_compiled_model_recompiles_once_when_fis_turns_off(wan, dynamo, order):
    """FIS on for the first two steps only (two rotation phases): the compiled model must not reuse an FIS graph
    for the dense steps."""
    x = torch.randn(1, 16, 9, 8, 8)
    eager = sample(fis(wan, end_percent=0.4), x, text(), steps=4)
    model = compiled(fis(wan, end_percent=0.4)) if order == "fis-then-compile" else fis(compiled(wan), end_percent=0.4)
    out = sample(model, x, text(), steps=4)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    assert dynamo["stats"]["unique_graphs"] == 3
    sample(model, x, text(), steps=4)   # a second run compiles nothing new
    assert dynamo["stats"]["unique_graphs"] == 3


def test_fis_added_after_the_compiled_model_already_ran_dense(wan, dynamo):
    """ComfyUI's compile guards ignore transformer_options; FIS must still replace the dense graph."""
    x = torch.randn(1, 16, 9, 8, 8)
    compiled_dense = compiled(wan)
    dense = sample(compiled_dense, x, text(), steps=2)
    out = sample(fis(compiled_dense), x, text(), steps=2)
    torch.testing.assert_close(out, sample(fis(wan), x, text(), steps=2), rtol=1e-4, atol=1e-4)
    assert relative_error(out, dense) > 1e-3
    again = sample(compiled_dense, x, text(), steps=2)   # and the dense model is dense again
    torch.testing.assert_close(again, dense, rtol=1e-4, atol=1e-4)
    assert dynamo["stats"]["unique_graphs"] == 3             # dense, and FIS at its two rotation phases


def fps(model, sparsity=0.5, dense_steps=""):
    from comfyui_fis.nodes import FPSAttention
    return FPSAttention().patch(model, "fp8", "auto", sparsity, "window", dense_steps)[0]


def test_compiled_fps_is_one_graph_around_its_op_and_matches_eager(wan, dynamo):
    """FPS attention is one registered op, so the compiled model stays one graph (with FIS, one per FIS state)."""
    x = torch.randn(1, 16, 5, 16, 16)
    out = sample(compiled(fps(wan)), x, text(), steps=2)
    torch.testing.assert_close(out, sample(fps(wan), x, text(), steps=2), rtol=1e-4, atol=1e-4)
    assert dict(dynamo["graph_break"]) == {}
    assert dynamo["stats"]["unique_graphs"] == 1
    assert relative_error(out, sample(wan, x, text(), steps=2)) > 1e-4          # FPS really ran


def test_compiled_fps_keeps_its_dense_steps_and_applies_after_a_dense_run(wan, dynamo):
    """ComfyUI's compile guards ignore transformer_options: the exact steps, and FPS added to a model that was
    already compiled dense, must still get their own graphs."""
    x = torch.randn(1, 16, 5, 16, 16)
    out = sample(compiled(fps(wan, dense_steps="0-50")), x, text(), steps=4)
    torch.testing.assert_close(out, sample(fps(wan, dense_steps="0-50"), x, text(), steps=4), rtol=1e-4, atol=1e-4)
    assert dynamo["stats"]["unique_graphs"] == 2
    torch._dynamo.reset()
    compiled_dense = compiled(wan)
    sample(compiled_dense, x, text(), steps=2)
    out = sample(fps(compiled_dense), x, text(), steps=2)
    torch.testing.assert_close(out, sample(fps(wan), x, text(), steps=2), rtol=1e-4, atol=1e-4)
