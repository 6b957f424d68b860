"""Several CPU processes standing in for Raylight's GPU workers (torch.distributed over gloo).

What runs here is Raylight's own code: its ``USPInjectRegistry`` puts its ``usp_dit_forward`` and its
xFuser-attention forwards into the host's Wan model, exactly as a Raylight worker does. What is a stand-in,
written here, is xFuser (and yunchang's ``AttnType``), which needs CUDA: the few names Raylight imports from it,

* ``xfuser.core.distributed``: ``get_sequence_parallel_world_size`` / ``_rank``, ``get_sp_group()`` (a group
  whose ``all_gather(tensor, dim)`` concatenates every rank's tensor, as xFuser's ``GroupCoordinator`` does);
* ``xfuser.core.long_ctx_attention.xFuserLongContextAttention``: Ulysses attention, as yunchang's: this rank's
  chunk [B, n, H, D] all-to-all'ed to [B, n * W, H / W, D] (all tokens, padding included, of H / W heads),
  PyTorch's SDPA, and the all-to-all back.

The stand-in modules sit in ``sys.modules`` before Raylight is imported, so Raylight's own xFuser shim leaves
them alone. Without Raylight in the host's custom_nodes the callers skip (loudly).
"""
from __future__ import annotations

import enum
import os
import sys
import traceback
import types
from pathlib import Path

import torch
import torch.distributed as dist

RAYLIGHT = "raylight"


def raylight_source(host: Path) -> Path | None:
    """Raylight's ``src`` folder in the host's custom_nodes, or None."""
    src = Path(host) / "custom_nodes" / RAYLIGHT / "src"
    return src if (src / "raylight" / "xfuser_compat.py").is_file() else None


class StandInGroup:
    """xFuser's sequence-parallel ``GroupCoordinator``, the part Raylight and FIS use."""

    def __init__(self, world: int, rank: int):
        self.world_size, self.rank_in_group, self.device_group = world, rank, dist.group.WORLD

    def all_gather(self, tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=dim)


def _all_to_all(x: torch.Tensor, scatter: int, gather: int, world: int) -> torch.Tensor:
    """yunchang's SeqAllToAll4D: split ``x`` along ``scatter`` into ``world`` parts, send part i to rank i, and
    concatenate what arrives along ``gather``."""
    send = [p.contiguous() for p in x.chunk(world, dim=scatter)]
    received = [torch.empty_like(send[0]) for _ in range(world)]
    dist.all_to_all(received, send)
    return torch.cat(received, dim=gather)


class StandInLongContextAttention:
    """xFuser's ``xFuserLongContextAttention`` with Ulysses degree W (ring degree 1) and a PyTorch kernel."""

    calls: list = []

    def __init__(self, use_sync=False, attn_type=None, **kwargs):
        self.attn_type = attn_type

    def __call__(self, attn, query, key, value, **kwargs):
        if kwargs.get("joint_tensor_query") is not None:
            raise NotImplementedError("the stand-in has no joint (text) attention")
        world = dist.get_world_size()
        q, k, v = (_all_to_all(t, 2, 1, world) for t in (query, key, value))   # [B, n*W, H/W, D]
        StandInLongContextAttention.calls.append(q.shape[1])
        out = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
        return _all_to_all(out, 1, 2, world)                                     # [B, n, H, D]


def install_xfuser_stand_in(world: int, rank: int):
    """Put the stand-in xFuser and yunchang modules in ``sys.modules`` (see the module docstring)."""
    group = StandInGroup(world, rank)
    modules = {name: types.ModuleType(name) for name in (
        "xfuser", "xfuser.core", "xfuser.core.distributed", "xfuser.core.long_ctx_attention", "yunchang", "yunchang.kernels")}
    distributed = modules["xfuser.core.distributed"]
    distributed.get_sequence_parallel_world_size = lambda: world
    distributed.get_sequence_parallel_rank = lambda: rank
    distributed.get_ring_parallel_world_size = lambda: 1
    distributed.get_sp_group = lambda: group
    modules["xfuser.core.long_ctx_attention"].xFuserLongContextAttention = StandInLongContextAttention
    modules["yunchang.kernels"].AttnType = enum.Enum("AttnType", "TORCH")
    sys.modules.update(modules)


def inject_raylight(model_patcher, raylight_src: Path):
    """Raylight's Ulysses forwards in ``model_patcher``'s diffusion model, by Raylight's own injector."""
    if str(raylight_src) not in sys.path:
        sys.path.insert(0, str(raylight_src))
    import raylight.distributed_modules.attention as xfuser_attn
    xfuser_attn.set_attn_type("TORCH")
    xfuser_attn.set_sync_ulysses(False)
    from raylight.distributed_modules.usp import USPInjectRegistry
    USPInjectRegistry.inject(model_patcher, None, 0, False, False)


def _worker(rank: int, world: int, port: int, case: str, out_dir: str, raylight_src: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world)
        import conftest
        conftest.boot_host()
        import sequence_parallel_cases
        result = getattr(sequence_parallel_cases, case)(world, rank, Path(raylight_src))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()   # no rank tears gloo down while another still talks to it (that aborts the process)
    except BaseException:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(world: int, case: str, out_dir: Path, raylight_src: Path | None) -> list:
    """Run ``sequence_parallel_cases.<case>(world, rank, raylight_src)`` on ``world`` CPU processes (gloo); return
    each rank's result."""
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        mp.spawn(_worker, args=(world, port, case, str(out_dir), str(raylight_src)), nprocs=world)
    except Exception as error:
        errors = "\n".join(p.read_text() for p in sorted(Path(out_dir).glob("rank*.err")))
        raise AssertionError(f"{case} failed on {world} ranks:\n{errors or error}") from None
    return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world)]
