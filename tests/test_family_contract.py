"""The contract every family FIS supports keeps, on each family's tiny model (``tiny_models.FAMILIES``): off is
bit-identical, the input model is untouched, a sparse block computes exactly its frames, ``auto`` leaves the first
and last block dense, the defaults stay close to dense with CFG and a batch of two, and a block past the depth is
refused. A new family gets all of it by adding its ``TinyFamily``."""
import pytest
import torch

from tiny_models import FAMILIES, TOKENS_PER_FRAME as T, fis, record_attention_tokens, relative_error, sample


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda family: family.name)
def family(request, host):
    return request.param


@pytest.fixture(scope="module")
def model(family):
    return family.build()


@pytest.mark.parametrize("settings", [dict(groups=1), dict(sparse_blocks=""), dict(start_percent=1.0, end_percent=1.0)])
def test_off_is_bit_identical(family, model, settings):
    x, pos, neg = family.latent(), family.cond(), family.cond(seed=2)
    dense = sample(model, x, pos, negative=neg, cfg=2.0, steps=2)
    assert torch.equal(dense, sample(fis(model, **settings), x, pos, negative=neg, cfg=2.0, steps=2))


def test_input_model_untouched(family, model):
    x = family.latent()
    before = sample(model, x, family.cond(), steps=1)
    options, wrappers = repr(model.model_options), repr(model.wrappers)
    patched = fis(model)
    assert patched is not model
    assert repr(model.model_options) == options and repr(model.wrappers) == wrappers
    assert torch.equal(sample(model, x, family.cond(), steps=1), before)
    assert not torch.equal(sample(patched, x, family.cond(), steps=1), before)


def test_each_sparse_block_processes_exactly_its_tokens(family, model):
    frames, groups = 9, 3
    with record_attention_tokens(family.attention(model)) as calls:
        sample(fis(model, sparse_blocks="1-4", groups=groups), family.latent(frames), family.cond(), steps=2)
    assert len(calls) == 2 * 6
    group_frames = [(0, 3, 6), (1, 4, 7), (2, 5, 8)]
    for step in range(2):       # the k-th sparse block takes group (k + step) mod G: the groups rotate
        expected = {block: group_frames[(k + step) % groups] for k, block in enumerate(range(1, 5))}
        for block, tokens, subset in calls[6 * step:6 * step + 6]:
            assert subset == expected.get(block)
            assert tokens == T * (len(expected[block]) if block in expected else frames)
        sparse = [set(s) for _, _, s in calls[6 * step:6 * step + 6] if s is not None]
        for start in range(len(sparse) - groups + 1):   # every frame is refreshed within `groups` sparse blocks
            assert set().union(*sparse[start:start + groups]) == set(range(frames))


def test_auto_blocks_are_all_but_first_and_last(family, model):
    with record_attention_tokens(family.attention(model)) as calls:
        sample(fis(model), family.latent(9), family.cond(), steps=1)
    assert [tokens // T for _, tokens, _ in calls] == [9, 5, 4, 5, 4, 9]


def test_defaults_stay_close_to_dense_with_cfg_and_a_batch_of_two(family, model):
    x, pos, neg = family.latent(9, batch=2), family.cond(), family.cond(seed=2)
    with record_attention_tokens({1: family.attention(model)[1]}) as calls:
        out = sample(fis(model), x, pos, negative=neg, cfg=3.0, steps=2)
    assert [tokens for _, tokens, _ in calls] == [5 * T, 4 * T]   # the even frames, then (rotated) the odd ones
    assert torch.isfinite(out).all()
    assert 0 < relative_error(out, sample(model, x, pos, negative=neg, cfg=3.0, steps=2)) < family.tolerance


def test_a_block_past_the_depth_is_refused(model):
    with pytest.raises(ValueError, match="sparse_blocks: block 6 does not exist; this model has blocks 0-5"):
        fis(model, sparse_blocks="2-6")
