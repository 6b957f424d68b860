"""The restore of a sparse block's frames as one Triton kernel, with a torch fallback.

Every output frame is written once: a computed frame copies its row of the block output, a skipped
frame is its input plus the interpolated update ``(1-w) (y_lo - x_lo) + w (y_hi - x_hi)`` in fp32.
Programs run frame-fastest over chunks of a frame, so the neighbouring frames a skipped frame reads
are read by its neighbours' programs at the same time and come from L2: DRAM traffic is about one
read of the input, one of the output rows and one write. The op is registered as a torch custom op
so that ``torch.compile`` keeps it in its graph. The Triton path runs on CUDA tensors when Triton is
installed; everything else takes the indexed torch path.
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only or Windows installs without Triton
    triton = None

OP_NAME = "comfyui_fis::restore_frames"
_BLOCK = 4096

if triton is not None:
    @triton.jit
    def _restore_frames_kernel(x_ptr, y_ptr, out_ptr, table_ptr, weight_ptr, n,
                               x_batch, x_frame, y_batch, y_frame, out_batch, out_frame, BLOCK: tl.constexpr):
        frame = tl.program_id(0)
        batch = tl.program_id(2).to(tl.int64)
        offsets = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        own = tl.load(table_ptr + frame * 5)
        x_base = x_ptr + batch * x_batch + offsets
        y_base = y_ptr + batch * y_batch + offsets
        if own >= 0:
            value = tl.load(y_base + own.to(tl.int64) * y_frame, mask=mask).to(tl.float32)
        else:
            value = tl.load(x_base + frame.to(tl.int64) * x_frame, mask=mask).to(tl.float32)
            lo_position = tl.load(table_ptr + frame * 5 + 2)
            if lo_position >= 0:
                lo_frame = tl.load(table_ptr + frame * 5 + 1).to(tl.int64)
                hi_frame = tl.load(table_ptr + frame * 5 + 3).to(tl.int64)
                hi_position = tl.load(table_ptr + frame * 5 + 4).to(tl.int64)
                weight = tl.load(weight_ptr + frame).to(tl.float32)
                lo = (tl.load(y_base + lo_position.to(tl.int64) * y_frame, mask=mask).to(tl.float32)
                      - tl.load(x_base + lo_frame * x_frame, mask=mask).to(tl.float32))
                hi = (tl.load(y_base + hi_position * y_frame, mask=mask).to(tl.float32)
                      - tl.load(x_base + hi_frame * x_frame, mask=mask).to(tl.float32))
                value += lo + weight * (hi - lo)
        tl.store(out_ptr + batch * out_batch + frame.to(tl.int64) * out_frame + offsets,
                 value.to(out_ptr.dtype.element_ty), mask=mask)


def _restore_frames_triton(x, y, table, weight):
    batch, frames, n = x.shape
    out = torch.empty_like(x)
    grid = (frames, triton.cdiv(n, _BLOCK), batch)
    _restore_frames_kernel[grid](x, y, out, table, weight, n, x.stride(0), x.stride(1), y.stride(0), y.stride(1),
                                 out.stride(0), out.stride(1), BLOCK=_BLOCK, num_warps=8)
    return out


def _restore_frames_torch(x, y, table, weight):
    """The same arithmetic with indexed torch ops (any device)."""
    own, lo_frame, lo_position, hi_frame, hi_position = table.long().unbind(1)
    compute = torch.promote_types(x.dtype, torch.float32)
    out = x.clone()
    skipped = torch.nonzero(own < 0).flatten()
    with_update = skipped[lo_position[skipped] >= 0]
    if with_update.numel():
        lo = y.index_select(1, lo_position[with_update]).to(compute) - x.index_select(1, lo_frame[with_update]).to(compute)
        hi = y.index_select(1, hi_position[with_update]).to(compute) - x.index_select(1, hi_frame[with_update]).to(compute)
        update = torch.lerp(lo, hi, weight[with_update].to(compute).view(1, -1, 1))
        out.index_copy_(1, with_update, (x.index_select(1, with_update).to(compute) + update).to(x.dtype))
    computed = torch.nonzero(own >= 0).flatten()
    out.index_copy_(1, computed, y.index_select(1, own[computed]))
    return out


def use_triton(x: torch.Tensor) -> bool:
    """Whether ``x``'s kernels run in Triton: on CUDA, or anywhere under Triton's interpreter (tests)."""
    return triton is not None and (x.is_cuda or interpreting())


def interpreting() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET") == "1"


def _register():
    """The ``comfyui_fis::restore_frames`` op (registered once per process, whatever the package name)."""
    namespace, name = OP_NAME.split("::")
    if hasattr(getattr(torch.ops, namespace), name):
        return getattr(getattr(torch.ops, namespace), name)

    @torch.library.custom_op(OP_NAME, mutates_args=())
    def restore_frames(x: torch.Tensor, y: torch.Tensor, table: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if x.stride(2) != 1 or y.stride(2) != 1:
            x, y = x.contiguous(), y.contiguous()
        return (_restore_frames_triton if use_triton(x) else _restore_frames_torch)(x, y, table, weight)

    @restore_frames.register_fake
    def _(x, y, table, weight):
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)

    return torch.ops.comfyui_fis.restore_frames


def restore_frames(x: torch.Tensor, y: torch.Tensor, table: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Restored frames [B, F, n] from the input frames ``x`` [B, F, n] and the computed rows ``y`` [B, k, n].

    ``table`` [F, 5] int32 holds per output frame: its row in ``y`` (or -1 if skipped), then the frame and
    ``y`` row of its low and high source (-1 rows for no update); ``weight`` [F] float64 the high source's weight.
    """
    return _OP(x, y, table, weight)


_OP = _register()
