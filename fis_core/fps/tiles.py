"""3D tiles of video tokens: a [frames x rows x columns] token grid cut into tiles of (tf, th, tw) tokens.

Attention runs on the tokens in tile order: every tile is ``tf * th * tw`` consecutive slots, so one tile is
one block of the kernel, one quantisation scale and one unit of the sparsity pattern. Where the grid does
not divide into whole tiles, a tile's trailing slots are padding: they repeat a token of the same tile (so a
tile's absolute maximum, and its FP8 scale, are unchanged), and the attention masks them as keys and drops
them as queries. A tile's valid tokens always come first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from ..shape_cache import ShapeCache
from ..widget_text import NUMBER_CHARS, quoted

#: Tokens per tile the kernel takes (its block size).
TILE_TOKENS = 128
#: FPS's layouts and their tables on the device, by shape; the FPS node clears it when a sampling run ends.
SHAPES = ShapeCache(128)


def parse_tile(spec: str) -> tuple[int, int, int] | None:
    """``"1x8x16"`` -> (1, 8, 16); ``"auto"`` -> None. A ValueError names the valid form."""
    spec = spec.strip().lower()
    if spec == "auto":
        return None
    parts = spec.split("x", 3)   # at most 4 parts: a long value is refused without splitting all of it
    try:
        tile = tuple(int(part) for part in parts) if max(map(len, parts)) <= NUMBER_CHARS else ()
    except ValueError:
        tile = ()
    if len(tile) != 3 or min(tile) < 1:
        raise ValueError(f"tile: {quoted(spec)} is not 'auto' or frames x rows x columns such as '1x8x16'")
    if math.prod(tile) not in (64, 128):
        raise ValueError(f"tile: {spec} holds {math.prod(tile)} tokens; the kernel takes tiles of 64 or 128 tokens")
    return tile


def choose_tile(frames: int, rows: int, cols: int, tokens: int = TILE_TOKENS) -> tuple[int, int, int]:
    """The tile of ``tokens`` tokens (powers of two per axis) that pads the grid least; ties go to one
    frame deep, then to the squarest, then to the widest tile."""
    best = None
    for tf in (1, 2, 4):
        for th in (2 ** i for i in range(8)):
            tw = tokens // (tf * th)
            if tf * th * tw != tokens or tw < 1:
                continue
            padded = math.ceil(frames / tf) * tf * math.ceil(rows / th) * th * math.ceil(cols / tw) * tw
            key = (padded, tf, abs(math.log2(th / tw)), -tw)
            if best is None or key < best[0]:
                best = (key, (tf, th, tw))
    return best[1]


@dataclass(frozen=True)
class TileLayout:
    """The tiles of a ``frames x rows x cols`` token grid (frames first, row-major), tile ``(tf, th, tw)``,
    behind ``prefix`` tokens that are not frames (e.g. text a joint attention puts first). The
    prefix comes first in tile order, cut into runs of ``tile_tokens``; its tiles count as first-frame
    tiles (frame 0), so every pattern keeps them as keys for every query and lets them attend to all."""

    frames: int
    rows: int
    cols: int
    tile: tuple[int, int, int]
    prefix: int = 0

    @classmethod
    def runs(cls, tokens: int, tile_tokens: int = TILE_TOKENS) -> "TileLayout":
        """Tiles that are runs of ``tile_tokens`` consecutive tokens (the grid seen as one row)."""
        return cls(1, 1, tokens, (1, 1, tile_tokens))

    @property
    def is_runs(self) -> bool:
        return self.frames == 1 and self.rows == 1 and self.tile[:2] == (1, 1)

    def describe(self) -> str:
        """The tile as the log and the benchmark name it: ``1x8x16`` or ``runs of 128 tokens``."""
        return f"runs of {self.tile_tokens} tokens" if self.is_runs else "x".join(map(str, self.tile))

    @property
    def tokens(self) -> int:
        return self.prefix + self.frames * self.rows * self.cols

    @property
    def prefix_tiles(self) -> int:
        return math.ceil(self.prefix / self.tile_tokens)

    @property
    def tile_tokens(self) -> int:
        return math.prod(self.tile)

    @property
    def tiles_per_axis(self) -> tuple[int, int, int]:
        return tuple(math.ceil(n / t) for n, t in zip((self.frames, self.rows, self.cols), self.tile))

    @property
    def num_tiles(self) -> int:
        return self.prefix_tiles + math.prod(self.tiles_per_axis)

    @property
    def slots(self) -> int:
        return self.num_tiles * self.tile_tokens

    @cached_property
    def _tables(self):
        """(source token of each slot, valid tokens of each tile, slot of each token, tile coordinates)."""
        tf, th, tw = self.tile
        nt, nr, nc = self.tiles_per_axis
        f = torch.arange(nt * tf).view(nt, tf, 1, 1, 1, 1)
        r = torch.arange(nr * th).view(1, 1, nr, th, 1, 1)
        c = torch.arange(nc * tw).view(1, 1, 1, 1, nc, tw)
        valid = (f < self.frames) & (r < self.rows) & (c < self.cols)
        source = self.prefix + f * (self.rows * self.cols) + r * self.cols + c
        # [tile (nt, nr, nc), slot (tf, th, tw)], behind the prefix's runs
        grid_tiles = nt * nr * nc
        prefix_slots = torch.arange(self.prefix_tiles * self.tile_tokens).view(-1, self.tile_tokens)
        valid = torch.cat([prefix_slots < self.prefix,
                           valid.permute(0, 2, 4, 1, 3, 5).reshape(grid_tiles, self.tile_tokens)])
        source = torch.cat([prefix_slots, source.permute(0, 2, 4, 1, 3, 5).reshape(grid_tiles, self.tile_tokens)])
        order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)   # valid slots first
        valid = valid.gather(1, order)
        source = source.gather(1, order)
        counts = valid.sum(1)
        source = torch.where(valid, source, source[:, :1])                     # padding repeats the tile's first token
        slot_of_token = torch.empty(self.tokens, dtype=torch.long)
        slot_of_token[source[valid]] = torch.arange(self.slots).view(self.num_tiles, -1)[valid]
        coords = torch.stack(torch.meshgrid(torch.arange(nt), torch.arange(nr), torch.arange(nc), indexing="ij"), -1)
        coords = torch.cat([torch.zeros(self.prefix_tiles, 3, dtype=torch.long), coords.reshape(-1, 3)])
        return source.reshape(-1), counts.to(torch.int32), slot_of_token, coords

    def _table(self, index: int, device) -> torch.Tensor:
        """Table ``index`` of ``_tables`` on ``device``, copied there once (a copy per call would wait for the GPU)."""
        return SHAPES.get(("table", self, index, str(device)), lambda: self._tables[index].to(device))

    def source(self, device) -> torch.Tensor:
        """[slots] token index of each slot (padding repeats a token of its tile)."""
        return self._table(0, device)

    def counts(self, device) -> torch.Tensor:
        """[tiles] int32: valid tokens of each tile (its first slots)."""
        return self._table(1, device)

    def slot_of_token(self, device) -> torch.Tensor:
        """[tokens] the slot that holds each token."""
        return self._table(2, device)

    @property
    def coords(self) -> torch.Tensor:
        """[tiles, 3] (frame, row, column) of each tile, in tiles; (0, 0, 0) for the prefix's tiles."""
        return self._tables[3]

    def key_valid(self, device) -> torch.Tensor:
        """[slots] bool: slots that hold a token (False for padding)."""
        counts = self.counts(device).long()
        return (torch.arange(self.tile_tokens, device=device)[None, :] < counts[:, None]).reshape(-1)

    def to_tiles(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """``x`` with its ``dim`` axis (the tokens) in tile order: [..., tokens, ...] -> [..., slots, ...]."""
        return x.index_select(dim, self.source(x.device))

    def from_tiles(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Back from tile order: [..., slots, ...] -> [..., tokens, ...] (padding dropped)."""
        return x.index_select(dim, self.slot_of_token(x.device))
