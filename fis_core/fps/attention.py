"""FPS attention of video tokens: tile layout, pattern, and the kernel or the reference, in one call."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from .mask import PATTERNS, kept_lists, topk_pattern, window_pattern
from .reference import PRECISIONS, tile_attention_reference
from .tiles import SHAPES, TileLayout, choose_tile

BACKENDS = ("auto", "triton", "reference")


@dataclass(frozen=True)
class FpsSettings:
    """``tile`` None picks the least-padding tile for each grid."""

    precision: str = "fp8"
    sparsity: float = 0.0
    pattern: str = "window"
    tile: tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: '{self.precision}' is unknown; choose one of {', '.join(PRECISIONS)}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern: '{self.pattern}' is unknown; choose one of {', '.join(PATTERNS)}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity: must be in [0, 1); got {self.sparsity}")

    @property
    def exact(self) -> bool:
        """Dense BF16: nothing to do but the original attention."""
        return self.precision == "bf16" and self.sparsity == 0.0

    def layout(self, grid: tuple[int, int, int], prefix: int = 0) -> TileLayout:
        """The tiles of ``grid`` behind ``prefix`` non-frame tokens. With ``tile`` auto and sparsity 0 (no
        pattern, so nothing needs 3D neighbours) they are runs of 128 consecutive tokens: the grid pads by
        less than one tile, where 3D tiles pad every frame's rows (a 720p grid of 45x80: 13.8% more tile pairs)."""
        return SHAPES.get(("layout", self.tile, self.sparsity == 0.0, tuple(grid), prefix),
                          lambda: _layout(self.tile, self.sparsity == 0.0, tuple(grid), prefix))


def _layout(tile, dense: bool, grid: tuple[int, int, int], prefix: int) -> TileLayout:
    if tile is None and dense:
        return TileLayout.runs(prefix + math.prod(grid))
    return TileLayout(*grid, tile or choose_tile(*grid), prefix)


@lru_cache(maxsize=16)
def triton_reason(device: torch.device, precision: str) -> str | None:
    """Why the Triton kernel cannot run on ``device`` at ``precision`` (None: it can)."""
    if device.type != "cuda":
        return f"the tensors are on {device.type}, not a CUDA GPU"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    major, minor = torch.cuda.get_device_capability(device)
    if precision == "fp8" and (major, minor) < (8, 9):
        return f"FP8 tensor cores need compute capability 8.9 or newer (Ada, Hopper); this GPU is {major}.{minor}"
    if major < 8:
        return f"the kernel needs compute capability 8.0 or newer; this GPU is {major}.{minor}"
    return None


def _dense_lists(tiles: int, device: str):
    return SHAPES.get(("dense lists", tiles, device), lambda: tuple(
        x.unsqueeze(0).to(device) for x in kept_lists(torch.ones(tiles, tiles, dtype=torch.bool))))


def _window_lists(layout: TileLayout, sparsity: float, device: str):
    def make():
        keep = window_pattern(layout, sparsity)
        return (keep.to(device),) + tuple(x.unsqueeze(0).to(device) for x in kept_lists(keep))
    return SHAPES.get(("window lists", layout, sparsity, device), make)


def fps_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int, int],
                  settings: FpsSettings, backend: str = "auto", scale: float | None = None,
                  prefix: int = 0) -> torch.Tensor:
    """Self-attention of the video tokens ``q``, ``k``, ``v`` [B, tokens, H, D], tokens frames-first over
    ``grid`` (frames, rows, columns) behind ``prefix`` other tokens (text), which every query attends to and
    which attend to everything. Returns [B, tokens, H, D]."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: '{backend}' is unknown; choose one of {', '.join(BACKENDS)}")
    layout = settings.layout(grid, prefix)
    if layout.tokens != q.shape[1]:
        raise ValueError(f"{q.shape[1]} tokens are not {prefix} prefix tokens and the grid {grid}")
    if backend == "auto":
        backend = "triton" if triton_reason(q.device, settings.precision) is None else "reference"
    def tiled(x):
        return layout.to_tiles(x, 1)
    if settings.sparsity == 0.0:
        keep = None
        kv_list, kv_count = _dense_lists(layout.num_tiles, str(q.device))
    elif settings.pattern == "window":
        keep, kv_list, kv_count = _window_lists(layout, settings.sparsity, str(q.device))
    else:
        keep = topk_pattern(tiled(q), tiled(k), layout, settings.sparsity)
        kv_list, kv_count = (x.flatten(0, 1) for x in kept_lists(keep))
    if backend == "triton":
        from .triton_kernel import attention_triton
        return attention_triton(q, k, v, layout, kv_list, kv_count, settings.precision, scale,
                                dense=settings.sparsity == 0.0)
    return layout.from_tiles(tile_attention_reference(tiled(q), tiled(k), tiled(v), layout, keep, settings.precision, scale), 1)


OP_NAME = "comfyui_fis::fps_attention"


def _register_op():
    """The ``comfyui_fis::fps_attention`` op: FPS attention as one opaque call, so that ``torch.compile``
    (ComfyUI's TorchCompileModel) keeps the model one graph around it (registered once per process)."""
    namespace, name = OP_NAME.split("::")
    if hasattr(getattr(torch.ops, namespace), name):
        return getattr(getattr(torch.ops, namespace), name)

    @torch.library.custom_op(OP_NAME, mutates_args=())
    def op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: list[int], precision: str, sparsity: float,
           pattern: str, tile: list[int] | None, prefix: int, scale: float | None) -> torch.Tensor:
        settings = FpsSettings(precision, sparsity, pattern, None if tile is None else tuple(tile))
        return fps_attention(q, k, v, tuple(grid), settings, scale=scale, prefix=prefix)

    @op.register_fake
    def _(q, k, v, grid, precision, sparsity, pattern, tile, prefix, scale):
        return torch.empty(q.shape, dtype=q.dtype, device=q.device)

    return getattr(getattr(torch.ops, namespace), name)


_OP = _register_op()


def fps_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int, int],
                     settings: FpsSettings, scale: float | None = None, prefix: int = 0) -> torch.Tensor:
    """:func:`fps_attention` (backend ``auto``) through the registered op: what the node calls."""
    tile = None if settings.tile is None else list(settings.tile)
    return _OP(q, k, v, list(grid), settings.precision, settings.sparsity, settings.pattern, tile, prefix, scale)
