"""FIS under sequence parallelism (Raylight, xDiT Ulysses) on several CPU processes (gloo), world sizes 2 and 3.

Raylight's own code runs (its injector, ``usp_dit_forward``, its xFuser-attention forwards); xFuser itself, which
needs CUDA, is a stand-in written in tests/sequence_parallel_harness.py (the sequence split it gives Raylight and
Ulysses all-to-all attention over gloo). Without Raylight in the host's custom_nodes these tests skip and say so;
``FIS_REQUIRE_RAYLIGHT=1`` makes that a failure. Set-up: ``git clone https://github.com/komikndr/raylight`` into
``ComfyUI/custom_nodes`` (no Ray or xFuser needed for these tests).
"""
from __future__ import annotations

import os

import pytest
import torch

from sequence_parallel_harness import raylight_source, run_ranks
from tiny_models import relative_error

NO_RAYLIGHT = ("SEQUENCE-PARALLEL TESTS DID NOT RUN: no Raylight in the host's custom_nodes "
               "(git clone https://github.com/komikndr/raylight there; see README, Several GPUs)")


@pytest.fixture(scope="module")
def raylight(host):
    src = raylight_source(host)
    if src is None:
        if os.environ.get("FIS_REQUIRE_RAYLIGHT"):
            pytest.fail(NO_RAYLIGHT, pytrace=False)
        pytest.skip(NO_RAYLIGHT)
    return src


def _check_ranks(results):
    """Every rank ends with the same latent (Raylight all-gathers before the head)."""
    for other in results[1:]:
        for key in ("sp_dense", "sp_fis"):
            torch.testing.assert_close(other[key], results[0][key], rtol=0, atol=0)


@pytest.mark.parametrize("case", ["wan_even", "wan_reference"])
@pytest.mark.parametrize("world", [2, 3])
def test_fis_on_shards_equals_one_process(raylight, tmp_path, world, case):
    """Frames straddle the chunk edges; the subsets divide evenly over the ranks: FIS on the shards equals FIS in one
    process (fp32, CPU), and it computed fewer tokens than the dense model (the Ulysses attention saw the subset)."""
    results = run_ranks(world, case, tmp_path, raylight)
    _check_ranks(results)
    r = results[0]
    torch.testing.assert_close(r["sp_dense"], r["single_dense"], rtol=1e-5, atol=1e-5)   # the stand-in is faithful
    torch.testing.assert_close(r["sp_fis"], r["single_fis"], rtol=1e-5, atol=1e-5)
    assert relative_error(r["sp_fis"], r["sp_dense"]) > 1e-4, "FIS changed nothing: the sparse blocks ran dense"
    full = max(r["attention_tokens"])
    assert any(t < full for t in r["attention_tokens"]), f"attention only ever saw {r['attention_tokens']} tokens"


def test_fis_on_padded_shards(raylight, tmp_path):
    """80 tokens over 3 ranks: Raylight pads the sequence (and FIS the subset {1, 3}) with zero tokens, which its
    Ulysses attention does not mask. FIS on the shards then differs from one process by no more than Raylight's
    own dense model does, scaled by the share of padding: 1 of 32 subset tokens against 1 of 80 (measured on 3 ranks:
    dense 1.0e-4, FIS 9.6e-4; a 720p Wan frame has 3600 tokens, which divide by 2, 3, 4, 5, 6 and 8 ranks)."""
    results = run_ranks(3, "wan_padded", tmp_path, raylight)
    _check_ranks(results)
    r = results[0]
    dense_gap = relative_error(r["sp_dense"], r["single_dense"])
    fis_gap = relative_error(r["sp_fis"], r["single_fis"])
    print(f"padding: dense {dense_gap:.2e}, FIS {fis_gap:.2e} (relative, vs one process)")
    assert 0 < fis_gap < max(20 * dense_gap, 1e-5) and fis_gap < 3e-3, (fis_gap, dense_gap)


@pytest.mark.parametrize("world", [2, 3])
def test_fps_on_shards_equals_one_process(host, tmp_path, world):
    """FPS given one rank's chunk runs Ulysses itself and tiles the grid the attention sees (the whole latent's, or a
    sparse block's frames): equal to FPS on the whole sequence, padding included (FPS leaves it out). Needs only
    the xFuser stand-in, not Raylight."""
    for rank, result in enumerate(run_ranks(world, "fps_ulysses", tmp_path, None)):
        for name, (whole, mine) in result.items():
            torch.testing.assert_close(mine, whole, rtol=1e-5, atol=1e-5, msg=lambda m: f"rank {rank}, {name}: {m}")
