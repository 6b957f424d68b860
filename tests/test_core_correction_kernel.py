"""The fused fit and apply (fis_core.correction_kernel), run by Triton's CPU interpreter, against a naive fit and
the torch path at small shapes; where they run and where they do not."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

INTERPRETER_CHECK = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from fis_core import CorrectionForm, FitSums, FrameLayout, build_plan, correction, correction_kernel, restore, token_index


def naive_products(x, y, plan, stride, c, operand):
    # dx, du per fit frame and every stride-th token in fp32, rounded to the operand dtype; products in fp64
    gram = cross = 0
    for (center, low, high), w in zip(plan.fit.tolist(), plan.fit_weight.tolist()):
        frames = [plan.frame_index[i].item() for i in (center, low, high)]
        xs = [x[:, f, ::stride].float() for f in frames]
        ys = [y[:, i, ::stride].float() for i in (center, low, high)]
        dx = xs[0] - torch.lerp(xs[1], xs[2], w)
        du = ys[0] - torch.lerp(ys[1], ys[2], w) - dx
        dx, du = (t.to(operand).double().unflatten(2, (-1, c)).transpose(1, 2) for t in (dx, du))
        gram, cross = gram + dx.mT @ dx, cross + dx.mT @ du
    return gram, cross


torch.manual_seed(0)
# frames, tokens, channels, computed, batch, model dtype, fit token budget: two maps of 128; one map of 96 channels
# (not a power of two); every second token read; 2 batch entries; 3 fit frames of 130 tokens, split over programs
cases = [(9, 130, 256, (0, 2, 4, 6, 8), 2, torch.float32, 4096), (9, 40, 256, (0, 2, 4, 6, 8), 1, torch.bfloat16, 64),
         (7, 33, 96, (0, 1, 4, 6), 1, torch.float32, 4096)]
for frames, tokens, channels, computed, batch, dtype, budget in cases:
    plan = build_plan(frames, computed, "corrected", "cpu")
    form = CorrectionForm(fit_tokens=budget)
    c, stride = form.channels_per_map(channels), form.token_stride(plan.fit.shape[0], tokens)
    x = torch.randn(batch, frames, tokens, channels).to(dtype)
    y = (x.index_select(1, plan.frame_index).float() * 1.1 + 0.3 * torch.randn(batch, len(computed), tokens, channels)).to(dtype)
    assert correction_kernel.fused(x, c)
    for operand in (torch.float32, torch.bfloat16):
        gram, cross = correction_kernel.fit_products(x, y, plan.fit, plan.fit_weight, plan.frame_index, stride, c,
                                                     operand == torch.bfloat16)
        assert gram.dtype == cross.dtype == torch.float32 and gram.shape == (batch, channels // c, c, c)
        for fused, naive in zip((gram, cross), naive_products(x, y, plan, stride, c, operand)):
            torch.testing.assert_close(fused.double(), naive, rtol=1e-5, atol=1e-5 * naive.abs().max().item())
    torch_gram, torch_cross = correction._fit_products(x, y, plan.fit, plan.fit_weight, plan.frame_index, stride, c,
                                                       torch.float32)
    gram, cross = correction_kernel.fit_products(x, y, plan.fit, plan.fit_weight, plan.frame_index, stride, c, False)
    torch.testing.assert_close(gram, torch_gram, rtol=1e-5, atol=1e-5 * torch_gram.abs().max().item())
    torch.testing.assert_close(cross, torch_cross, rtol=1e-5, atol=1e-5 * torch_cross.abs().max().item())

    # the apply: the corrected frames as on the torch path, every other frame untouched (bit for bit)
    maps = torch.randn(batch, channels // c, c, c) / c
    out = torch.randn(batch, frames, tokens, channels).to(dtype)
    expected, fused = out.clone(), out.clone()
    correction_kernel.ENABLED = False
    correction.apply_maps(expected, x, maps, plan)
    correction_kernel.ENABLED = True
    correction.apply_maps(fused, x, maps, plan)
    corrected = [f for f, *_ in plan.corrected]
    others = [f for f in range(frames) if f not in corrected]
    assert torch.equal(fused[:, others], out[:, others]) and not torch.equal(fused[:, corrected], out[:, corrected])
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=0.01, atol=0.04)
    torch.testing.assert_close(fused.float(), expected.float(), **tolerance)

    # the whole corrected restore, sums carried over two calls: fused (bf16 products) against the torch path (fp32)
    layout = FrameLayout(2, frames, tokens, 3)
    outputs = {}
    for enabled in (False, True):
        correction_kernel.ENABLED, sums = enabled, FitSums()
        generator = torch.Generator().manual_seed(1)
        for _ in range(2):
            xs = torch.randn(batch, layout.length, channels, generator=generator).to(dtype)
            ys = torch.tanh(xs.index_select(1, token_index(layout, plan)).float() * 1.3).to(dtype)
            outputs[enabled] = restore(xs, ys, layout, plan, (sums, "key"))
    difference = (outputs[True].float() - outputs[False].float()).norm() / outputs[False].float().norm()
    assert difference < (2e-3 if dtype == torch.float32 else 1e-2), difference
print("fused ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (it comes with torch on GPUs)")
def test_fused_fit_and_apply_match_a_naive_fit_and_the_torch_path_in_the_interpreter():
    """The fit kernel's Gram and cross sums equal a naive fp64 sum over the same rows (fp32 and bf16 operands, two
    maps and one of 96 channels, every second token, batch 2, split over programs) and the torch path's; the apply
    kernel corrects the skipped frames as the torch path does and leaves the others alone; a whole corrected
    restore with carried sums lands within 0.2% (fp32 model) of the torch path's."""
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", INTERPRETER_CHECK, root], capture_output=True, text=True,
                            env={**os.environ, "TRITON_INTERPRET": "1", "FIS_FUSED_CORRECTION": "1"}, timeout=600)
    assert result.returncode == 0 and "fused ok" in result.stdout, result.stderr[-3000:]


