"""The GPU path: a Triton kernel for block-sparse attention over 3D tiles, FP8 or BF16.

One program computes one query tile of one (batch item, head). It walks the kept key tiles of its row
(a list, so skipped tile pairs cost nothing), with an online softmax in float32. With FP8 both matmuls
run on e4m3 tensor cores (Hopper, Ada): S = (Q8 K8^T) * q_scale * k_scale, and P is quantised as
P * 448 for the product with V8, whose tile scale / 448 multiplies the result. V8 is stored transposed
([B, H, D, slots]), the operand layout FP8 tensor-core matmuls need. Import this module only where
Triton is installed.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .quant import quantize_tiles
from .tiles import TileLayout


def _configs():
    return [triton.Config({}, num_warps=w, num_stages=s) for w, s in ((8, 2), (8, 3), (4, 3))]


@triton.autotune(configs=_configs(), key=["SLOTS", "HEADS", "IS_FP8", "BLOCK", "HEAD_DIM"])
@triton.jit
def _tile_attention_kernel(Q, K, V, QS, KS, VS, KV_LIST, KV_COUNT, TILE_COUNT, OUT,
                           sm_scale, list_bh_stride, list_width,
                           stride_qb, stride_qn, stride_qh,
                           stride_kb, stride_kn, stride_kh,
                           stride_vb, stride_vh, stride_vn, stride_vd,
                           stride_ob, stride_on, stride_oh,
                           SLOTS, HEADS: tl.constexpr, IS_FP8: tl.constexpr, BLOCK: tl.constexpr,
                           HEAD_DIM: tl.constexpr):
    tile_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HEADS
    h = bh % HEADS
    num_tiles = SLOTS // BLOCK
    rows = tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + (tile_m * BLOCK + rows)[:, None] * stride_qn + dims[None, :])
    qk_scale = sm_scale * 1.4426950408889634
    if IS_FP8:
        qk_scale = qk_scale * tl.load(QS + (b * num_tiles + tile_m) * HEADS + h)
    m_i = tl.full([BLOCK], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    list_row = KV_LIST + bh * list_bh_stride + tile_m * list_width
    count = tl.load(KV_COUNT + bh * (list_bh_stride // list_width) + tile_m)
    k_base = K + b * stride_kb + h * stride_kh + dims[:, None] + rows[None, :] * stride_kn       # K^T block
    v_base = V + b * stride_vb + h * stride_vh + rows[:, None] * stride_vn + dims[None, :] * stride_vd
    for j in range(0, count):
        tile_n = tl.load(list_row + j)
        kt = tl.load(k_base + tile_n * BLOCK * stride_kn)
        v = tl.load(v_base + tile_n * BLOCK * stride_vn)
        s = tl.dot(q, kt)
        if IS_FP8:
            s = s * (qk_scale * tl.load(KS + (b * num_tiles + tile_n) * HEADS + h))
        else:
            s = s * qk_scale
        valid = tl.load(TILE_COUNT + tile_n)
        if valid < BLOCK:
            s = tl.where(rows[None, :] < valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        if IS_FP8:
            pv = tl.dot((p * 448.0).to(tl.float8e4nv), v)
            v_scale = tl.load(VS + (b * num_tiles + tile_n) * HEADS + h) * (1.0 / 448.0)
            acc = acc * alpha[:, None] + pv * v_scale
        else:
            acc = acc * alpha[:, None]
            acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(OUT + b * stride_ob + h * stride_oh + (tile_m * BLOCK + rows)[:, None] * stride_on + dims[None, :],
             out.to(OUT.dtype.element_ty))


def tile_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
                          kv_list: torch.Tensor, kv_count: torch.Tensor, precision: str,
                          scale: float | None = None) -> torch.Tensor:
    """Attention of ``q``, ``k``, ``v`` [B, slots, H, D] (CUDA, in tile order) over the kept key tiles
    ``kv_list`` [1 or B*H, Tq, K] / ``kv_count`` [1 or B*H, Tq] (see ``mask.kept_lists``). Returns
    [B, slots, H, D] in ``q``'s dtype."""
    b, n, h, d = q.shape
    block = layout.tile_tokens
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = torch.empty_like(q)
    is_fp8 = precision == "fp8"
    if is_fp8:
        (q, qs), (k, ks), (v, vs) = (quantize_tiles(x, block) for x in (q, k, v))
        v = v.permute(0, 2, 3, 1).contiguous()                  # [B, H, D, slots]: the FP8 operand layout
        stride_v = (v.stride(0), v.stride(1), v.stride(3), v.stride(2))
    else:
        q, k, v = (x.contiguous() for x in (q, k, v))
        qs = ks = vs = torch.empty(1, device=q.device)
        stride_v = (v.stride(0), v.stride(2), v.stride(1), v.stride(3))
    list_bh_stride = 0 if kv_list.shape[0] == 1 else kv_list.shape[1] * kv_list.shape[2]
    grid = (layout.num_tiles, b * h)
    _tile_attention_kernel[grid](
        q, k, v, qs, ks, vs, kv_list, kv_count, layout.counts(q.device), out,
        scale, list_bh_stride, kv_list.shape[2],
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), *stride_v,
        out.stride(0), out.stride(1), out.stride(2),
        n, HEADS=h, IS_FP8=is_fp8, BLOCK=block, HEAD_DIM=d)
    return out
