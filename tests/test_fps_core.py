"""The pure-PyTorch side of FPS attention: tiles, patterns, per-tile FP8, and the reference attention."""
import math

import pytest
import torch
import torch.nn.functional as F

from comfyui_fis.fis_core.fps import (FpsSettings, TileLayout, choose_tile, fake_quantize_probabilities,
                                      fps_attention, kept_lists, kept_per_row, parse_percent_ranges, parse_tile,
                                      pooled_scores, quantize_tiles, dequantize_tiles, tile_attention_reference,
                                      topk_pattern, window_pattern)
from comfyui_fis.fis_core.fps.mask import first_frame_tiles

LAYOUT = TileLayout(3, 5, 6, (1, 4, 4))     # 90 tokens, rows and columns padded: 12 tiles of 16


def qkv(layout=LAYOUT, batch=2, heads=2, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, layout.tokens, heads, dim, generator=g) for _ in range(3)]


def sdpa(q, k, v, mask=None):
    return F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), attn_mask=mask).transpose(1, 2)


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_tiles_round_trip_and_put_valid_tokens_first():
    x = torch.arange(LAYOUT.tokens)
    tiled = LAYOUT.to_tiles(x, 0).view(LAYOUT.num_tiles, LAYOUT.tile_tokens)
    assert torch.equal(LAYOUT.from_tiles(tiled.reshape(-1), 0), x)
    counts = LAYOUT.counts("cpu")
    assert counts.tolist() == [16, 8, 4, 2] * 3 and int(counts.sum()) == LAYOUT.tokens
    for tile, count in zip(tiled, counts):
        assert len(set(tile[:count].tolist())) == count            # each token once
        assert set(tile[count:].tolist()) <= set(tile[:count].tolist())   # padding repeats the tile's own tokens
    assert tiled[0].tolist()[:5] == [0, 1, 2, 3, 6]                 # frame 0, rows 0-3, columns 0-3


def test_auto_tile_pads_least():
    assert choose_tile(21, 45, 80) == (1, 8, 16)
    assert choose_tile(21, 30, 52) == (1, 32, 4)
    assert parse_tile("auto") is None and parse_tile(" 2x8x8 ") == (2, 8, 8)
    for bad in ("8x16", "1x8x8x2", "1x8x10", "a"):
        with pytest.raises(ValueError, match="tile"):
            parse_tile(bad)


def test_fp8_quantisation_error_is_bounded_per_tile():
    x = qkv()[0] * torch.logspace(-3, 2, LAYOUT.tokens)[None, :, None, None]   # tiles of very different ranges
    x = LAYOUT.to_tiles(x, 1)
    values, scale = quantize_tiles(x, LAYOUT.tile_tokens)
    assert scale.shape == (2, LAYOUT.num_tiles, 2)
    tiles = x.view(2, LAYOUT.num_tiles, -1, 2, 16)
    assert torch.allclose(scale * 448.0, tiles.abs().amax(dim=(2, 4)))
    assert values.float().abs().view_as(tiles).amax(dim=(2, 4)).eq(448.0).all()   # each tile uses the full range
    error = (dequantize_tiles(values, scale) - x).abs().view_as(tiles)
    # e4m3: 3 mantissa bits (half an ulp is 2^-4 relative); below 2^-6 (subnormal) steps of 2^-9 times the scale
    bound = torch.maximum(tiles.abs() * 2 ** -4, scale[:, :, None, :, None] * 2 ** -10)
    assert (error <= bound * (1 + 1e-6)).all()
    p = torch.rand(1000)
    assert ((fake_quantize_probabilities(p) - p).abs() <= torch.maximum(p * 2 ** -4, torch.tensor(2 ** -10 / 448))).all()


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_window_pattern_keeps_the_nearest_tiles_and_the_first_frame(sparsity):
    keep = window_pattern(LAYOUT, sparsity)
    first = first_frame_tiles(LAYOUT)
    assert keep[:, first].all() and keep[first, :].all()            # first frame: always a key, and a full query
    assert keep.diagonal().all()
    k = kept_per_row(LAYOUT, sparsity)
    assert (keep[~first].sum(1) == k).all() and k == max(math.ceil((1 - sparsity) * 12), int(first.sum()) + 1)
    # tile 8 (frame 2, top left) keeps the same place one frame back (1/3 of the frames away) before its
    # neighbours in its frame (1/2 of the rows or columns away)
    assert keep[8, 4] == (k > 5) and keep[8, 9] == keep[8, 10] == (k > 6)


