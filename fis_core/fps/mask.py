"""Which tile pairs attention computes: a bool [query tile, key tile] pattern (True = kept).

Two patterns, both at a given ``sparsity`` (the fraction of tile pairs skipped), both keeping the first
frame fed: every query tile keeps the key tiles of the first latent frame (the frame image-to-video gives,
and the attention sink of the clip), and the query tiles of the first frame keep every key tile. A layout's
prefix (e.g. text tokens a joint attention puts first) is treated as first-frame tiles: always attended to, attending to all.

* ``window``: each query tile keeps its nearest key tiles, nearness measured as the largest of the
  distances in frames, rows and columns, each as a fraction of the grid's extent on that axis (so the
  window is a box shaped like the video, as in Sliding Tile and Radial Attention), ties broken by the
  summed distance. The same pattern for every head; it depends on the shape alone.
* ``topk``: each query tile keeps the key tiles with the highest scores of mean-pooled queries and keys,
  per batch item and head (as Sparse VideoGen and SpargeAttention estimate block importance).

Rows keep the same number of tiles ``max(ceil((1 - sparsity) * tiles), first-frame tiles + 1)`` (each
tile keeps itself), so the kernel's work is even across query tiles.
"""
from __future__ import annotations

import math

import torch

from .tiles import TileLayout

PATTERNS = ("window", "topk")


def kept_per_row(layout: TileLayout, sparsity: float) -> int:
    """Key tiles each query tile keeps at ``sparsity`` (at least the first frame's tiles and its own)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: must be in [0, 1); got {sparsity}")
    return min(max(math.ceil((1.0 - sparsity) * layout.num_tiles - 1e-9), int(first_frame_tiles(layout).sum()) + 1),
               layout.num_tiles)


def first_frame_tiles(layout: TileLayout) -> torch.Tensor:
    """[tiles] bool: the tiles holding the first latent frame, and the prefix's (text) tiles."""
    return layout.coords[:, 0] == 0


def _keep_best(priority: torch.Tensor, layout: TileLayout, sparsity: float) -> torch.Tensor:
    """Keep, per row, the ``kept_per_row`` key tiles of highest ``priority`` [..., Tq, Tk], the first frame
    and the tile itself forced in as keys for every row, and the first frame as queries against every key."""
    first = first_frame_tiles(layout).to(priority.device)
    itself = torch.eye(layout.num_tiles, dtype=torch.bool, device=priority.device)
    priority = priority.masked_fill(first | itself, float("inf"))
    k = kept_per_row(layout, sparsity)
    keep = torch.zeros(priority.shape, dtype=torch.bool, device=priority.device)
    keep.scatter_(-1, priority.topk(k, dim=-1).indices, True)
    keep[..., first, :] = True
    return keep


def window_pattern(layout: TileLayout, sparsity: float) -> torch.Tensor:
    """[Tq, Tk] bool: local windows in time and space, plus the first frame."""
    coords = layout.coords.double()
    extent = torch.tensor(layout.tiles_per_axis, dtype=torch.float64)
    delta = (coords[:, None, :] - coords[None, :, :]).abs() / extent
    distance = delta.amax(-1) + 1e-3 * delta.sum(-1)
    return _keep_best(-distance, layout, sparsity)


def pooled_scores(q: torch.Tensor, k: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """[B, H, Tq, Tk] scores of tile-mean queries against tile-mean keys; ``q``/``k`` are [B, slots, H, D] in tile order."""
    b, _, h, d = q.shape
    pool = lambda x: x.view(b, layout.num_tiles, layout.tile_tokens, h, d).float().mean(2).transpose(1, 2)
    return pool(q) @ pool(k).transpose(-1, -2)


def topk_pattern(q: torch.Tensor, k: torch.Tensor, layout: TileLayout, sparsity: float) -> torch.Tensor:
    """[B, H, Tq, Tk] bool: per head, the key tiles of the highest pooled scores, plus the first frame."""
    return _keep_best(pooled_scores(q, k, layout), layout, sparsity)


def kept_lists(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's form of a pattern [..., Tq, Tk]: the kept key tiles of each query tile in ascending
    order, [..., Tq, K] int32 (K the most kept by any row; a row's list is padded with its last tile), and
    how many each row keeps, [..., Tq] int32."""
    counts = keep.sum(-1)
    width = int(counts.max())
    order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[..., :width]
    last = order.gather(-1, (counts - 1).clamp(min=0).unsqueeze(-1))
    slot = torch.arange(width, device=keep.device)
    order = torch.where(slot < counts.unsqueeze(-1), order, last)
    return order.to(torch.int32).contiguous(), counts.to(torch.int32).contiguous()
