"""The corrected restore's fit, solve and apply as three Triton kernels (CUDA, or Triton's CPU interpreter in tests).

Unfused, a corrected restore launched 93-132 kernels (gathers, casts, residuals, per-map copies, products, one
apply per run of frames), most of its time at small shapes. Here the fit reads the rows it needs straight from
the block's input and output, forms both residuals in fp32 in registers and accumulates ``dx^T dx`` and
``dx^T du`` per map in fp32 (bf16 or fp32 operands) in one launch, split over the fit tokens so that the GPU
fills (one sum of the splits after it). The solve ``A = (G + ridge I)^-1 X`` of all the maps is one launch too, one
program per map, where the torch path launches about ten kernels (the ridge's small ops, cuSOLVER's batched Cholesky
and two cuBLAS triangular solves: 0.36-0.83 ms on an H100, against 0.21-0.39 ms for this kernel, whose 128 dependent
pivot steps set its time; ``bench/correction_cost.py``, 2026-12-07). It is blocked Gauss-Jordan elimination without pivoting on ``[G + ridge I | X]``, two fp32 tiles
held in registers, sound for these SPD systems (the ridge bounds their condition number by 10 c + 1): per panel of
16 pivots the panel's rows and columns pass through a small scratch buffer, its 16 x 16 diagonal block is inverted
in registers, and each tile is updated by one fp32 product. On full tiles Gauss-Jordan costs 2 c^3 multiply-adds
where a Cholesky factor and two triangular solves would cost 3 c^3; the diagonal blocks are the sequential part
(128 short steps for a 128-channel map). The apply adds ``(x_f - lerp(x_lo, x_hi, w)) A`` to every skipped frame
in one launch, tiles of [tokens, one map's channels], frames fastest (the neighbours one frame reads are read by
the next programs too, from L2). The arithmetic is :mod:`.correction`'s torch path, which runs everywhere else.

All three are torch custom ops, so that ``torch.compile`` keeps them in its graph. Triton's interpreter rounds to
bf16 by truncation and multiplies bf16 tiles wrongly (Triton 3.8), so there the operands are rounded to bf16
by hand and multiplied as fp32: the same exact products (a bf16 product is exact in fp32), fp32 sums.
"""
from __future__ import annotations

import functools
import os

import torch

from .restore_kernel import interpreting, triton, use_triton

if triton is not None:
    import triton.language as tl

#: The fused path runs where Triton can (``restore_kernel.use_triton``): on by default since it was measured on a GPU
#: (H100, 2026-12-07, ``bench/correction_cost.py``: the correction 2.5-3.8x cheaper at every benchmarked shape, the
#: maps within 3e-4 of the torch path's, the solve within 1.5e-6 of an fp64 solve). ``FIS_FUSED_CORRECTION=0`` in the
#: environment runs the torch path everywhere.
ENABLED = os.environ.get("FIS_FUSED_CORRECTION", "1") != "0"
#: The largest map the kernels take (one 128 x 128 fp32 accumulator per program); larger maps take the torch path.
MOST_CHANNELS = 128
_FIT_TOKENS_PER_STEP = 64
_APPLY_TOKENS_PER_TILE = 64
_APPLY_TILES = 4          # tiles per program, which reads its map once for them
_SOLVE_PANEL = 16         # pivots per panel of the solve (a product's smallest side)
_OPERANDS = {} if triton is None else {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}

