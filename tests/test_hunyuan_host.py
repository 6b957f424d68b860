"""FIS on real ComfyUI HunyuanVideo 1.5 and 1.0 models (tiny, random weights), sampled on the CPU: what is
HunyuanVideo's own (the contract every family keeps, on 1.5, is in test_family_contract.py)."""
import pytest
import torch

from tiny_models import (fis, hunyuan_blocks, hunyuan_text, hv15_latent, record_attention_tokens, relative_error, sample,
                         tiny_hunyuan_video)

TEXT, BYT5 = 8, 4


@pytest.fixture(scope="module")
def hv15(host):
    return tiny_hunyuan_video("1.5", depth=6)


@pytest.fixture(scope="module")
def hv10(host):
    return tiny_hunyuan_video("1.0", depth=3, single_depth=3)


def latent10(frames=9, batch=1, seed=3):
    return torch.randn(batch, 16, frames, 8, 8, generator=torch.Generator().manual_seed(seed))   # 16 tokens per frame


def test_detected_as_hunyuan_video_15(hv15, hv10):
    assert type(hv15.model).__name__ == "HunyuanVideo15"
    assert type(hv10.model).__name__ == "HunyuanVideo"


def test_15_sparse_blocks_cut_the_image_stream_only(hv15):
    """Image tokens shrink to the frame subset; the text stream (LLM + byT5 tokens) stays whole."""
    text_lengths = []
    handle = hv15.model.diffusion_model.double_blocks[2].register_forward_pre_hook(
        lambda m, a, k: text_lengths.append((k["txt"].shape[1], k["pe"].shape[2], k["attn_mask"])), with_kwargs=True)
    try:
        out = sample(fis(hv15, sparse_blocks="1-4", groups=3), hv15_latent(9), hunyuan_text(byt5_tokens=BYT5), steps=1)
    finally:
        handle.remove()
    assert torch.isfinite(out).all()
    (txt, pe_len, mask), = text_lengths
    assert txt == TEXT + BYT5 and pe_len == TEXT + BYT5 + 3 * 16 and mask is None


def test_15_image_to_video_anchors_the_given_frame(hv15):
    mask = torch.ones(1, 1, 9, 4, 4)
    mask[:, :, 0] = 0.0   # HunyuanVideo15ImageToVideo: 0 where the frame is given
    cond = hunyuan_text(byt5_tokens=BYT5, concat_latent_image=torch.randn(1, 32, 9, 4, 4), concat_mask=mask)
    with record_attention_tokens(hunyuan_blocks(hv15)) as calls:
        out = sample(fis(hv15), hv15_latent(9), cond, steps=1)
    assert torch.isfinite(out).all()
    assert [f for _, _, f in calls if f is not None] == [(0, 2, 4, 6, 8), (0, 1, 3, 5, 7)] * 2
    with record_attention_tokens(hunyuan_blocks(hv15)) as calls:   # a text-to-video run has no anchor
        sample(fis(hv15), hv15_latent(9), hunyuan_text(byt5_tokens=BYT5), steps=1)
    assert [f for _, _, f in calls if f is not None] == [(0, 2, 4, 6, 8), (1, 3, 5, 7)] * 2


@pytest.mark.parametrize("in_channels, model_class, image", [(33, "HunyuanVideoI2V", True),
                                                             (32, "HunyuanVideoSkyreelsI2V", True),
                                                             (32, "HunyuanVideoSkyreelsI2V", False)])