def test_topk_pattern_keeps_the_highest_pooled_scores():
    q, k, _ = (LAYOUT.to_tiles(x, 1) for x in qkv())
    keep = topk_pattern(q, k, LAYOUT, 0.5)
    scores = pooled_scores(q, k, LAYOUT)
    first = first_frame_tiles(LAYOUT)
    assert keep.shape == (2, 2, 12, 12) and keep[..., first].all() and keep[..., first, :].all()
    rows = keep[..., ~first, :]
    forced = first | torch.eye(12, dtype=torch.bool)[~first]           # the first frame and the tile itself
    kept_min = scores[..., ~first, :].masked_fill(~rows | forced, float("inf")).amin(-1)
    dropped_max = scores[..., ~first, :].masked_fill(rows, float("-inf")).amax(-1)
    assert (kept_min >= dropped_max).all()


def test_kept_lists_match_the_pattern():
    keep = window_pattern(LAYOUT, 0.5)
    lists, counts = kept_lists(keep)
    assert lists.dtype == counts.dtype == torch.int32
    for row, (tiles, count) in enumerate(zip(lists, counts)):
        assert tiles[:count].tolist() == torch.nonzero(keep[row]).flatten().tolist()


def test_dense_bf16_is_exact_attention():
    q, k, v = qkv()
    out = fps_attention(q, k, v, (3, 5, 6), FpsSettings("bf16", 0.0, tile=(1, 4, 4)))
    assert torch.allclose(out, sdpa(q, k, v), atol=1e-6, rtol=1e-5)


