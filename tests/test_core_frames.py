"""Gather, restore and interpolation (no host needed)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from comfyui_fis.fis_core import (FrameLayout, build_plan, gather, interpolation_sources, kept_before, restore,
                                  token_index)

LAYOUT = FrameLayout(prefix=3, frames=9, tokens_per_frame=4, suffix=2)


class Sparse:
    """A plan and its token index for ``computed`` frames of ``layout``."""

    def __init__(self, layout, computed, mode="linear"):
        self.layout = layout
        self.plan = build_plan(layout.frames, computed, mode, "cpu")
        self.index = token_index(layout, self.plan)

    def gather(self, x):
        return gather(x, self.index)

    def restore(self, x, y_sub):
        return restore(x, y_sub, self.layout, self.plan)


def frame_of_token(layout):
    """Frame index of every token (-1 for prefix/suffix)."""
    index = torch.full((layout.length,), -1)
    index[layout.frame_tokens] = torch.arange(layout.frames).repeat_interleave(layout.tokens_per_frame)
    return index


def linear_update(x, layout):
    """A 'block' whose update is linear in the frame index: frame f gets a + b*f; others get c."""
    a, b, c = torch.randn(3, x.shape[-1], generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    ids = frame_of_token(layout)
    full_update = torch.where((ids >= 0).unsqueeze(-1), a + b * ids.unsqueeze(-1), c)
    return full_update


@pytest.mark.parametrize("computed", [(0, 2, 4, 6, 8), (0, 3, 5, 8), (0, 8)])
def test_linear_restores_a_linear_update_exactly(computed):
    x = torch.randn(2, LAYOUT.length, 6, dtype=torch.float64)
    update = linear_update(x, LAYOUT)
    sparse = Sparse(LAYOUT, computed)
    y_sub = sparse.gather(x) + sparse.gather(update.unsqueeze(0))
    out = sparse.restore(x, y_sub)
    torch.testing.assert_close(out, x + update, rtol=0, atol=1e-12)


def test_linear_holds_the_nearest_update_outside_the_computed_frames():
    x = torch.randn(1, LAYOUT.length, 6, dtype=torch.float64)
    update = linear_update(x, LAYOUT)
    sparse = Sparse(LAYOUT, (2, 4, 6))
    out = sparse.restore(x, sparse.gather(x + update))
    frames_out = (out - x)[0, LAYOUT.frame_tokens].unflatten(0, (9, 4))
    frames_update = update[LAYOUT.frame_tokens].unflatten(0, (9, 4))
    for f, source in [(0, 2), (1, 2), (7, 6), (8, 6), (3, 3), (5, 5)]:
        torch.testing.assert_close(frames_out[f], frames_update[source], rtol=0, atol=1e-12)


def test_none_leaves_skipped_frames_untouched_and_copies_computed_tokens():
    x = torch.randn(2, LAYOUT.length, 6)
    computed = (1, 4, 7)
    sparse = Sparse(LAYOUT, computed, "none")
    y_sub = torch.randn(2, len(sparse.index), 6)
    out = sparse.restore(x, y_sub)
    ids = frame_of_token(LAYOUT)
    kept = torch.tensor([i < 0 or int(i) in computed for i in ids])
    assert torch.equal(out[:, ~kept], x[:, ~kept])
    assert torch.equal(out[:, kept], y_sub)


def test_nearest_copies_the_closest_computed_update():
    x = torch.zeros(1, LAYOUT.length, 1)
    sparse = Sparse(LAYOUT, (0, 3, 8), "nearest")
    y_sub = torch.zeros(1, len(sparse.index), 1)
    frames = y_sub[0, LAYOUT.prefix:LAYOUT.prefix + 3 * 4].view(3, 4)
    frames[:] = torch.tensor([10.0, 30.0, 80.0]).view(3, 1)
    out = sparse.restore(x, y_sub)[0, LAYOUT.frame_tokens, 0].view(9, 4)[:, 0]
    assert out.tolist() == [10, 10, 30, 30, 30, 30, 80, 80, 80]


def test_interpolation_sources():
    skipped, lo, hi, weight = interpolation_sources((0, 3), 5, "linear")
    assert skipped == [1, 2, 4] and lo == [0, 0, 1] and hi == [1, 1, 1]
    assert weight == pytest.approx([1 / 3, 2 / 3, 0.0])
    with pytest.raises(ValueError, match="interpolation"):
        interpolation_sources((0,), 3, "cubic")


def test_gather_takes_prefix_frames_and_suffix_in_order():
    x = torch.arange(LAYOUT.length).view(1, -1, 1)
    tokens = Sparse(LAYOUT, (1, 5)).gather(x).flatten().tolist()
    assert tokens == [0, 1, 2] + list(range(7, 11)) + list(range(23, 27)) + [39, 40]
    assert [kept_before(LAYOUT, (1, 5), p) for p in (0, 3, 7, 11, 23, 27, 39, 41)] == [0, 3, 3, 7, 7, 11, 11, 13]


def test_token_index_behind_a_text_prefix():
    plan = build_plan(4, (0, 2), "linear", "cpu")
    assert token_index(FrameLayout(0, 4, 2).with_prefix(3), plan).tolist() == [0, 1, 2, 3, 4, 7, 8]


def test_bad_subsets_are_refused():
    for computed in [(), (9,), (3, 1), (1, 1)]:
        with pytest.raises(ValueError, match="computed frames"):
            build_plan(LAYOUT.frames, computed, "linear", "cpu")


def naive_restore(x, y_sub, layout, computed, mode):
    """The restore written frame by frame, as the method describes it."""
    T, P = layout.tokens_per_frame, layout.prefix
    out = x.clone()
    kept = Sparse(layout, computed, mode).gather(x)
    position = {f: i for i, f in enumerate(computed)}
    frame = lambda t, i: t[:, P + i * T:P + (i + 1) * T]
    out[:, :P] = y_sub[:, :P]
    out[:, P + layout.frames * T:] = y_sub[:, P + len(computed) * T:]
    skipped, lo, hi, weight = interpolation_sources(computed, layout.frames, mode)
    for f in computed:
        frame(out, f)[:] = frame(y_sub, position[f])
    for f, a, b, w in zip(skipped, lo, hi, weight):
        if mode != "none":
            update_a = frame(y_sub, a) - frame(kept, a)
            update_b = frame(y_sub, b) - frame(kept, b)
            frame(out, f)[:] += (1 - w) * update_a + w * update_b
    return out


@pytest.mark.parametrize("mode", ["linear", "nearest", "none"])
@pytest.mark.parametrize("computed", [(0, 2, 4, 6, 8), (1, 3, 5, 7), (0, 1, 5), (4,), (0, 3, 4, 8)])
def test_restore_matches_the_frame_by_frame_definition(mode, computed):
    generator = torch.Generator().manual_seed(len(computed))
    x = torch.randn(2, LAYOUT.length, 5, generator=generator, dtype=torch.float64)
    sparse = Sparse(LAYOUT, computed, mode)
    y_sub = torch.randn(2, len(sparse.index), 5, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(sparse.restore(x, y_sub), naive_restore(x, y_sub, LAYOUT, computed, mode), rtol=0, atol=1e-12)


def test_restore_copies_computed_frames_exactly_in_bfloat16():
    layout = FrameLayout(0, 7, 3)
    x = torch.randn(1, layout.length, 4).bfloat16()
    sparse = Sparse(layout, (1, 4))
    y_sub = torch.randn(1, len(sparse.index), 4).bfloat16()
    out = sparse.restore(x, y_sub)
    assert out.dtype == torch.bfloat16 and torch.equal(sparse.gather(out), y_sub)


INTERPRETER_CHECK = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from fis_core import FrameLayout, build_plan, restore_kernel, token_index
assert restore_kernel.triton is not None
for mode in ("linear", "nearest", "none"):
    layout = FrameLayout(0, 7, 3)
    plan = build_plan(7, (0, 3, 4), mode, "cpu")
    x = torch.randn(2, 7, 3 * 1400)   # two 4096-element chunks per frame, the second one partial
    y = torch.randn(2, 3, 3 * 1400)
    expected = restore_kernel._restore_frames_torch(x, y, plan.table, plan.weight)
    assert restore_kernel.use_triton(x)
    torch.testing.assert_close(restore_kernel._restore_frames_triton(x, y, plan.table, plan.weight), expected)
print("kernel ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_kernel_matches_the_torch_path_in_the_interpreter():
    """The Triton kernel, run by Triton's CPU interpreter, gives what the torch path gives."""
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", INTERPRETER_CHECK, root], capture_output=True, text=True,
                            env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=300)
    assert result.returncode == 0 and "kernel ok" in result.stdout, result.stderr[-3000:]
