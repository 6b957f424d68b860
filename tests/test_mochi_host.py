"""FIS on a real ComfyUI Mochi 1 model (tiny, random weights), sampled on the CPU: what is Mochi's own (the contract
every family keeps is in test_family_contract.py)."""
import pytest
import torch

from tiny_models import TOKENS_PER_FRAME as T, MOCHI_TEXT as TEXT, fis, mochi_latent, mochi_text, sample, tiny_mochi


@pytest.fixture(scope="module")
def mochi(host):
    return tiny_mochi(depth=6)


def test_detected_as_mochi(mochi):
    from comfyui_fis.nodes.families import MochiFamily, find_family
    assert type(mochi.model).__name__ == "GenmoMochi"
    assert isinstance(find_family(mochi.model.diffusion_model), MochiFamily)


def test_sparse_blocks_cut_the_rope_rows_and_keep_the_text(mochi):
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
        sample(fis(mochi, sparse_blocks="1-4", groups=groups), mochi_latent(frames), mochi_text(), steps=2)
    finally:
        for handle in handles:
            handle.remove()
    (dense_text, dense_cos, dense_sin), (text_tokens, cos, sin) = seen[0], seen[2]
    kept = torch.arange(frames * T).view(frames, T)[[1, 4, 7]].flatten()
    assert text_tokens == dense_text == TEXT
    assert torch.equal(cos, dense_cos[kept]) and torch.equal(sin, dense_sin[kept])
