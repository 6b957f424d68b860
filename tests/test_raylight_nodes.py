"""The Raylight variants of the FIS and FPS nodes (nodes/ui/raylight_nodes.py), end to end with real Ray actors.

A local Ray cluster (CPU) runs two actors standing in for Raylight's workers (tests/raylight_worker.py: Raylight's
``model_function_runner`` API over a tiny real Wan model; Raylight's own ``RayWorker`` needs CUDA and NCCL). The
workers import neither the pack nor this test: the node sends its function by value and the worker imports the pack
from its folder. Without Ray (``pip install ray``) or Raylight these tests skip and say so; ``FIS_REQUIRE_RAYLIGHT=1``
makes that a failure.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from host_path import PACK_ROOT
from sequence_parallel_harness import raylight_source
from tiny_models import fis, node_defaults, relative_error, sample, text, tiny_wan

NO_RAY = "RAYLIGHT NODE TESTS DID NOT RUN: {} (see README, Several GPUs)"
FPS_WIDGETS = dict(precision="fp8", tile="auto", sparsity=0.5, pattern="window", dense_steps="")


def fis_widgets(**changes) -> dict:
    return node_defaults() | {"sparse_blocks": "1-4", "interpolation": "linear"} | changes


def skip(reason: str):
    if os.environ.get("FIS_REQUIRE_RAYLIGHT"):
        pytest.fail(NO_RAY.format(reason), pytrace=False)
    pytest.skip(NO_RAY.format(reason))


@pytest.fixture(scope="module")
def workers(host, tmp_path_factory):
    """Two stand-in workers on a local Ray cluster, each holding ``tiny_wan(num_layers=6, seed=0)``; their runtime
    environment is Raylight's for a local cluster (an empty working folder, the host on PYTHONPATH) plus tests/."""
    try:
        import ray
    except ImportError:
        skip("no ray")
    from raylight_worker import StandInWorker
    path = os.pathsep.join(str(p) for p in (PACK_ROOT / "tests", PACK_ROOT / "scripts", host))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"working_dir": str(tmp_path_factory.mktemp("ray_runtime_env")),
                          "env_vars": {"PYTHONPATH": path}})
    try:
        actor = ray.remote(StandInWorker).options(num_cpus=0)
        yield {"workers": [actor.remote(str(host), 0) for _ in range(2)]}
    finally:
        ray.shutdown()


def worker_samples(workers, latent) -> list:
    import ray
    from raylight_worker import sample_latent
    return ray.get([worker.model_function_runner_get_values.remote(sample_latent, latent, text())
                    for worker in workers["workers"]])


def test_the_widgets_are_the_plain_nodes(host):
    from comfyui_fis.nodes import (FPSAttention, FPSAttentionRaylight, FrameInterleavedSparsity,
                                   FrameInterleavedSparsityRaylight)
    for plain, variant in ((FrameInterleavedSparsity, FrameInterleavedSparsityRaylight),
                           (FPSAttention, FPSAttentionRaylight)):
        inputs = variant.INPUT_TYPES()["required"]
        assert inputs.pop("ray_actors")[0] == "RAY_ACTORS" and variant.RETURN_TYPES == ("RAY_ACTORS",)
        assert inputs == {k: v for k, v in plain.INPUT_TYPES()["required"].items() if k != "model"}


@pytest.mark.parametrize("node, change, message", [
    ("FrameInterleavedSparsityRaylight", {"sparse_blocks": "1-x"}, "sparse_blocks"),
    ("FrameInterleavedSparsityRaylight", {"quality": "best"}, "quality"),
    ("FrameInterleavedSparsityRaylight", {"anchor_frames": "first"}, "anchor_frames"),
    ("FrameInterleavedSparsityRaylight", {"sparse_blocks": "profile:../../x"}, "sparse_blocks: '../../x' is not a profile name"),
    ("FrameInterleavedSparsityRaylight", {"sparse_blocks": "profile:nope"}, "sparse_blocks: there is no profile 'nope'"),
    ("FrameInterleavedSparsityRaylight", {"sparse_blocks": "profile:wan6:7"}, "sparse_blocks: 7 sparse blocks is out of range"),
    ("FrameInterleavedSparsityRaylight", {"sparse_blocks": "profile:wan6:two"}, "sparse_blocks: 'two' is not a number"),
    ("FPSAttentionRaylight", {"tile": "8x8"}, "tile"),
    ("FPSAttentionRaylight", {"dense_steps": "40"}, "dense_steps"),
])
def test_bad_widgets_fail_on_the_driver_before_any_worker(host, tmp_path, node, change, message):
    """No Ray needed: the check runs before ``ray`` is imported (no workers: ``ray_actors`` None). A profile's name
    and file are checked as the plain node checks them (the user directory holds a 6-block profile ``wan6``)."""
    from comfyui_fis.nodes import NODE_CLASS_MAPPINGS
    from test_calibration_host import user_directory
    (tmp_path / "fis_profiles").mkdir()
    (tmp_path / "fis_profiles" / "wan6.json").write_text('{"family": "wan", "blocks": 6, "defect": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}')
    widgets = (fis_widgets() if "Sparsity" in node else FPS_WIDGETS) | change
    with user_directory(tmp_path), pytest.raises(ValueError, match=message):
        NODE_CLASS_MAPPINGS[node]().patch(None, **widgets)