def test_10_image_to_video_anchors_the_given_frame(host, in_channels, model_class, image):
    """HunyuanVideo 1.0 I2V concatenates [image, inverted mask]; SkyReels I2V the image latents alone, zero past the
    given frame: ``auto`` anchors the given frame in both (SkyReels' last image channel was read as a mask, which
    anchored the frame or not depending on its values: not here, whose latent is small). Without an image SkyReels
    concatenates the sampled latent itself (video-to-video): no frame is given."""
    model = tiny_hunyuan_video("1.0", depth=2, single_depth=2, in_channels=in_channels)
    assert type(model.model).__name__ == model_class
    mask = torch.ones(1, 1, 9, 8, 8)
    mask[:, :, 0] = 0.0                                  # 0 where the frame is given
    given = torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 0.3
    cond = hunyuan_text(concat_latent_image=given, concat_mask=mask) if image else hunyuan_text()
    with record_attention_tokens(hunyuan_blocks(model)) as calls:
        sample(fis(model), latent10(9), cond, steps=1)
    assert [f for _, _, f in calls if f is not None] == [(0, 2, 4, 6, 8), (0, 1, 3, 5, 7) if image else (1, 3, 5, 7)]


def test_10_single_blocks_keep_text_and_cut_frames(hv10):
    """Blocks 0-2 are double, 3-5 single (text+image in one sequence)."""
    with record_attention_tokens(hunyuan_blocks(hv10)) as calls:
        out = sample(fis(hv10, sparse_blocks="1-4"), latent10(9), hunyuan_text(), steps=1)
    assert torch.isfinite(out).all()
    tokens = [t for _, t, _ in calls]
    assert tokens == [9 * 16, 5 * 16, 4 * 16, TEXT + 5 * 16, TEXT + 4 * 16, TEXT + 9 * 16]
    assert relative_error(out, sample(hv10, latent10(9), hunyuan_text(), steps=1)) < 0.2


def test_10_guiding_frame_modulation_follows_the_subset(hv10):
    """I2V 'token replace': the guiding first frame keeps its own modulation range in every sparse block."""
    seen = {}
    dm = hv10.model.diffusion_model

    def hook(index):
        def record(module, args, kwargs):
            seen.setdefault(index, kwargs["modulation_dims_img"])
        return record
    handles = [dm.double_blocks[i].register_forward_pre_hook(hook(i), with_kwargs=True) for i in (1, 2)]
    cond = hunyuan_text(guiding_frame_index=0)
    try:
        sample(fis(hv10, sparse_blocks="1-2"), latent10(9), cond, steps=1)
        anchored = dict(seen)
        seen.clear()
        sample(fis(hv10, sparse_blocks="1-2", anchor_frames=""), latent10(9), cond, steps=1)
    finally:
        for handle in handles:
            handle.remove()
    assert anchored == {1: [(0, 16, 0), (16, None, 1)], 2: [(0, 16, 0), (16, None, 1)]}
    assert seen == {1: [(0, 16, 0), (16, None, 1)], 2: [(0, None, 1)]}   # block 2 computes frames 1,3,5,7 only


@pytest.mark.parametrize("widgets, message", [
    (dict(sparse_blocks="6"), "sparse_blocks: block 6 does not exist; this model has blocks 0-5"),
    (dict(sparse_blocks="3-1"), "runs backwards"),
    (dict(groups=0), "groups: must be at least 1"),
])
def test_bad_input(hv10, widgets, message):
    with pytest.raises(ValueError, match=message):
        fis(hv10, **widgets)


def test_10_attention_mask_follows_the_subset(hv10):
    """A padded prompt gives an attention mask over text+image; sparse blocks get it cut to their tokens."""
    mask_lengths = {}
    dm = hv10.model.diffusion_model

    def hook(index):
        def record(module, args, kwargs):
            mask_lengths[index] = kwargs["attn_mask"].shape[-1]
        return record
    handles = [block.register_forward_pre_hook(hook(i), with_kwargs=True) for i, block in hunyuan_blocks(hv10).items()]
    cond = hunyuan_text(attention_mask=torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]]))
    try:
        out = sample(fis(hv10, sparse_blocks="1-4"), latent10(9), cond, steps=1)
    finally:
        for handle in handles:
            handle.remove()
    assert torch.isfinite(out).all()
    assert mask_lengths == {0: TEXT + 144, 1: TEXT + 80, 2: TEXT + 64, 3: TEXT + 80, 4: TEXT + 64, 5: TEXT + 144}
    assert relative_error(out, sample(hv10, latent10(9), cond, steps=1)) < 0.2