def test_the_fused_path_is_taken_only_where_it_can_run(monkeypatch):
    """On the CPU without the interpreter, for maps over 128 channels, fp64 tokens, or switched off: the torch path."""
    from comfyui_fis.fis_core import correction_kernel, restore_kernel
    x = torch.zeros(1, 3, 4, 256)
    assert not correction_kernel.ENABLED                          # off until measured on a GPU (FIS_FUSED_CORRECTION=1)
    monkeypatch.setattr(correction_kernel, "ENABLED", True)
    assert not correction_kernel.fused(x, 128)                    # the CPU: the torch path, as before
    monkeypatch.setattr(restore_kernel, "use_triton", lambda t: True)
    monkeypatch.setattr(correction_kernel, "use_triton", lambda t: True)
    assert correction_kernel.fused(x, 128) and correction_kernel.fused(x.bfloat16(), 96)
    assert not correction_kernel.fused(x, 256) and not correction_kernel.fused(x.double(), 128)
    monkeypatch.setattr(correction_kernel, "ENABLED", False)
    assert not correction_kernel.fused(x, 128)


def test_the_default_form_fits_in_fp32_on_the_torch_path_bit_for_bit():
    """fit_dtype None (the default) is fp32 products on the torch path (the CPU's figures unchanged), bf16 fused."""
    from comfyui_fis.fis_core import CorrectionForm, FrameLayout, build_plan, gather, restore, token_index
    layout = FrameLayout(1, 7, 24, 0)
    plan_default = build_plan(7, (0, 2, 4, 6), "corrected", "cpu")
    plan_fp32 = build_plan(7, (0, 2, 4, 6), "corrected", "cpu", CorrectionForm(fit_dtype=torch.float32))
    x = torch.randn(1, layout.length, 256, generator=torch.Generator().manual_seed(0))
    y = torch.sin(gather(x, token_index(layout, plan_default)) * 2)
    assert torch.equal(restore(x, y, layout, plan_default), restore(x, y, layout, plan_fp32))
    assert CorrectionForm().products_dtype(fused=True) == torch.bfloat16
    assert CorrectionForm(fit_dtype=torch.float32).products_dtype(fused=True) == torch.float32
