"""Applies FIS to a ComfyUI ModelPatcher.

One :class:`SparseBlockPatch` per sparse block goes into ``patches_replace["dit"]``. An ``APPLY_MODEL``
wrapper, which runs outside any ``torch.compile`` region, decides for each model call whether FIS is
active (start/end percent, a preset's dense final step), finds the frames and the step (the groups rotate
across steps), builds the index plans, publishes that state in
:data:`~.call_state.FIS_CALL` for the block patches, and passes the schedule to the model as a keyword
argument. The ``OUTER_SAMPLE`` wrapper brackets a sampling run (:mod:`.run_state`). ComfyUI's ``TorchCompileModel`` drops every compile guard on ``transformer_options``; the
call state and the model's keyword arguments are guarded, so a compiled model recompiles (once) when FIS
turns on or off or its schedule changes, instead of silently reusing the wrong graph. Nothing is kept
between model calls but, within a sampling run, shape-only data and the corrected interpolation's fit sums, all
released when the run ends.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import comfy.patcher_extension

from ...fis_core import (INTERPOLATIONS, CorrectionForm, FisSchedule, FrameLayout, FramePlan, build_plan, check_choice,
                        estimated_speedup, format_block_list, restore)
from ..families import FAMILIES, FamilyAdapter, FrameGrid, find_family
from ..log import LOG, SayOnce
from .call_state import FIS_CALL, SharedByClones, sparse_block_options
from .run_state import RunScope, SamplingRun
from .sequence_parallel import SequenceShard, current_shard

WRAPPER_KEY = "frame_interleaved_sparsity"
SCHEDULE_KWARG = "fis_schedule"
#: transformer_options key of ComfyUI's EasyCache and LazyCache nodes
CACHE_OPTION = "easycache"


@dataclass(frozen=True)
class FisSettings:
    """What the node's widgets asked for, checked here once (errors name the widget). ``anchors`` None means
    the family's default."""

    sparse_blocks: tuple[int, ...]
    groups: int
    pattern: str = "interleave"
    interpolation: str = "corrected"
    anchors: tuple[int, ...] | None = None
    start_percent: float = 0.0
    end_percent: float = 1.0
    rotate: bool = True
    #: the first step (from pure noise, the one that lays out the scene) runs dense
    dense_first_step: bool = False
    #: the final step (the one that lands on sigma 0, whose errors go straight into the video) runs dense
    dense_final_step: bool = False
    #: how the corrected interpolation fits its maps (no widget: the study's choice, see ``quality.correction_forms``)
    correction: CorrectionForm = CorrectionForm()

    def __post_init__(self):
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ValueError(f"start_percent/end_percent: need 0 <= start_percent <= end_percent <= 1; "
                             f"got {self.start_percent} and {self.end_percent}")
        self.schedule  # noqa: B018  (checks groups and pattern)

    @property
    def schedule(self) -> FisSchedule:
        """The schedule without the anchors, which depend on each call's conditioning."""
        return FisSchedule(self.sparse_blocks, self.groups, self.pattern, rotate=self.rotate)


class FisRun(SamplingRun):
    """A FIS sampling run: its fit sums and plans, and what its end reports on: whether its log line was given, its
    sparse blocks were called, and one ran sparse."""

    def __init__(self):
        super().__init__()
        self.logged = False
        self.reached = False
        self.ran_sparse = False