def test_sparse_reference_is_attention_masked_token_by_token():
    q, k, v = qkv()
    keep = window_pattern(LAYOUT, 0.6)
    out = fps_attention(q, k, v, (3, 5, 6), FpsSettings("bf16", 0.6, tile=(1, 4, 4)))
    tile_of = LAYOUT.from_tiles(torch.arange(LAYOUT.slots) // LAYOUT.tile_tokens, 0)   # tile of each token
    mask = keep[tile_of][:, tile_of]
    assert torch.allclose(out, sdpa(q, k, v, mask), atol=1e-6, rtol=1e-5)
    assert relative_error(out, sdpa(q, k, v)) > 0.05                       # it did skip something


def test_fp8_reference_is_attention_of_the_quantised_tensors():
    q, k, v = qkv()
    out = fps_attention(q, k, v, (3, 5, 6), FpsSettings("fp8", 0.0, tile=(1, 4, 4)))
    assert relative_error(out, sdpa(q, k, v)) < 0.08
    smoothed = k - k.mean(1, keepdim=True)                                  # K less its mean key, as the kernel
    fake = [LAYOUT.from_tiles(dequantize_tiles(*quantize_tiles(LAYOUT.to_tiles(x, 1), 16)), 1) for x in (q, smoothed, v)]
    assert relative_error(out, sdpa(*fake)) < 0.03                          # what is left: P in e4m3


def test_fp8_keys_sharing_an_offset_lose_no_accuracy():
    """Softmax ignores a shift shared by all keys; FP8 would round it with them unless K is smoothed first."""
    q, k, v = qkv()
    settings = FpsSettings("fp8", 0.0, tile=(1, 4, 4))
    exact = sdpa(q, k, v)
    plain = relative_error(fps_attention(q, k, v, (3, 5, 6), settings), exact)
    shifted = relative_error(fps_attention(q, k + 8.0, v, (3, 5, 6), settings), exact)
    assert shifted < 1.5 * plain + 1e-3


def test_auto_tiles_at_sparsity_zero_are_runs_of_tokens_that_barely_pad():
    grid = (21, 45, 80)                                                   # Wan 720p: 3D tiles pad rows 45 -> 48
    runs = FpsSettings("fp8", 0.0).layout(grid)
    assert runs.is_runs and runs.tile_tokens == 128 and runs.describe() == "runs of 128 tokens"
    assert runs.num_tiles == math.ceil(21 * 45 * 80 / 128) and runs.slots - runs.tokens < 128
    assert FpsSettings("fp8", 0.0).layout(grid).num_tiles < TileLayout(*grid, choose_tile(*grid)).num_tiles
    assert FpsSettings("fp8", 0.5).layout(grid).tile == (1, 8, 16)        # a pattern needs 3D neighbours
    assert FpsSettings("fp8", 0.0, tile=(1, 8, 16)).layout(grid).tile == (1, 8, 16)   # a typed tile is kept
    again = FpsSettings("fp8", 0.0).layout(grid)                          # one layout per shape, tables made once
    assert again is runs and again.source("cpu") is runs.source("cpu")
    q, k, v = qkv()
    small = FpsSettings("fp8", 0.0).layout((3, 5, 6))
    assert small.num_tiles == 1 and small.counts("cpu").tolist() == [90]
    out = fps_attention(q, k, v, (3, 5, 6), FpsSettings("fp8", 0.0))
    assert 0.005 < relative_error(out, sdpa(q, k, v)) < 0.08               # quantised, and close


def test_a_text_prefix_gets_its_own_tiles_kept_by_every_query_and_attending_to_all():
    layout = TileLayout(3, 5, 6, (1, 4, 4), prefix=20)                  # 20 text tokens, then the grid
    assert layout.tokens == 110 and layout.prefix_tiles == 2 and layout.num_tiles == 14
    x = torch.arange(layout.tokens)
    tiled = layout.to_tiles(x, 0).view(layout.num_tiles, layout.tile_tokens)
    assert torch.equal(layout.from_tiles(tiled.reshape(-1), 0), x)
    assert tiled[0].tolist() == list(range(16)) and tiled[1, :4].tolist() == [16, 17, 18, 19]
    assert layout.counts("cpu").tolist()[:3] == [16, 4, 16] and tiled[2, 0] == 20   # grid tiles start after it
    keep = window_pattern(layout, 0.6)
    assert keep[:, :2].all() and keep[:2].all()
    q, k, v = qkv(layout)
    out = fps_attention(q, k, v, (3, 5, 6), FpsSettings("bf16", 0.6, tile=(1, 4, 4)), prefix=20)
    tile_of = layout.from_tiles(torch.arange(layout.slots) // layout.tile_tokens, 0)
    assert torch.allclose(out, sdpa(q, k, v, keep[tile_of][:, tile_of]), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="prefix"):
        fps_attention(q, k, v, (3, 5, 6), FpsSettings("bf16", 0.6, tile=(1, 4, 4)), prefix=19)


def test_reference_chunks_do_not_change_the_result():
    q, k, v = (LAYOUT.to_tiles(x, 1) for x in qkv())
    keep = window_pattern(LAYOUT, 0.5)
    whole = tile_attention_reference(q, k, v, LAYOUT, keep, "fp8")
    chunked = tile_attention_reference(q, k, v, LAYOUT, keep, "fp8", chunk_elements=1)
    assert torch.equal(whole, chunked)


def test_settings_and_dense_steps_are_validated():
    for bad in (dict(precision="int8"), dict(pattern="radial"), dict(sparsity=1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FpsSettings(**bad)
    assert parse_percent_ranges("0-20, 80-100") == ((0.0, 0.2), (0.8, 1.0)) and parse_percent_ranges("") == ()
    for bad in ("20", "60-40", "0-120", "a-b"):
        with pytest.raises(ValueError, match="dense_steps"):
            parse_percent_ranges(bad)


def test_an_unknown_backend_is_an_error():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="backend: 'cuda' is unknown"):
        fps_attention(q, k, v, (3, 5, 6), FpsSettings("bf16", 0.0, tile=(1, 4, 4)), backend="cuda")


def test_kernel_configs_fit_each_gpu_generation():
    """Hopper keeps the measured configs; GPUs with ~100 KB of shared memory per multiprocessor get at most 2 stages
    (2 stages of 128-token FP8 K and V tiles plus Q: 80 KB)."""
    from comfyui_fis.fis_core.fps.tuning import LARGE_SHARED_MEMORY, kernel_configs
    assert kernel_configs((9, 0)) == LARGE_SHARED_MEMORY == ((8, 2), (8, 3), (8, 4), (4, 3))
    for small in ((8, 9), (12, 0), (8, 6)):
        stages = [s for _, s in kernel_configs(small)]
        assert max(stages) <= 2 and 16 * 1024 + max(stages) * 2 * 16 * 1024 <= 100 * 1024
