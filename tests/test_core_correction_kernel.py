"""The fused fit, solve and apply (fis_core.correction_kernel), run by Triton's CPU interpreter, against a naive fit,
an fp64 solve and the torch path at small shapes; where they run and where they do not."""
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


SOLVE_CHECK = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from fis_core import CorrectionForm, FitSums, build_plan, correction, correction_kernel


def sums(batch, n, c, tokens, rank, generator):
    # residuals of `rank` shared directions plus weak noise, channels of scales 1e-2..1e2, maps of scales 1e-3..1e3:
    # rank 1 puts the ridged Gram at the condition number the ridge allows (10 c + 1)
    f64 = dict(dtype=torch.float64, generator=generator)
    dx = torch.randn(batch, n, tokens, rank, **f64) @ torch.randn(batch, n, rank, c, **f64)
    dx = (dx + 1e-3 * torch.randn(batch, n, tokens, c, **f64)) * torch.logspace(-2, 2, c, dtype=torch.float64)
    dx = dx * torch.logspace(-1.5, 1.5, n, dtype=torch.float64).view(1, n, 1, 1)
    du = dx @ torch.randn(batch, n, c, c, **f64) / c ** 0.5 + torch.randn(batch, n, tokens, c, **f64)
    return (dx.mT @ dx).float(), (dx.mT @ du).float()


def exact(gram, cross):
    # the ridged solve in fp64 of the same fp32 sums, and the system's condition number
    g = gram.double()
    diagonal = g.diagonal(dim1=2, dim2=3)
    g = g + torch.diag_embed((correction.RIDGE * diagonal.mean(dim=2, keepdim=True)).expand_as(diagonal))
    return torch.linalg.solve(g, cross.double()), torch.linalg.cond(g)


def error(maps, reference):
    # per map: the largest error over the largest entry
    return (maps.double() - reference).abs().amax(dim=(2, 3)) / reference.abs().amax(dim=(2, 3))


generator = torch.Generator().manual_seed(0)
# batch, maps, channels per map, fit tokens, rank of the residuals: batch 2 of 3 maps; a 96- and a 7-channel map
# (padded to 128 and 16); 128 channels at full rank and at rank 1, the worst the ridge allows
for batch, n, c, tokens, rank in [(2, 3, 32, 64, 4), (1, 2, 64, 256, 64), (1, 1, 96, 40, 30), (1, 1, 7, 20, 2),
                                  (1, 2, 128, 4096, 128), (1, 1, 128, 512, 1)]:
    gram, cross = sums(batch, n, c, tokens, rank, generator)
    maps = correction_kernel.ridge_solve(gram, cross, correction.RIDGE)
    assert maps.dtype == torch.float32 and maps.shape == (batch, n, c, c)
    reference, condition = exact(gram, cross)
    assert (error(maps, reference) <= 1e-6 * condition).all(), (c, error(maps, reference), condition)
    # as close as torch's fp32 Cholesky solve, give or take
    assert error(maps, reference).max() <= 2 * error(correction.ridge_solve(gram, cross, False), reference).max() + 1e-6
assert condition.item() > 1200                                   # the last case: near 10 c + 1 = 1281
# a custom op torch.compile keeps in its graph: schema, fake tensor and traced calls agree with eager
torch.library.opcheck(torch.ops.comfyui_fis.ridge_solve.default, sums(2, 1, 16, 32, 4, generator) + (correction.RIDGE,))

# a map whose residuals are all zero (channels that never change) gets a zero map, not NaN
gram, cross = sums(1, 2, 64, 128, 8, generator)
gram[:, 1], cross[:, 1] = 0, 0
maps = correction_kernel.ridge_solve(gram, cross, correction.RIDGE)
assert torch.equal(maps[:, 1], torch.zeros(1, 64, 64)) and maps[:, 0].abs().max() > 0

for bad in (gram.double(), torch.zeros(1, 1, 256, 256)):
    try:
        correction_kernel.ridge_solve(bad, bad, correction.RIDGE)
        raise AssertionError("ridge_solve took a bad input")
    except ValueError as refused:
        assert "ridge_solve: gram and cross must be fp32" in str(refused)

# fit_maps end to end, fp32 products on both paths, sums carried: the fused fit and solve (no Cholesky) as torch's
frames, tokens, channels, computed = 9, 48, 192, (0, 2, 4, 6, 8)                # 3 maps of 64 channels
plan = build_plan(frames, computed, "corrected", "cpu", CorrectionForm(map_channels=64, fit_dtype=torch.float32))
x = torch.randn(2, frames, tokens, channels, generator=generator)
y = torch.tanh(x.index_select(1, plan.frame_index) * 1.3) + 0.1 * torch.randn(2, len(computed), tokens, channels,
                                                                              generator=generator)
maps = {}
for enabled in (False, True):
    correction_kernel.ENABLED, carried = enabled, FitSums()
    assert correction_kernel.fused(x, 64) == enabled
    if enabled:
        torch.linalg.cholesky_ex = None                          # the fused path must not reach torch's solve
    for call in range(2):
        maps[enabled] = correction.fit_maps(x + call, y, plan.fit, plan.fit_weight, plan.frame_index,
                                            (carried, "key"), plan.form)
assert maps[True].shape == (2, 3, 64, 64)
torch.testing.assert_close(maps[True], maps[False], rtol=1e-4, atol=1e-4 * maps[False].abs().max().item())
print("solve ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (it comes with torch on GPUs)")
def test_fused_solve_matches_an_fp64_solve_in_the_interpreter():
    """The solve kernel's maps, on Gram sums of random residuals (batch 2, 1-3 maps of 7, 32, 64, 96 and 128
    channels, one at the condition number the ridge allows), are within 1e-6 times the condition number of an fp64
    solve per map and as close as torch's fp32 Cholesky solve; the op passes torch's opcheck (torch.compile keeps it);
    an all-zero map solves to zero; bad input is refused; fit_maps fused (with carried sums) equals the torch path and never calls torch's Cholesky."""
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", SOLVE_CHECK, root], capture_output=True, text=True,
                            env={**os.environ, "TRITON_INTERPRET": "1", "FIS_FUSED_CORRECTION": "1"}, timeout=600)
    assert result.returncode == 0 and "solve ok" in result.stdout, result.stderr[-3000:]


def test_the_fused_path_is_taken_only_where_it_can_run(monkeypatch):
    """On the CPU without the interpreter, for maps over 128 channels, fp64 tokens, or switched off: the torch path."""
    from comfyui_fis.fis_core import correction_kernel, restore_kernel
    x = torch.zeros(1, 3, 4, 256)
    assert correction_kernel.ENABLED                              # on by default (FIS_FUSED_CORRECTION=0 turns it off)
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
