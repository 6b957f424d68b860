"""The attention a dense FPS call (sparsity 0, nothing to skip) hands over to, in the order measured by
``bench/attention.py`` (H100, 2026-12-07, Wan-14B 720p self-attention, bf16; README "Against the attention you run"):

============================  ========  ===================
backend                       ms        error per call
============================  ========  ===================
FlashAttention-3, bf16         173       0.3%
FPS's FP8 kernel, dense        183       6.3%
comfy-kitchen INT8             241       1.6%
SageAttention (as ComfyUI)     257       1.3%
PyTorch SDPA (flash)           330       0.2%
============================  ========  ===================

FlashAttention-3 is both faster and 19x more accurate than FPS's kernel, so it takes dense calls where it is installed
(Hopper; the ``flash_attn_interface`` of FA3's own build or the ``fa3-fwd`` wheel). The INT8 backends are 1.3-1.4x
slower than FPS's kernel but 4-5x more accurate, so where the host has one registered it keeps the dense calls too:
adding FPS never trades a user's attention for a less accurate one. Only over SDPA does FPS's kernel take dense calls
(1.8x faster, at its 6.3%). SageAttention 3 (Blackwell) is not measured here; it is listed before SageAttention 2.
"""
from __future__ import annotations

import functools
import importlib
import sys
from typing import Callable, NamedTuple

import torch

#: The host's registered attention functions a dense FPS call runs where one is installed, in this order.
REGISTERED_ORDER = ("comfy_kitchen_int8", "sage3", "sage")
#: FlashAttention-3's Python interfaces: FA3's own build, then the ``fa3-fwd`` wheel's.
FA3_MODULES = ("flash_attn_interface", "fa3_fwd_interface")


class DenseRoute(NamedTuple):
    """An attention with ComfyUI's signature (``q, k, v, heads, ...``) and how the log names it."""

    attention: Callable
    name: str


def fa3_interface():
    """FlashAttention-3's module, or None where it is not installed. The ``fa3-fwd`` wheel's interface imports
    ``flash_attn_config``, which the wheel ships as ``fa3_fwd_config``."""
    for name in FA3_MODULES:
        try:
            if name == "fa3_fwd_interface" and "flash_attn_config" not in sys.modules:
                sys.modules["flash_attn_config"] = importlib.import_module("fa3_fwd_config")
            return importlib.import_module(name)
        except Exception:    # not installed, or built for another torch: the next one, or none
            continue
    return None


def fa3_attention(interface) -> Callable:
    """FlashAttention-3 with ComfyUI's attention signature, for unmasked attention (FPS hands over no other)."""
    def attention(q, k, v, heads, skip_reshape=False, skip_output_reshape=False, **kwargs):
        if skip_reshape:                                   # [B, H, L, D]
            q4, k4, v4 = (x.transpose(1, 2) for x in (q, k, v))
        else:                                              # [B, L, H * D]
            q4, k4, v4 = (x.view(x.shape[0], x.shape[1], heads, -1) for x in (q, k, v))
        out = interface.flash_attn_func(q4, k4, v4, softmax_scale=kwargs.get("scale"))
        out = out[0] if isinstance(out, tuple) else out   # some builds also return the softmax's log-sum-exp
        return out.transpose(1, 2) if skip_output_reshape else out.reshape(out.shape[0], out.shape[1], -1)
    return attention


@functools.lru_cache(maxsize=8)
def dense_route(device: torch.device, dtype: torch.dtype) -> DenseRoute | None:
    """Where a dense FPS call on ``device`` in ``dtype`` goes: FlashAttention-3 (a Hopper GPU, bf16 or fp16), else the
    first of :data:`REGISTERED_ORDER` the host has, else None (FPS's kernel). Looked up once per device and dtype: the host's
    registry is filled when it and its node packs load."""
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16) and torch.cuda.get_device_capability(device)[0] == 9:
        interface = fa3_interface()
        if interface is not None:
            return DenseRoute(fa3_attention(interface), "FlashAttention-3")
    from comfy.ldm.modules.attention import REGISTERED_ATTENTION_FUNCTIONS   # here: importing it picks the device
    return next((DenseRoute(REGISTERED_ATTENTION_FUNCTIONS[name], f"ComfyUI's '{name}'") for name in REGISTERED_ORDER
                 if name in REGISTERED_ATTENTION_FUNCTIONS), None)
