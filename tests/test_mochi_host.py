"""FIS on a real ComfyUI Mochi 1 model (tiny, random weights), sampled on the CPU."""
import pytest
import torch

from tiny_models import fis, record_attention_tokens, relative_error, sample, text, tiny_mochi

T = 16  # tokens per latent frame for an 8x8 latent with 2x2 patches
TEXT = 8


@pytest.fixture(scope="module")
def mochi(host):
    return tiny_mochi(depth=6)


def mochi_text(seed=1):
    """Mochi conditioning: a text embedding (64 wide for the tiny model) and its attention mask."""
    return text(seed=seed, tokens=TEXT, dim=64, attention_mask=torch.ones(1, TEXT, dtype=torch.long))


def attention(model):
    return {i: block.attn for i, block in enumerate(model.model.diffusion_model.blocks)}


def latent(frames=9, batch=1, seed=3):
    return torch.randn(batch, 12, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_detected_as_mochi(mochi):
    from comfyui_fis.nodes.families import MochiFamily, find_family
    assert type(mochi.model).__name__ == "GenmoMochi"
    assert isinstance(find_family(mochi.model.diffusion_model), MochiFamily)


@pytest.mark.parametrize("settings", [dict(groups=1), dict(sparse_blocks=""), dict(start_percent=1.0, end_percent=1.0)])
def test_off_is_bit_identical(mochi, settings):
    x, pos, neg = latent(), mochi_text(), mochi_text(seed=2)
    dense = sample(mochi, x, pos, negative=neg, cfg=2.0, steps=2)
    assert torch.equal(dense, sample(fis(mochi, **settings), x, pos, negative=neg, cfg=2.0, steps=2))


def test_input_model_untouched(mochi):
    x = latent()
    before = sample(mochi, x, mochi_text(), steps=1)
    options, wrappers = repr(mochi.model_options), repr(mochi.wrappers)
    patched = fis(mochi)
    assert repr(mochi.model_options) == options and repr(mochi.wrappers) == wrappers
    assert torch.equal(sample(mochi, x, mochi_text(), steps=1), before)
    assert not torch.equal(sample(patched, x, mochi_text(), steps=1), before)


def test_each_sparse_block_processes_exactly_its_tokens_and_rope_rows(mochi):
    """Video tokens shrink to the block's frames, with their RoPE rows; the text tokens stay whole."""
    frames, groups = 9, 3
    seen = {}

    def hook(index):
        def record(module, args, kwargs):
            seen.setdefault(index, (args[2].shape[1], kwargs["rope_cos"], kwargs["rope_sin"]))
        return record
    blocks = mochi.model.diffusion_model.blocks
    handles = [blocks[i].register_forward_pre_hook(hook(i), with_kwargs=True) for i in (0, 2)]
    try:
        with record_attention_tokens(attention(mochi)) as calls:
            sample(fis(mochi, sparse_blocks="1-4", groups=groups), latent(frames), mochi_text(), steps=2)
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == 2 * 6
    expected = {1: (0, 3, 6), 2: (1, 4, 7), 3: (2, 5, 8), 4: (0, 3, 6)}
    for block, tokens, subset in calls:
        assert subset == expected.get(block)
        assert tokens == T * (len(expected[block]) if block in expected else frames)
    sparse = [set(s) for _, _, s in calls[:6] if s is not None]
    for start in range(len(sparse) - groups + 1):   # every frame is refreshed within `groups` sparse blocks
        assert set().union(*sparse[start:start + groups]) == set(range(frames))
    (dense_text, dense_cos, dense_sin), (text_tokens, cos, sin) = seen[0], seen[2]
    kept = torch.arange(frames * T).view(frames, T)[[1, 4, 7]].flatten()
    assert text_tokens == dense_text == TEXT
    assert torch.equal(cos, dense_cos[kept]) and torch.equal(sin, dense_sin[kept])


def test_auto_blocks_are_all_but_first_and_last(mochi):
    with record_attention_tokens(attention(mochi)) as calls:
        sample(fis(mochi), latent(9), mochi_text(), steps=1)
    assert [tokens // T for _, tokens, _ in calls] == [9, 5, 4, 5, 4, 9]


def test_cfg_batch_of_two(mochi):
    """Mochi's blocks norm each token's update and have no shift modulation or MLP bias, so in a random model on
    noise neighbouring frames share little of their updates, and interpolation recovers less of a skipped
    frame's update than in the tiny Wan (whose updates share their biases): the deviation is about 0.23."""
    x, pos, neg = latent(9, batch=2), mochi_text(), mochi_text(seed=2)
    with record_attention_tokens({1: attention(mochi)[1]}) as calls:
        out = sample(fis(mochi), x, pos, negative=neg, cfg=3.0, steps=2)
    assert [tokens for _, tokens, _ in calls] == [5 * T, 5 * T]
    assert 0 < relative_error(out, sample(mochi, x, pos, negative=neg, cfg=3.0, steps=2)) < 0.35


def test_block_past_the_depth_is_refused(mochi):
    with pytest.raises(ValueError, match="sparse_blocks: block 6 does not exist; this model has blocks 0-5"):
        fis(mochi, sparse_blocks="2-6")
