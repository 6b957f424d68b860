"""FIS and FPS on one shard of a sequence-parallel model call (Raylight: xDiT / xFuser Ulysses attention).

Raylight's Wan and HunyuanVideo forwards pad the flattened token sequence with zeros to a multiple of the
sequence-parallel world size ``W``, give rank ``r`` the ``r``-th of ``W`` equal chunks, and still call
``patches_replace["dit"]`` on each rank with its own chunk; the attentions all-to-all the chunks so that each
rank attends over all tokens with ``1/W`` of the heads. A chunk does not fit the frame grid (frames straddle
chunk edges), so a sparse block here first rebuilds the whole sequence:

1. all-gather the chunks of the block's token inputs (and the per-token RoPE, once per model call);
2. cut the frame subset exactly as one process does (the family's ``cut_args``);
3. hand each rank its equal, zero-padded chunk of the subset (Raylight's own padding rule) and run the block,
   whose Ulysses attention then all-to-alls the subset instead of the whole sequence;
4. all-gather the subset's output chunks, restore the skipped frames exactly as one process does, and keep
   this rank's chunk (padding positions keep their input).

Every rank restores the whole sequence (cheap, memory-bound) and so carries the same fit sums of the corrected
interpolation as one process. Where the subset's length divides by ``W`` (every Wan resolution: its tokens per
frame do) this equals one-process FIS; otherwise the block's attention sees up to ``W - 1`` zero padding
tokens, as Raylight's own dense blocks do.

The context is found through what the host passes and what is already imported: xFuser's
``xfuser.core.distributed`` in ``sys.modules`` with a sequence-parallel world above 1, and a block input whose
length is one chunk of the frame grid's sequence. This module never imports xFuser or Raylight: without them
nothing here runs.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

#: the xFuser module whose process groups Raylight sets up (looked up in sys.modules, never imported here)
XFUSER_DISTRIBUTED = "xfuser.core.distributed"


@dataclass(frozen=True)
class SequenceShard:
    """This rank's part of a sequence split evenly over ``world`` ranks (zero-padded to a multiple of ``world``).

    ``group`` is xFuser's sequence-parallel ``GroupCoordinator`` (or anything with its ``all_gather(tensor, dim)``
    and, for FPS, ``device_group``); ``ulysses`` whether the attention is pure Ulysses (no ring), i.e. sees all
    tokens of ``1/world`` of the heads.
    """

    group: object
    world: int
    rank: int
    ulysses: bool = True

    def chunk(self, length: int) -> int:
        """Tokens per rank of a ``length``-token sequence (Raylight's ``pad_to_world_size`` then ``chunk``)."""
        return math.ceil(length / self.world)

    def holds(self, tokens: int, length: int) -> bool:
        """Whether a block input of ``tokens`` tokens is this rank's chunk of a ``length``-token sequence."""
        return tokens != length and tokens == self.chunk(length)

    def gather(self, x: torch.Tensor, dim: int, length: int) -> torch.Tensor:
        """The whole sequence (its padding dropped) from every rank's chunk ``x`` along ``dim``."""
        return self.group.all_gather(x.contiguous(), dim=dim).narrow(dim, 0, length)

    def split(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's chunk of ``x`` along ``dim``, zero-padded to a multiple of the world size as Raylight does."""
        length = x.shape[dim]
        n = self.chunk(length)
        start = self.rank * n
        if start + n <= length:
            return x.narrow(dim, start, n)
        part = x.narrow(dim, min(start, length), max(length - start, 0))
        pad = list(x.shape)
        pad[dim] = n - part.shape[dim]
        return torch.cat([part, x.new_zeros(pad)], dim=dim)

    def own(self, full: torch.Tensor, local: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's chunk of ``full`` (the whole sequence); padding positions keep ``local``'s (the block input's)."""
        length = full.shape[dim]
        n = local.shape[dim]
        start = self.rank * n
        kept = max(min(length - start, n), 0)
        if kept == n:
            return full.narrow(dim, start, n)
        return torch.cat([full.narrow(dim, min(start, length), kept), local.narrow(dim, kept, n - kept)], dim=dim)


def current_shard() -> SequenceShard | None:
    """The sequence-parallel context of the model call in progress, or None: xFuser not imported (no Raylight),
    its groups not set up, or a world of one rank."""
    distributed = sys.modules.get(XFUSER_DISTRIBUTED)
    if distributed is None:
        return None
    try:
        world = int(distributed.get_sequence_parallel_world_size())
        if world <= 1:
            return None
        rank = int(distributed.get_sequence_parallel_rank())
        group = distributed.get_sp_group()
    except Exception:   # imported but not initialised (a process that is not a Raylight worker)
        return None
    ring = getattr(distributed, "get_ring_parallel_world_size", None)
    try:
        ulysses = ring is None or int(ring()) == 1
    except Exception:
        ulysses = True
    return SequenceShard(group, world, rank, ulysses)


def exchanged_bytes(batch: int, length: int, subset: int, channels: int, world: int, element_size: int = 2) -> int:
    """Bytes one rank receives for one sparse block beyond the Ulysses attention's own all-to-alls: the all-gather
    of the block input (``length`` tokens) and of the subset's output (``subset`` tokens)."""
    per_token = batch * channels * element_size
    return (world - 1) * (math.ceil(length / world) + math.ceil(subset / world)) * per_token


def ulysses_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shard: SequenceShard, length: int, attend):
    """Ulysses attention over ``shard`` with ``attend`` as its kernel.

    ``q, k, v`` are this rank's chunks [B, n, H, D] of a ``length``-token sequence (zero-padded to ``n * world``).
    All-to-all them to all tokens of ``H / world`` heads, run ``attend(q, k, v)`` on the ``length`` real tokens
    ([B, length, H / world, D] each, the padding left out), and all-to-all the output back to [B, n, H, D].
    """
    import torch.distributed as dist
    group = getattr(shard.group, "device_group", None)
    world = shard.world
    B, n, H, D = q.shape
    if H % world:
        raise ValueError(f"{H} heads do not divide over {world} ranks")

    def to_heads(x):   # [B, n, H, D] -> [B, n * world, H / world, D]
        send = x.reshape(B, n, world, H // world, D).permute(2, 0, 1, 3, 4).contiguous()
        received = torch.empty_like(send)
        dist.all_to_all_single(received, send, group=group)
        return received.permute(1, 0, 2, 3, 4).reshape(B, world * n, H // world, D)

    qh, kh, vh = (to_heads(x)[:, :length] for x in (q, k, v))
    out = attend(qh, kh, vh)
    if out.shape[1] < world * n:
        out = torch.cat([out, out.new_zeros(B, world * n - out.shape[1], *out.shape[2:])], dim=1)
    send = out.reshape(B, world, n, H // world, D).permute(1, 0, 2, 3, 4).contiguous()
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, group=group)   # [world (head groups), B, n, H / world, D]
    return received.permute(1, 2, 0, 3, 4).reshape(B, n, H, D)