class FisRuntime(SharedByClones, RunScope):
    """What the patches of one patched model share: the settings, the family, warnings already given, and the
    sampling run in progress (:class:`FisRun`)."""

    run_type = FisRun

    def __init__(self, family: FamilyAdapter, settings: FisSettings, num_blocks: int):
        self.family = family
        self.settings = settings
        self.schedule = settings.schedule
        self.num_blocks = num_blocks
        self.warn_once = SayOnce("FIS")

    def plan(self, frames: int, computed: tuple[int, ...], device) -> FramePlan:
        """The plan for ``computed`` of ``frames`` frames (kept for the run: it depends on shapes alone)."""
        return self.run.shapes.get((frames, computed, str(device)), lambda: build_plan(
            frames, computed, self.settings.interpolation, device, self.settings.correction))

    def fit_rows(self, plan: FramePlan, tokens_per_frame: int):
        """The rows the correction's fit reads for ``plan`` in blocks of ``tokens_per_frame`` tokens a frame (kept for
        the run: shapes alone)."""
        key = ("fit rows", plan.frames, plan.computed, tokens_per_frame, str(plan.frame_index.device))
        return self.run.shapes.get(key, lambda: plan.fit_rows(tokens_per_frame))

    def begin_call(self, base_model, x, sigma, c_concat, options, kwargs) -> "FisCall | None":
        """The FIS state for one model call, or None when FIS is off for this sigma."""
        sampling = base_model.model_sampling
        start = sampling.percent_to_sigma(self.settings.start_percent)
        end = sampling.percent_to_sigma(self.settings.end_percent)
        current = float(sigma.max())
        if not end < current <= start:
            return None
        step, first, final = schedule_position(options.get("sample_sigmas"), current, sampling.sigma_max)
        if (first and self.settings.dense_first_step) or (final and self.settings.dense_final_step):
            return None
        model = base_model.diffusion_model
        grid = self.family.frame_grid(model, x, kwargs)
        anchors = self.settings.anchors
        if anchors is None:
            anchors = self.family.default_anchors(model, x, c_concat, kwargs, options)
        schedule = replace(self.schedule, anchors=tuple(anchors))
        fitted = schedule.fit_to(grid.frames)
        if not fitted.enabled:   # one latent frame: nothing to interleave, the blocks run as they are
            self.warn_once("one-frame", f"{grid.frames} latent frame cannot be split into groups; the model runs dense")
            return None
        if fitted.groups != schedule.groups:
            self.warn_once("few-frames", f"{grid.frames} latent frames are fewer than groups={schedule.groups}; "
                                         f"using {fitted.groups} groups")
        call = FisCall(self, fitted, grid, None, step % fitted.groups, current_shard(), batch_layout(options, x.shape[0]),
                       x.device)
        if fitted.sparse_blocks and not call.plans and fitted.anchors:
            source = ("'auto': the frames the conditioning gives whole; set anchor_frames empty to have the blocks "
                      "skip frames anyway" if self.settings.anchors is None else "set in anchor_frames")
            self.warn_once("anchored", f"anchor_frames: the anchors {list(fitted.anchors)} cover all {grid.frames} "
                                       f"latent frames ({source}), so the sparse blocks have no frame to skip")
        if not self.run.logged:
            self.run.logged = True
            self._log_run(fitted, grid)
        return call

    def _log_run(self, schedule: FisSchedule, grid: FrameGrid):
        saved = 1.0 - schedule.computed_fraction(self.num_blocks, grid.frames)
        LOG.info("FIS: %s, sparse blocks %s of %d, groups %d, %s, %s interpolation, anchors %s, %d latent frames: "
                 "%.0f%% of the block tokens skipped, estimated %.1fx faster blocks at 720p", self.family.name,
                 format_block_list(schedule.sparse_blocks), self.num_blocks, schedule.groups, schedule.pattern,
                 self.settings.interpolation, list(schedule.anchors) or "none", grid.frames, 100 * saved,
                 estimated_speedup(schedule, self.num_blocks, grid.frames))

    # ComfyUI wrappers -------------------------------------------------------------------------------

    def outer_sample_wrapper(self, executor, *args, **kwargs):
        """One sampling run: its state set up afresh (fit sums, plans, one log line) and released when it ends, and a
        warning if no block ran sparse."""
        with self.sampling_run() as run:
            result = executor(*args, **kwargs)
            if run.logged and not run.ran_sparse:
                if run.reached:
                    self.warn_once("all-frames", f"the {self.family.name} model called its sparse blocks, but each ran on "
                                                 f"all the latent frames (its group and the anchors covered them, or a "
                                                 f"warning above says why), so it ran dense")
                else:
                    self.warn_once("never-called", f"the {self.family.name} model never called its block replacements, "
                                                   f"so it ran dense")
            return result

    def apply_model_wrapper(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        call = self.begin_call(executor.class_obj, x, t, c_concat, transformer_options, kwargs)
        if call is not None and self.settings.rotate and CACHE_OPTION in transformer_options:
            self.warn_once("cache", "EasyCache (or LazyCache) is on this model too; over FIS's groups, which rotate every "
                                    "step, it finds few steps or none to skip (measured: README, Quality), so it adds "
                                    "little speed: use one of the two")
        if call is not None and self.family.takes_extra_kwargs(executor.class_obj.diffusion_model):
            # The schedule as a model input: a graph torch.compile made without FIS (or with other
            # settings) no longer matches, since it guards its inputs (unlike transformer_options).
            kwargs = {**kwargs, SCHEDULE_KWARG: call.signature}
        try:
            with FIS_CALL.of_call(self, call):
                return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        finally:
            if call is not None:
                call.run.reached |= call.reached
                call.run.ran_sparse |= call.ran_sparse


class FisCall:
    """FIS state of one model call: the schedule (anchors resolved, groups fitted to the frames), the
    frame grid, the sampling step (modulo the groups: it rotates the groups), the frames each sparse block computes
    and the index plans of its groups (found once for the call: a block looks them up), and values shared by the
    blocks of a group."""

    def __init__(self, runtime: FisRuntime, schedule: FisSchedule, grid: FrameGrid, plans: dict | None, step: int = 0,
                 shard: SequenceShard | None = None, batch: tuple = (), device=None):
        self.runtime = runtime
        #: the sampling run the call belongs to: its fit sums
        self.run = runtime.run
        #: this rank's part of a sequence-parallel call (Raylight), else None
        self.shard = shard
        #: the call's :func:`batch_layout`, which keeps the fit sums of each layout apart
        self.batch = batch
        self.schedule = schedule
        self.grid = grid
        self.step = step
        #: the latent frames each sparse block computes in this call (None: all of them)
        self.computed = schedule.frames_by_block(grid.frames, step)
        #: the plan of each frame subset (``plans`` None: made here, on ``device``)
        self.plans = plans if plans is not None else {
            computed: runtime.plan(grid.frames, computed, device) for computed in set(self.computed.values()) - {None}}
        #: the rows the correction's fit reads, by frame subset, for blocks of the grid's tokens per frame
        self.fit_rows = {computed: runtime.fit_rows(plan, grid.tokens_per_frame)
                         for computed, plan in self.plans.items() if plan.corrects}
        self.shared: dict = {}
        self.reached = False
        self.ran_sparse = False

    @property
    def signature(self) -> tuple:
        """What decides the compute graph of this call, in plain values (a compile guard reads them as constants):
        the schedule, the step's rotation, the interpolation and, corrected, its form, the frames (so a compiled
        model keeps one graph per rotation phase, and one for a run's first call)."""
        settings = self.runtime.settings
        form = settings.correction
        fitted = (form.map_channels, form.fit_tokens, str(form.fit_dtype)) if settings.interpolation == "corrected" else ()
        return (self.schedule.sparse_blocks, self.schedule.groups, self.schedule.pattern, self.schedule.anchors,
                self.step if self.schedule.rotate else 0, settings.interpolation, fitted, tuple(self.grid))

    def _share(self, entry, make):
        return shared_value(self.shared, entry, make)

    def _layout(self, key: tuple[str, int], args: dict) -> tuple[FrameLayout | None, dict]:
        """The block's frame layout and the arguments it covers: ``args``, or under sequence parallelism the whole
        sequence gathered from this rank's chunk ``args`` (layout None where neither fits the frame grid)."""
        family = self.runtime.family
        layout = family.image_layout(key, args, self.grid)
        if layout is not None or self.shard is None:
            return layout, args
        full = family.unshard_args(key, args, self.grid, self.shard,
                                   lambda name, make: self._share(("unshard", key[0], name), make))
        layout = None if full is None else family.image_layout(key, full, self.grid)
        return layout, (args if layout is None else full)

    def run_block(self, position: int, key: tuple[str, int], args: dict, block):
        """Run ``block`` (a ``patches_replace`` callable taking ``args``) on its frame subset."""
        self.reached = True
        runtime, family = self.runtime, self.runtime.family
        layout, full = self._layout(key, args)
        if layout is None:
            runtime.warn_once("layout", f"{key[0]} {key[1]} has {args['img'].shape[1]} tokens, which do not fit "
                                        f"{self.grid}; running dense")
            return block(args)
        if layout.frames == self.grid.frames:
            computed = self.computed.get(position)
            plan = self.plans.get(computed)
        else:              # the block sees other frames than the latent (a model that adds frames itself)
            computed = self.schedule.fit_to(layout.frames).frames_for_block(position, layout.frames, self.step)
            plan = None
        if computed is None:
            return block(args)
        if plan is None:
            plan = runtime.plan(layout.frames, computed, args["img"].device)
        try:
            sub_args = sparse_args(family, key, full, layout, plan, self.shared)
        except ValueError as error:
            runtime.warn_once("cut", f"{key[0]} {key[1]}: {error}; running dense")
            return block(args)
        sharded = full is not args
        if sharded:
            length = sub_args["img"].shape[1]
            sub_args = family.shard_args(key, sub_args, self.shard,
                                         lambda name, make: self._share(("shard", name, *layout, computed), make))
        out = dict(block(sub_args))
        y_sub = self.shard.gather(out["img"], 1, length) if sharded else out["img"]
        rows = self.fit_rows.get(computed) if layout.tokens_per_frame == self.grid.tokens_per_frame else None
        out["img"] = restore(full["img"], y_sub, layout, plan, (self.run.fit_sums, (position, self.batch)), rows)
        if sharded:
            out["img"] = self.shard.own(out["img"], args["img"])
        self.ran_sparse = True
        return out


def batch_layout(options: dict, batch: int) -> tuple:
    """What a model call's batch holds (ComfyUI's cond/uncond order, the batch size): a block's fit sums are carried
    over the calls of one layout only."""
    return tuple(options.get("cond_or_uncond") or ()), batch


def shared_value(shared: dict, entry, make):
    """``shared[entry]``, made by ``make()`` the first time."""
    if entry not in shared:
        shared[entry] = make()
    return shared[entry]


def sparse_args(family: FamilyAdapter, key: tuple[str, int], args: dict, layout: FrameLayout, plan: FramePlan,
                shared: dict) -> dict:
    """The arguments of block ``key`` cut to the computed frames of ``plan``, as FIS runs it sparse (a ValueError where
    the family cannot cut them). ``shared`` keeps, for the model call, what the blocks of a group can share."""
    def share(name, make):
        return shared_value(shared, (name, *layout, plan.computed), make)
    sub_args = family.cut_args(key, args, layout, plan, share)   # its transformer_options too, where the family cuts them
    sub_args["transformer_options"] = sparse_block_options(sub_args["transformer_options"], plan.computed)
    return sub_args


def schedule_position(sample_sigmas, sigma: float, sigma_max: float) -> tuple[int, bool, bool]:
    """The index of the step at ``sigma`` in the sampling schedule ``sample_sigmas`` (0 without one), whether it is
    the first step, the one from pure noise (``sigma_max``, the model's; a sampler that starts later, such as the
    low-noise expert of a two-expert model or a denoise below 1, has none), and whether it is the final step, the
    one landing on sigma 0 (a sampler that stops early, such as the high-noise expert, has none)."""
    if sample_sigmas is None or len(sample_sigmas) < 2:
        return 0, False, False
    sigmas = sample_sigmas.tolist() if hasattr(sample_sigmas, "tolist") else list(sample_sigmas)
    step = min(range(len(sigmas)), key=lambda i: abs(sigmas[i] - sigma))
    first = step == 0 and sigmas[0] >= float(sigma_max) * (1 - 1e-4)
    return step, first, step == len(sigmas) - 2 and sigmas[-1] == 0


class WrappingBlockPatch:
    """A ``patches_replace["dit"]`` entry of the block at ``position`` (its ``key``) that wraps the replacement another
    node registered for that block before it (``previous``), if any, so both apply."""

    def __init__(self, position: int, key: tuple[str, int], previous=None):
        self.position = position
        self.key = key
        self.previous = previous

    def inner_block(self, extra: dict):
        """The block this entry runs: ``previous``, else the original block, as one callable taking the ``args``."""
        if self.previous is None:
            return extra["original_block"]
        return lambda block_args: self.previous(block_args, extra)


class SparseBlockPatch(WrappingBlockPatch):
    """The entry of one sparse block: runs it on its frame subset where FIS is on for the model call."""

    def __init__(self, runtime: FisRuntime, position: int, key: tuple[str, int], previous=None):
        super().__init__(position, key, previous)
        self.runtime = runtime

    def __call__(self, args: dict, extra: dict):
        block = self.inner_block(extra)
        call = FIS_CALL.get(self.runtime)
        if call is None:
            return block(args)
        if "transformer_options" not in args:     # older hosts' S2V: FIS cannot tell the block its frames
            self.runtime.warn_once("no-options", f"{self.key[0]} {self.key[1]} gets no transformer_options from this "
                                                 f"ComfyUI (a newer one passes them); its blocks run dense")
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
        supported = ", ".join(family.name for family in FAMILIES)
        LOG.warning("FIS: %s is not a supported model (supported: %s); it runs dense", name, supported)
        return patched
    _remove_fis(patched)
    schedule = settings.schedule
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
