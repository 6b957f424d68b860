"""Applies FIS to a ComfyUI ModelPatcher.

One :class:`SparseBlockPatch` per sparse block goes into ``patches_replace["dit"]``; an ``APPLY_MODEL``
wrapper decides for each model call whether FIS is active (the start/end percent) and where the frames
are, and hands a :class:`FisCall` to the block patches through ``transformer_options``. Nothing is kept
between model calls except index tensors that depend on the shapes alone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import comfy.patcher_extension

from ..fis_core import FisSchedule, FramePlan, build_plan, format_block_list, restore
from .families import FamilyAdapter, FrameGrid, find_family

WRAPPER_KEY = "frame_interleaved_sparsity"
CALL_KEY = "fis_call"
LOG = logging.getLogger("ComfyUI-FIS")
_MAX_PLANS = 64


@dataclass(frozen=True)
class FisSettings:
    """What the node's widgets asked for, validated. ``anchors`` None means the family's default."""

    sparse_blocks: tuple[int, ...]
    groups: int
    pattern: str = "interleave"
    interpolation: str = "linear"
    anchors: tuple[int, ...] | None = None
    start_percent: float = 0.0
    end_percent: float = 1.0


class FisRuntime:
    """What the patches of one patched model share: settings, cached index plans, warnings already given."""

    def __init__(self, family: FamilyAdapter, settings: FisSettings, num_blocks: int):
        self.family = family
        self.settings = settings
        self.num_blocks = num_blocks
        self._plans: dict = {}
        self._warned: set = set()
        self._logged_run = False
        self.sparse_blocks_run = 0

    def warn_once(self, key: str, message: str):
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning("FIS: %s", message)

    def plan(self, layout, frames, device) -> FramePlan:
        key = (layout, frames, self.settings.interpolation, str(device))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = build_plan(layout, frames, self.settings.interpolation, device)
        return plan

    def begin_call(self, base_model, x, sigma, c_concat, kwargs) -> "FisCall | None":
        """The FIS state for one model call, or None when FIS is off for this sigma."""
        sampling = base_model.model_sampling
        start = sampling.percent_to_sigma(self.settings.start_percent)
        end = sampling.percent_to_sigma(self.settings.end_percent)
        if not end < float(sigma.max()) <= start:
            return None
        model = base_model.diffusion_model
        grid = self.family.frame_grid(model, x, kwargs)
        anchors = self.settings.anchors
        if anchors is None:
            anchors = self.family.default_anchors(model, x, c_concat, kwargs)
        schedule = FisSchedule(self.settings.sparse_blocks, self.settings.groups, self.settings.pattern, anchors)
        if not self._logged_run:
            self._logged_run = True
            self._log_run(schedule, grid)
        return FisCall(self, schedule, grid)

    def _log_run(self, schedule: FisSchedule, grid: FrameGrid):
        fitted = schedule.fit_to(grid.frames)
        saved = 1.0 - fitted.computed_fraction(self.num_blocks, grid.frames)
        LOG.info("FIS: %s, sparse blocks %s of %d, groups %d, %s, %s interpolation, anchors %s, %d latent frames: "
                 "about %.0f%% of the block tokens skipped", self.family.name, format_block_list(schedule.sparse_blocks),
                 self.num_blocks, fitted.groups, schedule.pattern, self.settings.interpolation,
                 list(schedule.anchors) or "none", grid.frames, 100 * saved)

    # ComfyUI wrappers -------------------------------------------------------------------------------

    def outer_sample_wrapper(self, executor, *args, **kwargs):
        """Marks the start of a sampling run: one log line per run, and a warning if no block ran sparse."""
        self._logged_run = False
        self.sparse_blocks_run = 0
        result = executor(*args, **kwargs)
        if self._logged_run and self.sparse_blocks_run == 0:
            self.warn_once("never-called", f"the {self.family.name} model never called its block replacements, so it ran dense")
        return result

    def apply_model_wrapper(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        call = self.begin_call(executor.class_obj, x, t, c_concat, kwargs)
        if call is not None:
            transformer_options = {**transformer_options, CALL_KEY: call}
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


class FisCall:
    """FIS state of one model call: the schedule with its anchors resolved, the frame grid, and the
    RoPE/modulation subsets shared by the blocks of a group."""

    def __init__(self, runtime: FisRuntime, schedule: FisSchedule, grid: FrameGrid):
        self.runtime = runtime
        self.schedule = schedule
        self.grid = grid
        self._shared: dict = {}

    def run_block(self, position: int, key: tuple[str, int], args: dict, block):
        """Run ``block`` (a ``patches_replace`` callable taking ``args``) on its frame subset."""
        runtime, family = self.runtime, self.runtime.family
        layout = family.image_layout(key, args, self.grid)
        if layout is None:
            runtime.warn_once("layout", f"{key[0]} {key[1]} has {args['img'].shape[1]} tokens, which do not fit "
                                        f"{self.grid}; running dense")
            return block(args)
        schedule = self.schedule.fit_to(layout.frames)
        if schedule.groups != self.schedule.groups:
            runtime.warn_once("few-frames", f"{layout.frames} latent frames are fewer than groups={self.schedule.groups}; "
                                            f"using {schedule.groups} groups")
        frames = schedule.frames_for_block(position, layout.frames)
        if frames is None:
            return block(args)
        plan = runtime.plan(layout, frames, args["img"].device)
        try:
            sub_args = family.cut_args(key, args, plan, lambda name, make: self._share((name, layout, frames), make))
        except ValueError as error:
            runtime.warn_once("cut", f"{key[0]} {key[1]}: {error}; running dense")
            return block(args)
        sub_args["transformer_options"] = self._sparse_options(args["transformer_options"], layout, frames)
        out = dict(block(sub_args))
        out["img"] = restore(args["img"], out["img"], plan, None if family.mutates_input else sub_args["img"])
        runtime.sparse_blocks_run += 1
        return out

    def _share(self, key, make):
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def _sparse_options(self, options: dict, layout, frames) -> dict:
        """transformer_options for a sparse block: the grid it really sees, and which frames those are."""
        options = dict(options)
        sizes = options.get("grid_sizes")
        if sizes is not None:
            options["grid_sizes"] = type(sizes)((len(frames), *tuple(sizes)[1:]))
        options["fis_frames"] = frames
        return options


class SparseBlockPatch:
    """The ``patches_replace["dit"]`` entry of one sparse block. It wraps the replacement another node
    registered for that block, if any, so both apply."""

    def __init__(self, runtime: FisRuntime, position: int, key: tuple[str, int], previous=None):
        self.runtime = runtime
        self.position = position
        self.key = key
        self.previous = previous

    def __call__(self, args: dict, extra: dict):
        if self.previous is None:
            block = extra["original_block"]
        else:
            def block(block_args):
                return self.previous(block_args, extra)
        call = args["transformer_options"].get(CALL_KEY)
        if call is None or call.runtime is not self.runtime:
            return block(args)
        return call.run_block(self.position, self.key, args, block)


def model_block_keys(model) -> tuple[FamilyAdapter | None, list]:
    """The family of a ModelPatcher's diffusion model and its block keys (None, [] if unsupported)."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = find_family(diffusion_model)
    return family, (family.block_keys(diffusion_model) if family else [])


