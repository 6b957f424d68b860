"""Raylight variants of the FIS and FPS nodes: ``RAY_ACTORS`` in, ``RAY_ACTORS`` out; the normal node's ``patch``
runs on the model of every Raylight worker.

How the patch reaches the workers. Raylight keeps the model in Ray actors and patches it by sending a function to
each actor's ``model_function_runner(fn, *args)``, which sets ``worker.model = fn(worker.model, *args)``. Ray pickles
that function with cloudpickle: by value if the driver cannot find it by name in an imported module (a local
function, ``__main__``, or a module registered by value), else by reference (module and name, which the worker
imports again). Raylight's ``ray_patch`` sends a closure (by value) over its node and method, whose classes and
helpers travel by reference to the ``raylight`` package, which Raylight's ``ray.init`` ships to the workers
(``runtime_env`` ``py_modules``). This pack is not shipped, and ComfyUI imports it under its folder's path as the
module name (``load_custom_node``), which no worker can import (tried: "No module named ..."). So this module is
registered with cloudpickle to travel by value: :func:`patch_on_worker`, which uses nothing else of the pack, arrives
as code, imports the pack from its folder under the driver's module name (the workers of a local Ray cluster see the
driver's files; a remote cluster needs the pack at the same path) and runs the plain node there. Only widget values
travel with it, never objects of the pack.

The nodes are registered with or without Raylight: ComfyUI loads custom nodes in folder order (``ComfyUI-FIS``
before ``raylight``), so asking whether Raylight is loaded would depend on that order. Without Raylight nothing
gives a ``RAY_ACTORS`` input, and ``ray`` is imported only when a node runs.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from .fis_node import FrameInterleavedSparsity
from .fis_widgets import resolve_settings
from .fps_node import FPSAttention, fps_settings_from_widgets

PACK_DIR = str(Path(__file__).resolve().parents[2])
#: The name the pack is imported under here (ComfyUI: its folder's path); the workers import it under the same.
PACK_NAME = __package__.rsplit(".", 2)[0]
NEEDS_RAYLIGHT = (" Needs Raylight (custom_nodes/raylight): connect its Ray loader's RAY_ACTORS, and its Ray sampler "
                  "after this node. Without Raylight the node has nothing to connect to.")


def patch_on_worker(model, pack_dir: str, pack_name: str, node_module: str, node_class: str, widgets: dict):
    """Runs in a Raylight worker (sent by value, so it names nothing else of the pack): the plain node's ``patch``
    on the worker's model, the pack imported first from ``pack_dir`` as ComfyUI's loader imports it."""
    if pack_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(pack_name, f"{pack_dir}/__init__.py")
        sys.modules[pack_name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[pack_name])
    node = getattr(importlib.import_module(node_module), node_class)()
    return getattr(node, node.FUNCTION)(model, **widgets)[0]


class RaylightVariant:
    """The plain node ``NODE`` on every Raylight worker; ``CHECK`` validates its widgets on the driver first, so
    that a bad value fails at once, before any worker is touched (the worker's node checks the rest against its
    model, and Ray raises that error here). Patching again replaces the earlier patch, as the plain node does."""

    NODE: type
    CHECK: Callable
    CATEGORY = "model_patches/FIS"
    RETURN_TYPES = ("RAY_ACTORS",)
    OUTPUT_TOOLTIPS = ("Raylight's workers, their models patched (each worker holds a patched copy).",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        widgets = {name: spec for name, spec in cls.NODE.INPUT_TYPES()["required"].items() if name != "model"}
        return {"required": {"ray_actors": ("RAY_ACTORS", {"tooltip": "Raylight's workers, from its Ray loader (or "
                                                                       "another Raylight patch node)."}), **widgets}}

    def patch(self, ray_actors, **widgets):
        self.CHECK(**widgets)
        import ray
        from ray import cloudpickle
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        node = self.NODE
        ray.get([worker.model_function_runner.remote(patch_on_worker, PACK_DIR, PACK_NAME, node.__module__,
                                                     node.__name__, widgets) for worker in ray_actors["workers"]])
        return (ray_actors,)


class FrameInterleavedSparsityRaylight(RaylightVariant):
    """Frame Interleaved Sparsity on Raylight's workers."""

    NODE = FrameInterleavedSparsity
    DESCRIPTION = ("Frame Interleaved Sparsity on the model in each of Raylight's GPU workers (Ulysses sequence "
                   "parallelism: each worker's sparse blocks gather the frames and compute the interleaved subset; "
                   "Wan, see the README's 'Several GPUs'). The widgets are the FIS node's." + NEEDS_RAYLIGHT)
    CHECK = staticmethod(lambda **widgets: resolve_settings(widgets, None, None))
    IS_CHANGED = FrameInterleavedSparsity.IS_CHANGED   # a recalibrated profile patches the workers again


class FPSAttentionRaylight(RaylightVariant):
    """FP8 + sparse attention on Raylight's workers."""

    NODE = FPSAttention
    DESCRIPTION = ("FP8 + sparse attention on the model in each of Raylight's GPU workers. The widgets are the FPS "
                   "node's. Raylight's own attention forwards do not yet call ComfyUI's attention override, so "
                   "under Raylight's sequence parallelism FPS is not reached (README, 'Several GPUs')."
                   + NEEDS_RAYLIGHT)
    CHECK = staticmethod(fps_settings_from_widgets)
