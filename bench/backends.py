"""Attention backends users run, for the benchmarks: each as a function of [B, L, H, D] bf16 tensors, and the
host's own switch for each (ComfyUI's flags, or an ``optimized_attention_override`` where the host has none).

Each maker returns (function, version or None); the ``_lse`` makers' functions also return the softmax's log-sum-exp,
for attention over keys taken in parts; it raises (ImportError, RuntimeError, ...) where its backend is not
installed or has no kernel for this GPU, and the benchmarks name the reason and go on.
"""
from __future__ import annotations

import importlib
import sys

import torch
import torch.nn.functional as F

#: ``bench/speed.py --attention`` -> the host's flag that selects it (set before the host imports its attention);
#: None: the host's default (SDPA), or an override set by :func:`host_override`.
HOST_FLAGS = {"sdpa": None, "sage": "use_sage_attention", "ck": "use_ck_attention", "fa3": None}


def sdpa(kind):
    """PyTorch's SDPA with its backend ``kind`` (an ``SDPBackend`` name)."""
    backend = getattr(torch.nn.attention.SDPBackend, kind)

    def run(q, k, v):
        with torch.nn.attention.sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    return run, None


def sage(smooth_k: bool = True):
    """SageAttention; ComfyUI's ``--use-sage-attention`` calls it with ``smooth_k`` off."""
    from sageattention import sageattn
    version = getattr(importlib.import_module("sageattention"), "__version__", None)
    return lambda q, k, v: sageattn(q, k, v, tensor_layout="NHD", is_causal=False, smooth_k=smooth_k), version


def comfy_kitchen_int8():
    import comfy_kitchen
    if not comfy_kitchen.int8_attention_is_available():
        raise ImportError("comfy_kitchen has no INT8 attention for this GPU (needs its CUDA build)")
    return lambda q, k, v: comfy_kitchen.int8_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2), None


def fa3_interface():
    """``fa3_fwd_interface`` (the fa3-fwd wheel), whose import asks for ``flash_attn_config``; the wheel ships it as
    ``fa3_fwd_config``."""
    if "flash_attn_config" not in sys.modules:
        sys.modules["flash_attn_config"] = importlib.import_module("fa3_fwd_config")
    return importlib.import_module("fa3_fwd_interface")


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def fa3_bf16():
    fa3 = fa3_interface()
    return lambda q, k, v: _first(fa3.flash_attn_func(q, k, v)), None


def fa3_bf16_lse():
    """FA3 bf16 returning (out, the softmax's log-sum-exp [B, H, L] float32, natural log)."""
    fa3 = fa3_interface()
    return lambda q, k, v: tuple(fa3.flash_attn_func(q, k, v, return_attn_probs=True)[:2]), None


def sdpa_flash_lse():
    """PyTorch's flash kernel (on the CPU its CPU one) returning (out, the softmax's log-sum-exp [B, H, L] float32)."""
    def run(q, k, v):
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        kernel = (torch.ops.aten._scaled_dot_product_flash_attention if q.is_cuda
                  else torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
        out, lse = kernel(q, k, v)[:2]
        return out.transpose(1, 2), lse[..., :q.shape[2]]
    return run, None


def fp8_per_head(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [B, L, H, D] -> (e4m3, float32 descale [B, H]): one scale per (item, head), as FA3's FP8 takes."""
    amax = x.abs().amax(dim=(1, 3)).float().clamp(min=1e-12)
    scale = amax / 448.0
    return (x / scale[:, None, :, None].to(x.dtype)).to(torch.float8_e4m3fn), scale


def fa3_fp8():
    fa3 = fa3_interface()

    def run(q, k, v):
        (q8, qs), (k8, ks), (v8, vs) = (fp8_per_head(x) for x in (q, k, v))
        return _first(fa3.flash_attn_func(q8, k8, v8, q_descale=qs, k_descale=ks, v_descale=vs)).to(q.dtype)
    return run, None


def host_override(name: str):
    """The ``optimized_attention_override`` that makes the host run backend ``name`` where it has no flag for it
    (FA3: the host's ``--use-flash-attention`` takes the FlashAttention-2 package), else None. FA3 goes in through the
    pack's own adapter (the one dense FPS hands its calls to), so the rows measure what users run."""
    if name != "fa3":
        return None
    from comfyui_fis.nodes.patching.dense_attention import fa3_attention
    attention = fa3_attention(fa3_interface())

    def override(func, q, k, v, heads, mask=None, **kwargs):
        if mask is not None or q.dtype not in (torch.bfloat16, torch.float16):
            return func(q, k, v, heads, mask=mask, **kwargs)
        return attention(q, k, v, heads, **kwargs)
    return override