def apply_fis(model, settings: FisSettings):
    """A clone of ``model`` (a ModelPatcher) with FIS applied; ``model`` itself is not changed.

    An earlier FIS on the same model is replaced. An unsupported model comes back unpatched, with a warning.
    """
    patched = model.clone()
    family, keys = model_block_keys(patched)
    if family is None:
        name = type(patched.get_model_object("diffusion_model")).__name__
        LOG.warning("FIS: %s is not a supported model (Wan, HunyuanVideo); it runs dense", name)
        return patched
    _remove_fis(patched)
    schedule = FisSchedule(settings.sparse_blocks, settings.groups, settings.pattern)
    if not schedule.enabled:
        return patched
    runtime = FisRuntime(family, settings, len(keys))
    replaced = patched.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for position in schedule.sparse_blocks:
        key = keys[position]
        patch = SparseBlockPatch(runtime, position, key, replaced.get(key))
        patched.set_model_patch_replace(patch, "dit", key[0], key[1])
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, runtime.apply_model_wrapper)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, runtime.outer_sample_wrapper)
    return patched


def _remove_fis(model):
    """Undo an earlier FIS on ``model`` (in place): its wrappers go, its block patches give way to what they wrapped."""
    for wrapper_type in (comfy.patcher_extension.WrappersMP.APPLY_MODEL, comfy.patcher_extension.WrappersMP.OUTER_SAMPLE):
        model.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
    replaced = model.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    earlier = {key: patch for key, patch in replaced.items() if isinstance(patch, SparseBlockPatch)}
    if not earlier:
        return
    dit = {k: p for k, p in replaced.items() if k not in earlier}
    dit.update({key: patch.previous for key, patch in earlier.items() if patch.previous is not None})
    options = dict(model.model_options["transformer_options"])
    options["patches_replace"] = {**options["patches_replace"], "dit": dit}
    model.model_options["transformer_options"] = options
