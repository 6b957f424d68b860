"""FIS on a real ComfyUI LTX-Video model (tiny, random weights), sampled on the CPU: what is LTX-Video's own (the
contract every family keeps is in test_family_contract.py)."""
import logging

import pytest
import torch

from tiny_models import (TOKENS_PER_FRAME as T, fis, ltxv_attention, ltxv_latent, ltxv_text, record_attention_tokens,
                         relative_error, sample, tiny_ltxv)


@pytest.fixture(scope="module")
def ltxv(host):
    return tiny_ltxv(layers=6)


def first_frame_given(frames=9):
    """The noise mask LTXVImgToVideo sets: one value per frame, 0 on the given first frame."""
    mask = torch.ones(1, 1, frames, 1, 1)
    mask[:, :, 0] = 0.0
    return mask


def test_detected_as_ltxv(ltxv):
    from comfyui_fis.nodes.families import LTXVideoFamily, find_family
    assert type(ltxv.model).__name__ == "LTXV"
    assert isinstance(find_family(ltxv.model.diffusion_model), LTXVideoFamily)


def test_image_to_video_anchors_the_given_frame_and_cuts_per_token_inputs(ltxv):
    """A given first frame makes the timestep per token; a sparse block gets its tokens' timestep and RoPE rows."""
    seen = {}
    blocks = ltxv.model.diffusion_model.transformer_blocks

    def hook(index):
        def record(module, args, kwargs):
            seen.setdefault(index, (kwargs["timestep"], kwargs["pe"][0]))
        return record
    handles = [blocks[i].register_forward_pre_hook(hook(i), with_kwargs=True) for i in (0, 2)]
    try:
        with record_attention_tokens(ltxv_attention(ltxv)) as calls:
            out = sample(fis(ltxv), ltxv_latent(9), ltxv_text(), steps=2, noise_mask=first_frame_given())
    finally:
        for handle in handles:
            handle.remove()
    assert torch.isfinite(out).all()
    even, odd = (0, 2, 4, 6, 8), (0, 1, 3, 5, 7)
    assert [s for _, _, s in calls if s is not None] == [even, odd] * 2 + [odd, even] * 2   # rotated at step 2
    (dense_timestep, dense_rope), (timestep, rope) = seen[0], seen[2]
    kept = torch.arange(9 * T).view(9, T)[[0, 1, 3, 5, 7]].flatten()
    assert dense_timestep.shape[1] == 9 * T   # per token
    assert torch.equal(timestep, dense_timestep[:, kept]) and torch.equal(rope, dense_rope[:, kept])
    with record_attention_tokens(ltxv_attention(ltxv)) as calls:
        sample(fis(ltxv, anchor_frames=""), ltxv_latent(9), ltxv_text(), steps=1, noise_mask=first_frame_given())
    assert [s for _, _, s in calls if s is not None] == [(0, 2, 4, 6, 8), (1, 3, 5, 7)] * 2


def test_a_frame_kept_in_part_is_not_anchored(ltxv):
    """An inpainting mask keeps part of a frame: the rest is generated, so the frame is no anchor (it was, and an
    inpainting mask over every frame made FIS dense); a frame kept whole still is."""
    mask = torch.ones(1, 1, 9, 4, 4)
    mask[:, :, 0] = 0.0
    mask[:, :, 4, :, :2] = 0.0
    with record_attention_tokens(ltxv_attention(ltxv)) as calls:
        sample(fis(ltxv), ltxv_latent(9), ltxv_text(), steps=1, noise_mask=mask)
    assert [s for _, _, s in calls if s is not None] == [(0, 2, 4, 6, 8), (0, 1, 3, 5, 7)] * 2


def guided(strength=0.6):
    """LTXVAddGuide's latent and conditioning: a guide frame appended after the 9 video frames."""
    from comfy_extras.nodes_lt import LTXVAddGuide
    guide = torch.randn(1, 128, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    return LTXVAddGuide.append_keyframe(
        ltxv_text(), ltxv_text(seed=2), 40, ltxv_latent(9), torch.ones(1, 1, 9, 1, 1), guide, strength, (8, 32, 32))


def sample_guided(ltxv, pos, neg, x, noise_mask, caplog):
    """The FIS run and the dense run of a guided latent, the tokens of each attention call of the FIS run, and the
    attention masks blocks 0 (dense) and 1 (sparse) got."""
    masks = {}

    def hook(index):
        def record(module, args, kwargs):
            masks.setdefault(index, kwargs.get("mask"))
        return record
    attention = ltxv_attention(ltxv)
    handles = [attention[i].register_forward_pre_hook(hook(i), with_kwargs=True) for i in (0, 1)]
    try:
        with caplog.at_level(logging.INFO, "ComfyUI-FIS"), record_attention_tokens(attention) as calls:
            out = sample(fis(ltxv), x, pos, negative=neg, cfg=2.0, steps=1, noise_mask=noise_mask)
    finally:
        for handle in handles:
            handle.remove()
    dense_out = sample(ltxv, x, pos, negative=neg, cfg=2.0, steps=1, noise_mask=noise_mask)
    return out, dense_out, calls, masks


def test_guide_frames_are_computed_by_every_block(ltxv, caplog):
    """LTXVAddGuide appends a guide frame after the video. It is no video frame (nor an anchor)."""
    pos, neg, x, noise_mask = guided()
    out, dense_out, calls, _ = sample_guided(ltxv, pos, neg, x, noise_mask, caplog)
    assert x.shape[2] == 10
    assert "anchors none, 9 latent frames" in caplog.text
    assert [tokens for _, tokens, _ in calls] == [10 * T, 6 * T, 5 * T, 6 * T, 5 * T, 10 * T]
    assert [s for _, _, s in calls if s is not None] == [(0, 2, 4, 6, 8), (1, 3, 5, 7)] * 2
    assert 0 < relative_error(out, dense_out) < 0.1


def test_a_guide_attention_mask_is_cut_to_the_sparse_tokens(ltxv, caplog):
    """With a guide's strength below 1 the model also biases the attention between frames and guide (in hosts
    whose LTXVAddGuide adds a guide attention entry), and a sparse block gets that mask cut to its tokens."""
    import comfy_extras.nodes_lt
    if not hasattr(comfy_extras.nodes_lt, "_append_guide_attention_entry"):
        pytest.skip("this ComfyUI has no guide attention mask for LTX-Video")
    pos, neg, x, noise_mask = guided()
    pos, neg = comfy_extras.nodes_lt._append_guide_attention_entry(pos, neg, T, [1, 4, 4], strength=0.6)
    out, dense_out, calls, masks = sample_guided(ltxv, pos, neg, x, noise_mask, caplog)
    assert [s for _, _, s in calls if s is not None] == [(0, 2, 4, 6, 8), (1, 3, 5, 7)] * 2
    dense, sparse = masks[0], masks[1]
    kept = torch.cat([torch.arange(9 * T).view(9, T)[0::2].flatten(), torch.arange(9 * T, 10 * T)])
    assert (dense.guide_start, sparse.guide_start, sparse.tracked_count) == (9 * T, 5 * T, T)
    assert torch.equal(sparse.noisy_mask, dense.noisy_mask[..., kept])
    assert torch.equal(sparse.tracked_mask, dense.tracked_mask[..., kept])
    assert 0 < relative_error(out, dense_out) < 0.1
