"""A stand-in of Raylight's Ray worker (``RayWorker``) for tests/test_raylight_nodes.py: a Ray actor holding a tiny
real Wan ModelPatcher, with Raylight's ``model_function_runner`` API (its two methods, as Raylight writes them).

A stand-in because Raylight's own ``RayWorker`` cannot run on the CPU: its constructor opens an NCCL process group
on ``cuda:<id>``, and its module imports xFuser names beyond the harness's xFuser stand-in. The test checks that the
two methods here are still Raylight's. Ray imports this module in its worker processes (the test puts tests/ and
the host on their PYTHONPATH, as Raylight's ``ray.init`` puts the host there); it must not import the pack, which the
node under test brings to the worker itself.
"""
from __future__ import annotations

from pathlib import Path


class StandInWorker:
    """Raylight's ``RayWorker`` as a patch node sees it: ``self.model`` and the two runners."""

    def __init__(self, comfyui: str, seed: int):
        from host_path import boot_cpu
        boot_cpu(Path(comfyui))
        from tiny_models import tiny_wan
        self.model = tiny_wan(num_layers=6, seed=seed)

    def model_function_runner(self, fn, *args, **kwargs):
        self.model = fn(self.model, *args, **kwargs)

    def model_function_runner_get_values(self, fn, *args, **kwargs):
        return fn(self.model, *args, **kwargs)


def sample_latent(model, latent, positive):
    """What the worker's model samples (ComfyUI's KSampler, 3 steps), sent by reference to this module."""
    from tiny_models import sample
    return sample(model, latent, positive, steps=3)


def pack_modules(model) -> list:
    """The pack modules the worker imported: the node under test imports the pack there itself."""
    import sys
    return sorted(name for name in sys.modules if name.endswith(".nodes.ui.fis_node"))
