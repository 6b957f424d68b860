"""The GPU path: Triton kernels for block-sparse attention over 3D tiles, FP8 or BF16.

``_quantize_kernel`` gathers each tile's tokens and writes them in e4m3 with the tile's scale, in one
pass (V transposed, [B, H, D, slots], the operand layout FP8 tensor-core matmuls need).
``_attention_kernel``: one program computes one query tile of one (batch item, head). It walks the kept
key tiles of its row (a list, so skipped tile pairs cost nothing), with an online softmax in float32,
and writes its rows straight to their token positions. With FP8 both matmuls run on e4m3 tensor cores
(Hopper, Ada): S = (Q8 K8^T) * q_scale * k_scale, and P is quantised as P * 448 (the 448 comes in through
the exponent, and cancels against the row sum) for the product with V8. The accumulator is kept in units
of the current V tile's scale, so a new tile's scale folds into the softmax rescaling and the product
accumulates in place. Import this module only where Triton is.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .quant import FP8, FP8_MAX, SCALE_FLOOR
from .tiles import TileLayout
from .tuning import kernel_configs

#: The e4m3 range and the smallest scale, from :mod:`.quant` (a Triton kernel reads module constants only as constexpr).
_FP8_MAX = tl.constexpr(FP8_MAX)
_SCALE_FLOOR = tl.constexpr(SCALE_FLOOR)


@triton.jit
def _quantize_kernel(X, SOURCE, SHIFT, OUT, SCALE, stride_xb, stride_xn, stride_xh, stride_ob, stride_on, stride_oh,
                     stride_od, HEADS: tl.constexpr, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr,
                     HAS_SHIFT: tl.constexpr):
    tile = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HEADS
    h = bh % HEADS
    rows = tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    tokens = tl.load(SOURCE + tile * BLOCK + rows).to(tl.int64)
    x = tl.load(X + b * stride_xb + h * stride_xh + tokens[:, None] * stride_xn + dims[None, :]).to(tl.float32)
    if HAS_SHIFT:                                    # smoothed K: minus its per-(item, head) mean key
        x = x - tl.load(SHIFT + bh * HEAD_DIM + dims)[None, :]
    scale = tl.maximum(tl.max(tl.max(tl.abs(x), 1), 0) / _FP8_MAX, _SCALE_FLOOR)
    tl.store(SCALE + (b * tl.num_programs(0) + tile) * HEADS + h, scale)
    y = tl.clamp(x / scale, -_FP8_MAX, _FP8_MAX).to(tl.float8e4nv)
    slots = (tile * BLOCK + rows).to(tl.int64)
    tl.store(OUT + b * stride_ob + h * stride_oh + slots[:, None] * stride_on + dims[None, :] * stride_od, y)


LOG2_FP8_MAX = math.log2(FP8_MAX)


def _configs():
    """The autotuner's configs for this process's GPU (:mod:`.tuning`)."""
    capability = torch.cuda.get_device_capability() if torch.cuda.is_available() else (9, 0)
    return [triton.Config({}, num_warps=w, num_stages=s) for w, s in kernel_configs(capability)]


@triton.autotune(configs=_configs(), key=["SLOTS", "list_width", "HEADS", "IS_FP8", "PV_FP8", "BLOCK", "HEAD_DIM", "DENSE"])
@triton.jit
def _attention_kernel(Q, K, V, QS, KS, VS, KV_LIST, KV_COUNT, TILE_COUNT, SOURCE, OUT,
                      sm_scale, p_shift, list_bh_stride, list_width,
                      stride_qb, stride_qn, stride_qh,
                      stride_kb, stride_kn, stride_kh,
                      stride_vb, stride_vh, stride_vn, stride_vd,
                      stride_ob, stride_on, stride_oh,
                      SLOTS, HEADS: tl.constexpr, IS_FP8: tl.constexpr, PV_FP8: tl.constexpr, BLOCK: tl.constexpr,
                      HEAD_DIM: tl.constexpr, DENSE: tl.constexpr):
    # DENSE walks every key tile in order; otherwise the kept-tile list. Padding keys are masked behind a
    # branch taken for partial tiles only (dense) or by a bias on every tile (list): on an H100 each is the
    # faster there (FP8, 720p: dense 213 against 222 ms; the list walk 257 against 288 ms at sparsity 0;
    # bench/results/h100_fps_kernel_variants.json).
    tile_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HEADS
    h = bh % HEADS
    num_tiles = SLOTS // BLOCK
    rows = tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + (tile_m * BLOCK + rows).to(tl.int64)[:, None] * stride_qn + dims[None, :])
    qk_scale = sm_scale * 1.4426950408889634
    if IS_FP8:
        qk_scale = qk_scale * tl.load(QS + (b * num_tiles + tile_m) * HEADS + h)
    m_i = tl.full([BLOCK], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    v_unit = sm_scale * 0.0 + 1.0                    # FP8: acc is in units of v_unit (a V tile scale)
    list_row = KV_LIST + bh * list_bh_stride + tile_m * list_width
    if DENSE:
        count = num_tiles
    else:
        count = tl.load(KV_COUNT + bh * (list_bh_stride // list_width) + tile_m)
    k_base = K + b * stride_kb + h * stride_kh + dims[:, None] + rows[None, :] * stride_kn       # K^T block
    v_base = V + b * stride_vb + h * stride_vh + rows[:, None] * stride_vn + dims[None, :] * stride_vd
    for j in range(0, count):
        if DENSE:
            tile_n = j.to(tl.int64)
        else:
            tile_n = tl.load(list_row + j).to(tl.int64)
        kt = tl.load(k_base + tile_n * BLOCK * stride_kn)
        v = tl.load(v_base + tile_n * BLOCK * stride_vn)
        s = tl.dot(q, kt)
        if IS_FP8:
            scale = qk_scale * tl.load(KS + (b * num_tiles + tile_n) * HEADS + h)
        else:
            scale = qk_scale
        valid = tl.load(TILE_COUNT + tile_n)
        if DENSE:
            if valid < BLOCK:
                s = tl.where(rows[None, :] < valid, s, float("-inf"))
        else:
            s = s + tl.where(rows < valid, 0.0, float("-inf"))[None, :]
        m_new = tl.maximum(m_i, tl.max(s, 1) * scale)
        p = tl.math.exp2(s * scale - (m_new - p_shift)[:, None])    # FP8: P * 448, by the exponent
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        if PV_FP8:
            v_tile = tl.load(VS + (b * num_tiles + tile_n) * HEADS + h)
            acc = acc * (alpha * (v_unit / v_tile))[:, None]
            acc = tl.dot(p.to(tl.float8e4nv), v, acc)
            v_unit = v_tile
        else:
            acc = acc * alpha[:, None]
            acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    out = acc * (v_unit / l_i)[:, None]
    tokens = tl.load(SOURCE + tile_m * BLOCK + rows).to(tl.int64)
    rows_valid = rows < tl.load(TILE_COUNT + tile_m)
    tl.store(OUT + b * stride_ob + h * stride_oh + tokens[:, None] * stride_on + dims[None, :],
             out.to(OUT.dtype.element_ty), mask=rows_valid[:, None])


def key_shift(k: torch.Tensor) -> torch.Tensor:
    """The mean key of each (batch item, head) of ``k`` [B, tokens, H, D], float32 [B, 1, H, D]: what smoothing
    subtracts (SageAttention's smooth K: keys of a video DiT share a large offset that FP8 would round with them)."""
    return k.float().mean(1, keepdim=True)


def quantize_to_tiles(x: torch.Tensor, layout: TileLayout, transposed: bool = False,
                      shift: torch.Tensor | None = None):
    """``x`` [B, tokens, H, D] -> (e4m3 in tile order, [B, slots, H, D] or with ``transposed`` [B, H, D, slots];
    float32 scales [B, tiles, H]), as ``quant.quantize_tiles`` of ``layout.to_tiles(x - shift, 1)``; ``shift``
    float32 [B, 1, H, D] or None."""
    b, _, h, d = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    shape = (b, h, d, layout.slots) if transposed else (b, layout.slots, h, d)
    out = torch.empty(shape, dtype=FP8, device=x.device)
    scale = torch.empty(b, layout.num_tiles, h, dtype=torch.float32, device=x.device)
    strides = (out.stride(0), out.stride(3), out.stride(1), out.stride(2)) if transposed else out.stride()
    shift_arg = scale if shift is None else shift.contiguous()
    _quantize_kernel[(layout.num_tiles, b * h)](x, layout.source(x.device), shift_arg, out, scale, x.stride(0),
                                                x.stride(1), x.stride(2), *strides, HEADS=h, BLOCK=layout.tile_tokens,
                                                HEAD_DIM=d, HAS_SHIFT=shift is not None, num_warps=4)
    return out, scale


def attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
                     kv_list: torch.Tensor, kv_count: torch.Tensor, precision: str,
                     scale: float | None = None, dense: bool = False, smooth_k: bool = True,
                     pv_fp8: bool = True) -> torch.Tensor:
    """Attention of ``q``, ``k``, ``v`` [B, tokens, H, D] (CUDA, tokens frames-first) over the kept key tiles
    ``kv_list`` [1 or B*H, Tq, K] / ``kv_count`` [1 or B*H, Tq] (see ``mask.kept_lists``; ``dense``: they
    list every tile). FP8 quantises K less its mean key (``smooth_k``; softmax ignores a shift shared by all
    keys, so only the rounding changes); with ``pv_fp8`` False only Q K^T runs in FP8, P V in BF16. Returns [B, tokens, H, D] in ``q``'s dtype."""
    b, n, h, d = q.shape
    block = layout.tile_tokens
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    is_fp8 = precision == "fp8"
    if is_fp8:
        (q, qs), (k, ks) = quantize_to_tiles(q, layout), quantize_to_tiles(k, layout, shift=key_shift(k) if smooth_k else None)
    if is_fp8 and pv_fp8:
        v, vs = quantize_to_tiles(v, layout, transposed=True)
        stride_v = (v.stride(0), v.stride(1), v.stride(3), v.stride(2))
    elif is_fp8:
        v, vs = layout.to_tiles(v, 1), torch.empty(1, device=q.device)
        stride_v = (v.stride(0), v.stride(2), v.stride(1), v.stride(3))
    else:
        q, k, v = (layout.to_tiles(x, 1) for x in (q, k, v))
        qs = ks = vs = torch.empty(1, device=q.device)
        stride_v = (v.stride(0), v.stride(2), v.stride(1), v.stride(3))
    list_bh_stride = 0 if kv_list.shape[0] == 1 else kv_list.shape[1] * kv_list.shape[2]
    _attention_kernel[(layout.num_tiles, b * h)](
        q, k, v, qs, ks, vs, kv_list, kv_count, layout.counts(q.device), layout.source(q.device), out,
        scale, LOG2_FP8_MAX if is_fp8 and pv_fp8 else 0.0, list_bh_stride, kv_list.shape[2],
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), *stride_v,
        out.stride(0), out.stride(1), out.stride(2),
        layout.slots, HEADS=h, IS_FP8=is_fp8, PV_FP8=is_fp8 and pv_fp8, BLOCK=block, HEAD_DIM=d, DENSE=dense)
    return out
