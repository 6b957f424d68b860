"""Calibration: measure, during one dense sampling run of the user's model, how badly FIS would do in each block at
each step, and write what it measured as a profile (:mod:`.profiles`) at the end of the run.

Every block runs on all frames, so the model's output is the dense one, bit for bit. Beside each block call, the
block runs a second time as FIS would run it sparse (G=2, the group FIS with every block sparse gives that block at
that step, with the frames FIS's ``auto`` anchors: an image-to-video first frame): on its frame subset alone, the
skipped frames restored by the corrected interpolation (its fit sums carried over the run's steps, as FIS carries
them). The defect ``|fis(x) - y| / |y|`` over all the frames is FIS's
whole error in that block alone (the computed frames' error from seeing half the frames, and the interpolation's),
relative to the residual stream it lands in: a block whose update is small matters little even where its
interpolation is poor. The cost is one dense run plus each block again on half its frames, about 1.5 dense runs
(at most about two), and the memory of two more copies of a block's tokens (its inputs, which some blocks
overwrite, and the sparse output). A block's error here does not run through the later blocks; how it grows there
is not measured.

It runs as a long ComfyUI job: a progress bar on the FIS Calibrate node (one tick per block and step), a check for the
queue's cancel before every block it measures, and the profile written only when the run completes, renamed into
place (:func:`.profiles.save_profile`), so that a cancelled run leaves the earlier profile of that name, or none.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import replace

import comfy.patcher_extension
import torch

from ..fis_core import FitSums, FisSchedule, build_plan, format_block_list, restore
from .call_state import SharedByClones
from .families import FamilyAdapter
from .patcher import WrappingBlockPatch, batch_layout, model_block_keys, schedule_position, sparse_args
from .profiles import check_name, save_profile

WRAPPER_KEY = "fis_calibration"
#: transformer_options key of the model call's (frame grid, sampling step, schedule with the call's anchors, what its
#: sparse blocks share), for the block patches
CALL_OPTION = "fis_calibration_call"
GROUPS = 2
INTERPOLATION = "corrected"
LOG = logging.getLogger("ComfyUI-FIS")


@functools.lru_cache(maxsize=64)
def _plan(frames: int, computed: tuple[int, ...], device: torch.device):
    return build_plan(frames, computed, INTERPOLATION, device)


class Calibration(SharedByClones):
    """The measurements of one calibrated model: per (step, block) the sum of its defects over the model calls
    (on the device, read once at the end of the run) and their count."""

    def __init__(self, family: FamilyAdapter, num_blocks: int, name: str, node_id: str | None = None):
        self.family = family
        self.num_blocks = num_blocks
        self.name = name
        self.node_id = node_id
        self.progress = None
        self.schedule = FisSchedule(tuple(range(num_blocks)), GROUPS)
        self.sums: dict[tuple[int, int], list] = {}
        self.fit_sums = FitSums()
        self.anchors: set[int] = set()

    def measure(self, position: int, key: tuple[str, int], args: dict, y: torch.Tensor, block):
        """Add the defect of ``block`` (``key``, at ``position``), whose call with ``args`` gave ``y``: run it again as
        FIS would (on its frame subset, the rest restored) and compare with ``y``; stop here if the run was cancelled."""
        import comfy.model_management  # here, not at import: importing it picks the device
        grid, step, schedule, shared = args["transformer_options"][CALL_OPTION]
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.progress.update_absolute(step * self.num_blocks + position + 1)
        x = args["img"]
        layout = self.family.image_layout(key, args, grid)
        if layout is None:
            return
        computed = schedule.fit_to(layout.frames).frames_for_block(position, layout.frames, step)
        if computed is None:   # the group and the anchors cover every frame: nothing FIS would skip
            return
        plan = _plan(layout.frames, computed, x.device)
        try:
            sub_args = sparse_args(self.family, key, args, layout, plan, shared)
        except ValueError:     # FIS runs this call dense too
            return
        key = position, batch_layout(args["transformer_options"], x.shape[0])
        sparse = restore(x, block(sub_args)["img"], layout, plan, (self.fit_sums, key))
        error = stream = 0.0
        tokens = layout.tokens_per_frame
        for frame in range(layout.frames):   # fp32 temporaries of one frame
            rows = slice(layout.prefix + frame * tokens, layout.prefix + (frame + 1) * tokens)
            truth = y[:, rows].float()
            error = error + (sparse[:, rows].float() - truth).square().sum()
            stream = stream + truth.square().sum()
        total = self.sums.setdefault((step, position), [0.0, 0])
        total[0] = total[0] + (error / stream).sqrt()
        total[1] += 1

    def profile(self) -> dict:
        """The profile of the measurements (see :mod:`.profiles`)."""
        steps = 1 + max(step for step, _ in self.sums)
        by_step = [[None] * self.num_blocks for _ in range(steps)]
        for (step, block), (total, count) in self.sums.items():
            by_step[step][block] = float(total) / count
        means = []
        for block in range(self.num_blocks):
            measured = [row[block] for row in by_step if row[block] is not None]
            means.append(sum(measured) / len(measured) if measured else None)
        return {"family": self.family.name, "blocks": self.num_blocks, "steps": steps, "groups": GROUPS,
                "interpolation": INTERPOLATION, "anchors": sorted(self.anchors), "defect": means,
                "defect_by_step": by_step}

    # ComfyUI wrappers -------------------------------------------------------------------------------

    def outer_sample_wrapper(self, executor, noise, latent_image, sampler, sigmas, *args, **kwargs):
        """One sampling run: measure it, then write the profile (not if it was cancelled: that raises here)."""
        self.sums.clear()
        self.fit_sums.clear()
        self.anchors.clear()
        import comfy.utils  # here, not at import: it imports the device's memory management
        self.progress = comfy.utils.ProgressBar((len(sigmas) - 1) * self.num_blocks, node_id=self.node_id)
        result = executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
        if not self.sums:
            LOG.warning("FIS Calibrate: the %s model never ran a block on more than one latent frame, so there was "
                        "nothing to measure; profile '%s' not written", self.family.name, self.name)
            return result
        profile = self.profile()
        broken = tuple(b for b, defect in enumerate(profile["defect"]) if defect is not None and not math.isfinite(defect))
        if broken:
            LOG.warning("FIS Calibrate: the defect measured in blocks %s is NaN or infinite: the %s model's blocks gave "
                        "non-finite values there (check its weights, LoRAs and precision, e.g. an FP8 overflow); "
                        "profile '%s' not written", format_block_list(broken), self.family.name, self.name)
            return result
        path = save_profile(self.name, profile)
        LOG.info("FIS Calibrate: wrote %s (use it with sparse_blocks 'profile:%s' on the FIS node)", path, self.name)
        return result

    def apply_model_wrapper(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        model = executor.class_obj.diffusion_model
        grid = self.family.frame_grid(model, x, kwargs)
        sigma_max = executor.class_obj.model_sampling.sigma_max
        step = schedule_position(transformer_options.get("sample_sigmas"), float(t.max()), sigma_max)[0]
        anchors = self.family.default_anchors(model, x, c_concat, kwargs, transformer_options)
        schedule = replace(self.schedule, anchors=tuple(anchors))
        self.anchors.update(schedule.anchors)
        transformer_options = {**transformer_options, CALL_OPTION: (grid, step, schedule, {})}
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


class CalibrationPatch(WrappingBlockPatch):
    """The entry of one block while calibrating: runs it (or the replacement it wraps) and measures it."""

    def __init__(self, calibration: Calibration, position: int, key: tuple[str, int], previous=None):
        super().__init__(position, key, previous)
        self.calibration = calibration

    def __call__(self, args: dict, extra: dict):
        block = self.inner_block(extra)
        if CALL_OPTION not in args.get("transformer_options", {}):
            return block(args)
        # the inputs as they came, for the second run: some families' blocks add their updates (img, txt) in place
        inputs = {**args, **{name: value.clone() for name, value in args.items() if isinstance(value, torch.Tensor)}}
        out = block(args)
        self.calibration.measure(self.position, self.key, inputs, out["img"], block)
        return out


def apply_calibration(model, name: str, node_id: str | None = None):
    """A clone of ``model`` that measures its next sampling runs and writes profile ``name`` after each, showing its
    progress on node ``node_id`` (None: the node that runs the sampler)."""
    check_name(name, "profile_name")
    patched = model.clone()
    family, keys = model_block_keys(patched)
    if family is None:
        raise ValueError(f"model: {type(patched.get_model_object('diffusion_model')).__name__} is not a model FIS "
                         f"supports, so there is nothing to calibrate")
    calibration = Calibration(family, len(keys), name, node_id)
    replaced = patched.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for position, key in enumerate(keys):
        patched.set_model_patch_replace(CalibrationPatch(calibration, position, key, replaced.get(key)), "dit", *key)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, calibration.apply_model_wrapper)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, calibration.outer_sample_wrapper)
    return patched