if triton is not None:
    @triton.jit
    def _as_operand(v, OPERAND: tl.constexpr, INTERPRET: tl.constexpr):
        """fp32 ``v`` rounded to the product operand dtype (round to nearest even, as torch casts)."""
        if OPERAND == tl.float32:
            return v
        if INTERPRET:
            bits = v.to(tl.int32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
            return bits.to(tl.float32, bitcast=True)
        return v.to(OPERAND)

    @triton.jit
    def _product(acc, a, b, OPERAND: tl.constexpr, INTERPRET: tl.constexpr):
        """``acc + a @ b`` with fp32 sums; ``a`` and ``b`` come from :func:`_as_operand`."""
        if OPERAND == tl.float32 or INTERPRET:
            return tl.dot(a, b, acc, input_precision="ieee")
        return tl.dot(a, b, acc)

    @triton.jit
    def _lerp(low, high, w):
        """torch.lerp's formula (the one end nearer the weight, for accuracy)."""
        return tl.where(w < 0.5, low + w * (high - low), high - (high - low) * (1.0 - w))

    @triton.jit
    def _residual(base, rows_0, rows_1, rows_2, w, channel, mask, channels):
        """``center - lerp(low, high, w)`` of the rows ``rows_0`` (center), ``rows_1``, ``rows_2`` in fp32."""
        center = tl.load(base + rows_0[:, None] * channels + channel[None, :], mask=mask, other=0.0).to(tl.float32)
        low = tl.load(base + rows_1[:, None] * channels + channel[None, :], mask=mask, other=0.0).to(tl.float32)
        high = tl.load(base + rows_2[:, None] * channels + channel[None, :], mask=mask, other=0.0).to(tl.float32)
        return center - _lerp(low, high, w[:, None])

    @triton.jit
    def _fit_products_kernel(x_ptr, y_ptr, out_ptr, fit_ptr, weight_ptr, frame_ptr,
                             samples, per_frame, stride, tokens, channels, c, split_samples,
                             x_batch, y_batch, out_split, out_kind, out_batch, out_map,
                             BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, OPERAND: tl.constexpr,
                             INTERPRET: tl.constexpr):
        """One map's Gram (kind 0) or cross (kind 1) product over one split of the fit samples."""
        map_index = tl.program_id(0)
        split = tl.program_id(1)
        batch = tl.program_id(2) // 2
        kind = tl.program_id(2) % 2
        lane = tl.arange(0, BLOCK_C)
        channel = map_index * c + lane
        channel_mask = lane < c
        x_base = x_ptr + batch.to(tl.int64) * x_batch
        y_base = y_ptr + batch.to(tl.int64) * y_batch
        acc = tl.zeros((BLOCK_C, BLOCK_C), dtype=tl.float32)
        start = split * split_samples
        end = tl.minimum(start + split_samples, samples)
        for first in range(start, end, BLOCK_T):
            sample = first + tl.arange(0, BLOCK_T)
            sample_mask = sample < end
            fit_row = (sample // per_frame).to(tl.int64)
            token = ((sample % per_frame) * stride).to(tl.int64)
            w = tl.load(weight_ptr + fit_row, mask=sample_mask, other=0.0).to(tl.float32)
            y_0 = tl.load(fit_ptr + fit_row * 3, mask=sample_mask, other=0)
            y_1 = tl.load(fit_ptr + fit_row * 3 + 1, mask=sample_mask, other=0)
            y_2 = tl.load(fit_ptr + fit_row * 3 + 2, mask=sample_mask, other=0)
            x_0 = tl.load(frame_ptr + y_0, mask=sample_mask, other=0) * tokens + token
            x_1 = tl.load(frame_ptr + y_1, mask=sample_mask, other=0) * tokens + token
            x_2 = tl.load(frame_ptr + y_2, mask=sample_mask, other=0) * tokens + token
            mask = sample_mask[:, None] & channel_mask[None, :]
            dx = _residual(x_base, x_0, x_1, x_2, w, channel, mask, channels)
            # the cross product's right side is the residual of u = y - x; a Gram program reads no y at all
            du = _residual(y_base, y_0 * tokens + token, y_1 * tokens + token, y_2 * tokens + token, w, channel,
                           mask & (kind == 1), channels) - dx
            right = tl.where(kind == 1, du, dx)
            dx = _as_operand(dx, OPERAND, INTERPRET)
            acc = _product(acc, tl.trans(dx), _as_operand(right, OPERAND, INTERPRET), OPERAND, INTERPRET)
        out = (out_ptr + split.to(tl.int64) * out_split + kind * out_kind + batch.to(tl.int64) * out_batch
               + map_index.to(tl.int64) * out_map)
        tl.store(out + lane[:, None] * c + lane[None, :], acc, mask=channel_mask[:, None] & channel_mask[None, :])

    @triton.jit
    def _apply_maps_kernel(out_ptr, x_ptr, maps_ptr, table_ptr, weight_ptr, tokens, channels, c, maps_per_entry,
                           out_batch, x_batch, maps_batch, maps_map,
                           BLOCK_T: tl.constexpr, TILES: tl.constexpr, BLOCK_C: tl.constexpr, OPERAND: tl.constexpr,
                           INTERPRET: tl.constexpr):
        """``out_f += (x_f - lerp(x_lo, x_hi, w)) A`` on TILES tiles of one skipped frame's tokens, one map's
        channels (the map read once for them)."""
        frame = tl.program_id(0).to(tl.int64)
        map_index = tl.program_id(1) % maps_per_entry
        chunk = tl.program_id(1) // maps_per_entry
        batch = tl.program_id(2).to(tl.int64)
        own = tl.load(table_ptr + frame * 5)
        low_position = tl.load(table_ptr + frame * 5 + 2)
        if (own < 0) & (low_position >= 0):           # a skipped frame with an update: a corrected one
            low = tl.load(table_ptr + frame * 5 + 1).to(tl.int64)
            high = tl.load(table_ptr + frame * 5 + 3).to(tl.int64)
            w = tl.load(weight_ptr + frame).to(tl.float32)
            lane = tl.arange(0, BLOCK_C)
            channel = map_index * c + lane
            map_mask = (lane < c)[:, None] & (lane < c)[None, :]
            a = tl.load(maps_ptr + batch * maps_batch + map_index * maps_map + lane[:, None] * c + lane[None, :],
                        mask=map_mask, other=0.0)
            a = _as_operand(a, OPERAND, INTERPRET)
            x_base = x_ptr + batch * x_batch
            out_base = out_ptr + batch * out_batch
            for tile in tl.static_range(TILES):
                token = (chunk * TILES + tile) * BLOCK_T + tl.arange(0, BLOCK_T)
                mask = (token < tokens)[:, None] & (lane < c)[None, :]
                rows = token[:, None] * channels + channel[None, :]
                center = tl.load(x_base + frame * tokens * channels + rows, mask=mask, other=0.0).to(tl.float32)
                x_low = tl.load(x_base + low * tokens * channels + rows, mask=mask, other=0.0).to(tl.float32)
                x_high = tl.load(x_base + high * tokens * channels + rows, mask=mask, other=0.0).to(tl.float32)
                dx = _as_operand(center - _lerp(x_low, x_high, w), OPERAND, INTERPRET)
                correction = _product(tl.zeros((BLOCK_T, BLOCK_C), dtype=tl.float32), dx, a, OPERAND, INTERPRET)
                target = out_base + frame * tokens * channels + rows
                value = tl.load(target, mask=mask, other=0.0).to(tl.float32) + correction
                tl.store(target, value.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _invert(block, PANEL: tl.constexpr):
        """The inverse of the SPD ``block`` [PANEL, PANEL] by Gauss-Jordan sweeps in place, without pivoting."""
        row = tl.arange(0, PANEL)[:, None]
        col = tl.arange(0, PANEL)[None, :]
        for j in range(PANEL):
            # the pivot's row and column; the pivot itself reduced along the row's 2-D form (within a warp, where
            # the row as a vector of its own would take a layout change through shared memory)
            pivot_row = tl.sum(tl.where(row == j, block, 0.0), axis=0)[None, :]
            pivot_col = tl.sum(tl.where(col == j, block, 0.0), axis=1)[:, None]
            inverse = 1.0 / tl.sum(tl.where(col == j, pivot_row, 0.0), axis=1)[:, None]
            scaled = pivot_row * inverse
            block = tl.where(row == j, tl.where(col == j, inverse, scaled),
                             tl.where(col == j, -pivot_col * inverse, block - pivot_col * scaled))
        return block

    @triton.jit
    def _ridge_solve_kernel(gram_ptr, cross_ptr, out_ptr, scratch_ptr, c, ridge, tiny,
                            BLOCK: tl.constexpr, PANEL: tl.constexpr):
        """One map's ``A = (G + (ridge mean(diag G) + tiny) I)^-1 X``: Gauss-Jordan on ``[G | X]`` by panels of
        PANEL pivots; the padding beyond ``c`` is an identity block that no panel touches."""
        system = tl.program_id(0).to(tl.int64)
        row = tl.arange(0, BLOCK)[:, None]
        col = tl.arange(0, BLOCK)[None, :]
        lane = tl.arange(0, PANEL)
        g = tl.load(gram_ptr + system * c * c + row * c + col, mask=(row < c) & (col < c), other=0.0)
        x = tl.load(cross_ptr + system * c * c + row * c + col, mask=(row < c) & (col < c), other=0.0)
        diagonal = row == col
        shift = ridge * (tl.sum(tl.sum(tl.where(diagonal, g, 0.0), axis=1), axis=0) / c) + tiny
        g = tl.where(diagonal, tl.where(row < c, g + shift, 1.0), g)
        # two buffers, used in turn, of a panel's rows [PANEL, 2 BLOCK] (of G, then X) and columns [BLOCK, PANEL]
        # of G: a panel writes the buffer that the panel before last read, which every thread of the program
        # finished before the last barrier. Products in plain fp32 (TF32 would keep 10 of the 23 mantissa bits).
        scratch = scratch_ptr + system * (6 * PANEL * BLOCK)
        for first in range(0, c, PANEL):
            buffer = scratch + ((first // PANEL) % 2) * (3 * PANEL * BLOCK)
            columns = buffer + 2 * PANEL * BLOCK
            panel_row = (row >= first) & (row < first + PANEL)
            tl.store(buffer + (row - first) * (2 * BLOCK) + col, g, mask=panel_row)
            tl.store(buffer + (row - first) * (2 * BLOCK) + BLOCK + col, x, mask=panel_row)
            tl.store(columns + row * PANEL + (col - first), g, mask=(col >= first) & (col < first + PANEL))
            tl.debug_barrier()
            inverse = _invert(tl.load(buffer + lane[:, None] * (2 * BLOCK) + first + lane[None, :]), PANEL)
            rows_g = tl.dot(inverse, tl.load(buffer + lane[:, None] * (2 * BLOCK) + col), input_precision="ieee")
            rows_x = tl.dot(inverse, tl.load(buffer + lane[:, None] * (2 * BLOCK) + BLOCK + col),
                            input_precision="ieee")
            # the pivot rows become the panel's rows times the inverse (placed exactly: a product by one), every
            # other row loses its panel columns times them
            left = tl.where(row == first + lane[None, :], 1.0,
                            tl.where(panel_row, 0.0, -tl.load(columns + row * PANEL + lane[None, :])))
            g = tl.dot(left, rows_g, tl.where(panel_row, 0.0, g), input_precision="ieee")
            x = tl.dot(left, rows_x, tl.where(panel_row, 0.0, x), input_precision="ieee")
        tl.store(out_ptr + system * c * c + row * c + col, x, mask=(row < c) & (col < c))


def fused(x: torch.Tensor, c: int) -> bool:
    """Whether the fit and apply of maps of ``c`` channels on ``x`` take the kernels."""
    return ENABLED and c <= MOST_CHANNELS and x.dtype in _OPERANDS and use_triton(x)


@functools.lru_cache(maxsize=None)
def _processors(device: torch.device) -> int:
    """The programs that fill the device at once, about (its multiprocessors; a few in the interpreter)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` [B, F, T, C] with its tokens as rows of C contiguous channels, frames and tokens packed (a view
    where it already is, as the restore's frame views are)."""
    batch, frames, tokens, channels = t.shape
    if t.stride()[1:] != (tokens * channels, channels, 1):
        t = t.contiguous()
    return t


def _fit_products(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, fit_weight: torch.Tensor,
                  frame_index: torch.Tensor, stride: int, c: int, bf16: bool) -> torch.Tensor:
    batch, _, tokens, channels = x.shape
    n, m = channels // c, fit.shape[0]
    per_frame = -(-tokens // stride)
    samples = m * per_frame
    block_c = max(16, triton.next_power_of_2(c))
    splits = max(1, min(-(-2 * _processors(x.device) // (2 * n * batch)), samples // (4 * _FIT_TOKENS_PER_STEP)))
    split_samples = -(-samples // (splits * _FIT_TOKENS_PER_STEP)) * _FIT_TOKENS_PER_STEP
    splits = -(-samples // split_samples)
    out = torch.empty(splits, 2, batch, n, c, c, dtype=torch.float32, device=x.device)
    _fit_products_kernel[(n, splits, 2 * batch)](
        x, y, out, fit.contiguous(), fit_weight, frame_index, samples, per_frame, stride, tokens, channels, c,
        split_samples, x.stride(0), y.stride(0), *out.stride()[:4],
        BLOCK_T=_FIT_TOKENS_PER_STEP, BLOCK_C=block_c, OPERAND=tl.bfloat16 if bf16 else tl.float32,
        INTERPRET=interpreting(), num_warps=8 if block_c >= 128 else 4)
    return out[0] if splits == 1 else out.sum(0)


def _apply_maps(out: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, table: torch.Tensor,
                weight: torch.Tensor) -> None:
    batch, frames, tokens, channels = x.shape
    n, c = maps.shape[1], maps.shape[2]
    block_c = max(16, triton.next_power_of_2(c))
    chunks = triton.cdiv(tokens, _APPLY_TOKENS_PER_TILE * _APPLY_TILES)
    _apply_maps_kernel[(frames, chunks * n, batch)](
        out, x, maps, table, weight, tokens, channels, c, n, out.stride(0), x.stride(0), maps.stride(0),
        maps.stride(1), BLOCK_T=_APPLY_TOKENS_PER_TILE, TILES=_APPLY_TILES, BLOCK_C=block_c,
        OPERAND=_OPERANDS[x.dtype],
        INTERPRET=interpreting(),
        num_warps=8 if block_c >= 128 else 4)


def _ridge_solve(gram: torch.Tensor, cross: torch.Tensor, ridge: float) -> torch.Tensor:
    batch, n, c = gram.shape[:3]
    block = max(_SOLVE_PANEL, triton.next_power_of_2(c))
    out = torch.empty_like(cross)
    scratch = torch.empty(batch * n, 6 * _SOLVE_PANEL * block, dtype=torch.float32, device=gram.device)
    _ridge_solve_kernel[(batch * n,)](gram, cross, out, scratch, c, ridge, torch.finfo(torch.float32).tiny,
                                      BLOCK=block, PANEL=_SOLVE_PANEL, num_warps=max(4, block // 8))
    return out


def _register():
    """The ``comfyui_fis::fit_products``, ``comfyui_fis::apply_maps`` and ``comfyui_fis::ridge_solve`` ops (once per
    process)."""
    ops = torch.ops.comfyui_fis
    if hasattr(ops, "fit_products"):
        return ops.fit_products, ops.apply_maps, ops.ridge_solve

    @torch.library.custom_op("comfyui_fis::fit_products", mutates_args=())
    def fit_products(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, fit_weight: torch.Tensor,
                     frame_index: torch.Tensor, stride: int, c: int, bf16: bool) -> torch.Tensor:
        return _fit_products(_rows(x), _rows(y), fit, fit_weight, frame_index, stride, c, bf16)

    @fit_products.register_fake
    def _(x, y, fit, fit_weight, frame_index, stride, c, bf16):
        return x.new_empty((2, x.shape[0], x.shape[3] // c, c, c), dtype=torch.float32)

    @torch.library.custom_op("comfyui_fis::apply_maps", mutates_args=("out",))
    def apply_maps(out: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, table: torch.Tensor,
                   weight: torch.Tensor) -> None:
        if out.stride()[1:] != x.stride()[1:] or _rows(x) is not x:
            raise ValueError("apply_maps: out and x must be frame views of packed token rows")
        _apply_maps(out, x, maps.contiguous(), table, weight)

    @apply_maps.register_fake
    def _(out, x, maps, table, weight):
        return None

    @torch.library.custom_op("comfyui_fis::ridge_solve", mutates_args=())
    def ridge_solve(gram: torch.Tensor, cross: torch.Tensor, ridge: float) -> torch.Tensor:
        if (gram.dtype != torch.float32 or cross.dtype != torch.float32 or gram.shape != cross.shape
                or gram.dim() != 4 or not 1 <= gram.shape[2] == gram.shape[3] <= MOST_CHANNELS):
            raise ValueError(f"ridge_solve: gram and cross must be fp32 tensors of one shape [B, n, c, c], c at most "
                             f"{MOST_CHANNELS}; got {gram.dtype} {tuple(gram.shape)} and {cross.dtype} {tuple(cross.shape)}")
        return _ridge_solve(gram.contiguous(), cross.contiguous(), ridge)

    @ridge_solve.register_fake
    def _(gram, cross, ridge):
        return torch.empty_like(cross)

    return ops.fit_products, ops.apply_maps, ops.ridge_solve


def fit_products(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, fit_weight: torch.Tensor,
                 frame_index: torch.Tensor, stride: int, c: int, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The fit's Gram and cross sums [B, n, c, c] (fp32) over every ``stride``-th token of the fit frames, as
    :func:`.correction.fit_maps` defines them; operands bf16 (``bf16``) or fp32."""
    gram, cross = _OPS[0](x, y, fit, fit_weight, frame_index, stride, c, bf16).unbind(0)
    return gram, cross


def apply_maps(out: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, table: torch.Tensor,
               weight: torch.Tensor) -> None:
    """Add each corrected frame's ``(x_f - lerp(x_lo, x_hi, w)) A`` to ``out`` [B, F, T, C] in place; the frames
    and weights from a plan's restore ``table`` and ``weight`` (:class:`.frames.FramePlan`), the product in the
    model's dtype, the sum in fp32 rounded once."""
    _OPS[1](out, x, maps, table, weight)


def ridge_solve(gram: torch.Tensor, cross: torch.Tensor, ridge: float) -> torch.Tensor:
    """The maps ``A = (G + (ridge mean(diag G) + tiny) I)^-1 X`` [B, n, c, c] (fp32) of the Gram and cross sums
    ``gram`` and ``cross`` [B, n, c, c] (fp32, c at most :data:`MOST_CHANNELS`), as :func:`.correction.ridge_solve`
    defines them, in one launch."""
    return _OPS[2](gram, cross, ridge)


_OPS = _register() if triton is not None else None
