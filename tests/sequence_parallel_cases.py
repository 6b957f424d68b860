"""What each rank runs in tests/test_sequence_parallel.py (imported by the spawned CPU processes of
:mod:`sequence_parallel_harness`). Each case samples the same tiny Wan model twice on every rank: once as one
process (no sequence parallelism), once with Raylight's Ulysses forwards (its injector, the xFuser stand-in);
every rank returns both latents.
"""
from __future__ import annotations

import torch

from sequence_parallel_harness import StandInLongContextAttention, inject_raylight, install_xfuser_stand_in
from tiny_models import fis, sample, text, tiny_wan

#: sparse blocks 1 and 2 of 4, two groups (each step computes frames {0, 2, 4} or {1, 3})
SETTINGS = dict(sparse_blocks="1,2", groups=2, interpolation="corrected")
STEPS = 3


def _wan_pair(world: int, rank: int, raylight_src, *, height: int, frames: int = 5, ref: bool = False, settings=None):
    settings = SETTINGS if settings is None else settings
    latent = torch.randn(1, 16, frames, height, 8, generator=torch.Generator().manual_seed(3))
    extra = {"reference_latents": [torch.randn(1, 16, 1, height, 8, generator=torch.Generator().manual_seed(4))]} if ref else {}
    positive = text(**extra)
    build = lambda: tiny_wan(num_layers=4, dim=128 * world, ref_conv=ref, seed=0)  # noqa: E731  (one head per rank)
    single = build()
    out = {"single_dense": sample(single, latent, positive, steps=STEPS),
           "single_fis": sample(fis(single, **settings), latent, positive, steps=STEPS)}
    install_xfuser_stand_in(world, rank)
    sharded = build()
    inject_raylight(sharded, raylight_src)
    out["sp_dense"] = sample(sharded, latent, positive, steps=STEPS)
    StandInLongContextAttention.calls.clear()
    out["sp_fis"] = sample(fis(sharded, **settings), latent, positive, steps=STEPS)
    out["attention_tokens"] = sorted(set(StandInLongContextAttention.calls))
    return out


def wan_even(world, rank, raylight_src):
    """12 tokens a frame (a 6x8 latent), 5 frames: 60 tokens, chunks of 30 (2 ranks) or 20 (3 ranks) cut frames in
    two; the subsets (36 and 24 tokens) divide evenly."""
    return _wan_pair(world, rank, raylight_src, height=6)


def wan_reference(world, rank, raylight_src):
    """As :func:`wan_even`, behind a reference image's 12 tokens (Wan's ref_conv): 72 tokens."""
    return _wan_pair(world, rank, raylight_src, height=6, ref=True)


def wan_padded(world, rank, raylight_src):
    """16 tokens a frame (8x8), 5 frames: 80 tokens; on 3 ranks Raylight pads the sequence by 1 and the subset
    {1, 3} (32 tokens) by 1."""
    return _wan_pair(world, rank, raylight_src, height=8)


def fps_ulysses(world, rank, raylight_src):
    """FPS's attention override given this rank's chunk of q, k, v (2 heads a rank) under the xFuser stand-in,
    against the same override given the whole sequence in one process: the whole grid behind a 16-token reference
    image (96 tokens), a FIS sparse block's 3 frames (64 tokens), and the whole grid with no prefix (80 tokens: on
    3 ranks one padding token, which the FPS path leaves out)."""
    from comfyui_fis.fis_core.fps import FpsSettings
    from comfyui_fis.nodes.patching.call_state import FPS_CALL
    from comfyui_fis.nodes.families import FrameGrid, WanFamily
    from comfyui_fis.nodes.patching.fps import FpsCall, FpsOverride
    from comfyui_fis.nodes.patching.sequence_parallel import current_shard

    def original(*args, **kwargs):
        raise AssertionError("the video self-attention ran the original attention")

    heads, dim = 2 * world, 16
    override = FpsOverride(FpsSettings(sparsity=0.5), (), WanFamily())
    results = {}
    install_xfuser_stand_in(world, rank)
    shard = current_shard()
    for name, prefix, sizes in (("reference", 16, (5, 4, 4)), ("sparse_block", 16, (3, 4, 4)), ("padded", 0, (5, 4, 4))):
        length = prefix + sizes[0] * sizes[1] * sizes[2]
        g = torch.Generator().manual_seed(len(name))
        q, k, v = (torch.randn(1, length, heads * dim, generator=g) for _ in range(3))
        options = {"grid_sizes": sizes}
        with FPS_CALL.of_call(override, FpsCall(False, FrameGrid(5, 4, 4, prefix))):
            whole = override(original, q, k, v, heads, transformer_options=options)
            mine = override(original, *(shard.split(t) for t in (q, k, v)), heads, transformer_options=options)
        results[name] = (shard.split(whole), mine)
    return results