def test_a_rewritten_profile_patches_the_workers_again(host, tmp_path):
    """The host reruns a node whose ``IS_CHANGED`` changed: the Raylight node's follows the profile's file, as the
    plain node's does (tests/test_profile_cache_server.py runs that through the server)."""
    from comfyui_fis.nodes import FrameInterleavedSparsityRaylight
    from test_calibration_host import user_directory
    profile = tmp_path / "fis_profiles" / "wan6.json"
    profile.parent.mkdir()
    widgets = fis_widgets(sparse_blocks="profile:wan6:2")
    with user_directory(tmp_path):
        fingerprints = []
        for defect in ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]):
            profile.write_text(f'{{"family": "wan", "blocks": 6, "defect": {defect}}}')
            fingerprints += [FrameInterleavedSparsityRaylight.IS_CHANGED(**widgets)] * 2
        assert fingerprints[0] == fingerprints[1] != fingerprints[2] == fingerprints[3]
        assert FrameInterleavedSparsityRaylight.IS_CHANGED(**fis_widgets(quality="balanced", sparse_blocks="profile:wan6")) == ""


def test_the_stand_in_runs_raylights_own_runners(host):
    src = raylight_source(host)
    if src is None:
        skip("no Raylight in the host's custom_nodes")
    worker = next(n for n in ast.parse((src / "raylight/distributed_worker/ray_worker.py").read_text()).body
                  if isinstance(n, ast.ClassDef) and n.name == "RayWorker")
    stand_in = next(n for n in ast.parse((Path(__file__).parent / "raylight_worker.py").read_text()).body
                    if isinstance(n, ast.ClassDef) and n.name == "StandInWorker")

    def runners(cls):
        return {n.name: ast.dump(n) for n in cls.body if isinstance(n, ast.FunctionDef) and "runner" in n.name}
    assert runners(stand_in) == runners(worker) and len(runners(worker)) == 2


def test_the_workers_models_are_patched_as_the_plain_nodes_patch(workers):
    """FIS (Raylight), then FPS (Raylight): every worker samples what the plain nodes' model samples here."""
    import ray
    from comfyui_fis.nodes import FPSAttention, FPSAttentionRaylight, FrameInterleavedSparsityRaylight
    from raylight_worker import pack_modules
    latent = torch.randn(1, 16, 5, 16, 16, generator=torch.Generator().manual_seed(3))
    model = tiny_wan(num_layers=6, seed=0)
    dense = sample(model, latent, text(), steps=3)
    for worker in worker_samples(workers, latent):
        torch.testing.assert_close(worker, dense, rtol=1e-5, atol=1e-5)

    assert FrameInterleavedSparsityRaylight().patch(workers, **fis_widgets()) == (workers,)
    assert ray.get(workers["workers"][0].model_function_runner_get_values.remote(pack_modules)) == [
        "comfyui_fis.nodes.ui.fis_node"]    # the pack, imported in the worker under the driver's name
    model = fis(model, **fis_widgets())
    expected = sample(model, latent, text(), steps=3)
    assert relative_error(expected, dense) > 1e-3
    for worker in worker_samples(workers, latent):
        torch.testing.assert_close(worker, expected, rtol=1e-5, atol=1e-5)

    FPSAttentionRaylight().patch(workers, **FPS_WIDGETS)
    expected = sample(FPSAttention().patch(model, **FPS_WIDGETS)[0], latent, text(), steps=3)
    for worker in worker_samples(workers, latent):
        torch.testing.assert_close(worker, expected, rtol=1e-5, atol=1e-5)


def test_a_widget_the_workers_model_refuses_names_itself(workers):
    """Block 9 of a 6-block model: only the worker can tell; Ray raises its error, which names the widget."""
    from comfyui_fis.nodes import FrameInterleavedSparsityRaylight
    with pytest.raises(ValueError, match="sparse_blocks"):
        FrameInterleavedSparsityRaylight().patch(workers, **fis_widgets(sparse_blocks="1-9"))
