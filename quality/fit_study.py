"""Why the corrected interpolation's fit falls short at G=3, what each proposed remedy gives, where G=3 really loses the
video, and what brings ``balanced`` nearer dense (issue 26, items 2 and 4), on the shipped model at 4 steps.

Three parts, all against dense at the same seed:

- **Fit error** (dense activations, no sampling error): every sparse block's input and output of the dense run,
  each step, each group of G=2 and G=3. The correction is fitted on different pairs and its error measured on the
  skipped frames (the update's error energy over the update's, after the correction): on the frames FIS fits on
  today (computed frames, neighbours G frames away), on as many frames and on every frame with neighbours 1, 2 or
  G frames away (pairs FIS never has: a block never computes two frames nearer than G in one call), and on the
  skipped frames themselves (the oracle). It splits the shortfall into too few pairs and pairs at the wrong distance.
- **Own residual's persistence** (the same activations, the schedule's rotation followed): what a skipped frame's
  residual from the step the block last computed it gives today's correction, by G and by its age in steps.
- **Candidates in the sampling loop** (8 prompts, PSNR of decoded pixels, block FLOPs saved with each mechanism's
  own work counted): the product's restore is replaced by :class:`StudyRestore`, which reproduces today's corrected
  restore and adds one mechanism: no sums over earlier steps; pairs at the skipped frames' real distances, taken
  from the block's previous steps (the frames it computed there against the later steps' neighbours, as restored);
  per-distance maps fitted on those pairs; the frame's own residual (what the correction missed on it when it was
  last computed), of any age or the previous step's alone, scaled or not, kept whole, in FP8 or pooled; with a dense
  first step, that step's exact pairs at the real distances. Then G=3 opened or closed by G=2 steps (lab overrides
  of the runtime's schedule), with and without the opening's fit sums, combinations with per-distance maps and dense
  steps, schedules of the product as it is (G=3 on every block, the first or final step dense), a pooled context
  (the skipped frames' tokens averaged as extra tokens of each sparse call), and probes that run each block dense as
  well (the computed or the skipped frames from the dense block, maps fitted on it), and the computed frames'
  self-attention widened (:class:`PooledKeys`: the skipped frames' keys and values, whole near the computed frame,
  averaged over windows elsewhere, each averaged key weighted by its count). ``--confirm`` measures the references,
  what moved them and the probes on the 32 evaluation prompts and on 16 prompts no choice saw. Each row also gives
  the block FLOPs a sparse block saves at Wan-14B 720p (``wan14b_block_saved``), where attention weighs more.

    python -m quality.fit_study                       # 8 prompts: docs/fit_study.json
    python -m quality.fit_study --confirm             # and the winners on the 32 prompts and 16 unseen ones
"""
from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import torch

from . import host
from .evaluate import (DOCS, NOISE_SEED, Runner, Setting, dense_block_work, fidelity_cells, prompts,
                       run_correction)
from .model import FEW_STEPS

#: The prompts the issue's figures use: the evaluation's 32 and 16 drawn with another seed (README, Quality).
CONFIRM_PROMPTS, UNSEEN_PROMPTS, UNSEEN_SEED = 32, 16, 12
#: Wan-14B 720p: 21 latent frames of 3600 tokens, 5120 channels in maps of 128, 38 sparse blocks (README, Speed)
WAN14B = dict(frames=21, tokens=3600, dim=5120, map=128, blocks=38)
#: one Wan-14B 720p block's sizes, for its FLOPs (README, Speed)
WAN14B_BLOCK = dict(frames=21, rows=45, columns=80, dim=5120, ffn=13824, text=512)


# --- the correction, in the study's own terms (fp32, maps of `map_channels`, ridge as the product's) -------------

def _residuals(z: torch.Tensor, triples: list) -> torch.Tensor:
    """``z_f - lerp(z_lo, z_hi, w)`` of frames ``z`` [B, F, T, C] for each ``(f, lo, hi, w)``: [B, m, T, C]."""
    return torch.stack([z[:, f] - torch.lerp(z[:, lo], z[:, hi], w) for f, lo, hi, w in triples], 1)


def _per_map(r: torch.Tensor, c: int) -> torch.Tensor:
    """Residuals [B, m, T, C] as [B, n, m*T, c]: each map's channels over all tokens."""
    return r.reshape(r.shape[0], -1, r.shape[-1] // c, c).transpose(1, 2)


def pair_sums(x: torch.Tensor, u: torch.Tensor, triples: list, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram and cross sums of the pairs ``(dx, du)`` of ``triples`` over inputs ``x`` and updates ``u``."""
    dx, du = _per_map(_residuals(x, triples), c), _per_map(_residuals(u, triples), c)
    return dx.mT @ dx, dx.mT @ du


def solve(sums: tuple[torch.Tensor, torch.Tensor], ridge: float = 0.1) -> torch.Tensor:
    """The ridge solution of the product (:func:`comfyui_fis.fis_core.correction.fit_maps`) for these sums."""
    gram, cross = sums
    diagonal = gram.diagonal(dim1=2, dim2=3)
    gram = gram + torch.diag_embed((ridge * diagonal.mean(2, keepdim=True) + 1e-30).expand_as(diagonal))
    return torch.linalg.solve(gram, cross)


def between(frame: int, computed, ends: bool = False) -> tuple[int, int, int, float] | None:
    """``(frame, lo, hi, w)``: ``frame`` between its nearest ``computed`` frames, weighted by distance. At an end
    None, or with ``ends`` the nearest frame on both sides (the product's restore holds its update there)."""
    lo = max((c for c in computed if c < frame), default=None)
    hi = min((c for c in computed if c > frame), default=None)
    if lo is None or hi is None:
        near = hi if lo is None else lo
        return (frame, near, near, 0.0) if ends and near is not None else None
    return (frame, lo, hi, (frame - lo) / (hi - lo))


def distance(triple) -> Fraction | None:
    """A skipped frame's place between its neighbours (1/3: one frame after the low one of three); None at an end."""
    frame, lo, hi, _ = triple
    return None if lo == hi else Fraction(frame - lo, hi - lo)


def group(g: int, groups: int, frames: int) -> list[int]:
    """The frames of group ``g`` (interleaved, no anchors: text-to-video)."""
    return list(range(g % groups, frames, groups))


# --- part 1: the fit's error on dense activations ------------------------------------------------------------------

@contextmanager
def dense_activations(runner: Runner):
    """Yields a list that fills with ``(block, x, y)`` per block call while sampling ``runner``'s model."""
    blocks, calls = runner.model.model.diffusion_model.blocks, []

    def hook(module, args, kwargs, out, i):
        calls.append((i, kwargs.get("x", args[0] if args else None).detach().float(), out.detach().float()))
    handles = [b.register_forward_hook(lambda m, a, k, o, i=i: hook(m, a, k, o, i), with_kwargs=True)
               for i, b in enumerate(blocks)]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _spread(first: int, last: int, count: int) -> list[int]:
    """``count`` frames evenly spread over ``first``..``last``."""
    if count <= 1:
        return [first]
    return sorted({round(first + i * (last - first) / (count - 1)) for i in range(count)})


def dense_record(runner: Runner, sparse_blocks, frames: int) -> dict:
    """The dense run's input and update of every sparse block call, ``{(block, chunk, step): (x, u)}``, each
    [B, F, T, C] (``chunk``: the sampler call of up to 16 prompts)."""
    with dense_activations(runner) as calls:
        runner.clips(runner.model)
    record, count = {}, {}
    for block, xin, yout in calls:
        if block not in sparse_blocks:
            continue
        index = count[block] = count.get(block, -1) + 1
        batch, tokens = xin.shape[0], xin.shape[1] // frames
        x = xin.view(batch, frames, tokens, -1)
        record[(block, *divmod(index, runner.steps))] = (x, yout.view(batch, frames, tokens, -1) - x)
    return record


def fit_errors(record: dict, frames: int, c: int = 128) -> dict:
    """The correction's relative error on the skipped frames, fitted on different pairs, averaged over the sparse
    blocks, steps and groups of the dense run (:func:`dense_record`; see the module's docstring)."""
    errors: dict = {}
    for x, u in record.values():
        for groups in (2, 3):
            for g in range(groups):
                computed = group(g, groups, frames)
                skipped = [t for t in (between(f, computed) for f in range(frames) if f not in computed) if t]
                today = [between(computed[i], computed[i - 1:i + 2:2]) for i in range(1, len(computed) - 1)]
                dx, du = _per_map(_residuals(x, skipped), c), _per_map(_residuals(u, skipped), c)
                energy = (_per_map(u[:, [t[0] for t in skipped]], c) ** 2).sum()
                fits = {"linear (no correction)": None, "today: the computed frames, neighbours G away": today}
                for d in sorted({1, 2, groups}):
                    centres = range(d, frames - d)
                    for label, chosen in (("as many frames as today", _spread(d, frames - 1 - d, len(today))),
                                          ("every frame", centres)):
                        fits[f"{label}, neighbours {d if d < groups else 'G'} away"] = [(f, f - d, f + d, 0.5) for f in chosen]
                fits["oracle: the skipped frames themselves"] = skipped
                for name, triples in fits.items():
                    miss = du if triples is None else du - dx @ solve(pair_sums(x, u, triples, c))
                    errors.setdefault(f"G={groups}", {}).setdefault(name, []).append(float((miss ** 2).sum() / energy))
    return {g: {name: sum(v) / len(v) for name, v in rows.items()} for g, rows in errors.items()}


def _from_maps(dx: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The correction ``dx A`` of residuals ``dx`` [B, m, T, C] as [B, m, T, C]."""
    return (_per_map(dx, maps.shape[-1]) @ maps).transpose(1, 2).reshape(dx.shape)


def persistence_scale(dx: torch.Tensor, dx_then: torch.Tensor) -> torch.Tensor:
    """How much of a frame's input residual ``dx_then`` (at the step it was computed) is still in ``dx`` now: the
    least-squares scale of one on the other per batch entry and frame ([B, m, 1, 1]), clamped to 0-1."""
    scale = (dx * dx_then).sum((2, 3), keepdim=True) / (dx_then * dx_then).sum((2, 3), keepdim=True).clamp_min(1e-30)
    return scale.clamp(0.0, 1.0)


#: The rows of :func:`own_residual_errors`, by what is added to today's corrected restore of a skipped frame.
OWN_RESIDUAL_ROWS = ("today", "+ own residual, neighbours exact then", "+ own residual, neighbours as restored then",
                     "+ the same, scaled by the input residual's persistence", "+ the same, best scale (oracle)",
                     "+ own residual against its group's neighbours then (G frames away, exact)")


def _missed(x: torch.Tensor, u: torch.Tensor, triple, maps: torch.Tensor) -> torch.Tensor:
    """What the correction of ``maps`` misses on ``triple``'s frame of inputs ``x`` and updates ``u``: [B, 1, T, C]."""
    return _residuals(u, [triple]) - _from_maps(_residuals(x, [triple]), maps)


def _restored_update(x: torch.Tensor, u: torch.Tensor, frame: int, computed, maps: torch.Tensor) -> torch.Tensor:
    """The corrected restore's update of ``frame`` from the ``computed`` frames' updates: [B, T, C]."""
    t = between(frame, computed, ends=True)
    return torch.lerp(u[:, t[1]], u[:, t[2]], t[3]) + _from_maps(_residuals(x, [t]), maps)[:, 0]


def _age(rank: int, step: int, frame: int, groups: int) -> int | None:
    """Steps since the sparse block of ``rank`` last computed ``frame`` under the rotation (None: not in this run)."""
    return next((a for a in range(1, step + 1) if (rank + step - a) % groups == frame % groups), None)


def own_residual_errors(record: dict, sparse_blocks, frames: int, steps: int, c: int = 128) -> dict:
    """Does a skipped frame's own residual persist across steps? On the dense run's activations, each sparse block
    follows the rotating schedule at G=2 and G=3 with today's fit (pairs G frames apart, sums over the earlier steps);
    a skipped frame that the block computed ``age`` steps before gets the residual its correction missed then
    added (with its neighbours exact then, or as the restore had them then: the sampling loop's case; unscaled,
    scaled by :func:`persistence_scale`, or by the best scale). The error energy on those frames over their update's,
    by G and age (mechanism (b) of issue 26)."""
    rank = {block: k for k, block in enumerate(sorted(sparse_blocks))}
    sums: dict = {}
    for groups in (2, 3):
        for (block, chunk) in sorted({k[:2] for k in record}):
            maps, carried = [], None
            for step in range(steps):
                x, u = record[(block, chunk, step)]
                computed = group((rank[block] + step) % groups, groups, frames)
                today = [between(computed[i], computed[i - 1:i + 2:2]) for i in range(1, len(computed) - 1)]
                now = pair_sums(x, u, today, c)
                carried = now if carried is None else (carried[0] + now[0], carried[1] + now[1])
                maps.append(solve(carried))
                for t in (t for t in (between(f, computed) for f in range(frames) if f not in computed) if t):
                    age = _age(rank[block], step, t[0], groups)
                    if age is None:
                        continue
                    x_then, u_then = record[(block, chunk, step - age)]
                    then, maps_then = group((rank[block] + step - age) % groups, groups, frames), maps[step - age]
                    dx, dx_then = _residuals(x, [t]), _residuals(x_then, [t])
                    miss = _missed(x, u, t, maps[step])
                    low, high = (_restored_update(x_then, u_then, n, then, maps_then) for n in t[1:3])
                    restored = (u_then[:, t[0]] - torch.lerp(low, high, t[3])).unsqueeze(1)
                    restored = restored - _from_maps(dx_then, maps_then)
                    own = between(t[0], then)
                    best = (miss * restored).sum() / (restored * restored).sum()
                    added = (0, _missed(x_then, u_then, t, maps_then), restored,
                             persistence_scale(dx, dx_then) * restored, best * restored,
                             0 if own is None else _missed(x_then, u_then, own, maps_then))
                    row = sums.setdefault(f"G={groups}, age {age}", dict.fromkeys(("energy", *OWN_RESIDUAL_ROWS), 0.0))
                    row["energy"] += float((u[:, t[0]] ** 2).sum())
                    for name, extra in zip(OWN_RESIDUAL_ROWS, added):
                        row[name] += float(((miss - extra) ** 2).sum())
    return {key: {name: row[name] / row["energy"] for name in OWN_RESIDUAL_ROWS} for key, row in sums.items()}


def dense_errors(runner: Runner, sparse_blocks) -> dict:
    """The first two parts on ``runner``'s dense run: :func:`fit_errors` and :func:`own_residual_errors`."""
    record = dense_record(runner, sparse_blocks, runner.shape.frames)
    return {"fit_error": fit_errors(record, runner.shape.frames),
            "own_residual_error": own_residual_errors(record, sparse_blocks, runner.shape.frames, runner.steps)}


# --- part 2: candidates in the sampling loop -------------------------------------------------------------------

@dataclass(frozen=True)
class Mechanism:
    """One candidate on top of today's corrected restore."""

    name: str
    #: the fit adds its sums to those of the block's earlier steps (today: yes)
    carried: bool = True
    #: pairs at the skipped frames' real distances from the block's previous steps join the pooled fit: the frames
    #: a step computed between the frames of the groups of the next ``next_pairs`` steps, as restored there (1: the
    #: next step's group, which gives G=3 one of its two distances; 2: both)
    next_pairs: int = 0
    #: on a dense step (a preset's first step) each block adds the pairs of every group's skipped frames, exact
    dense_pairs: bool = False
    #: each distance (1/3, 2/3 of the way) gets its own map, fitted on the pairs at that distance (needs them)
    per_distance: bool = False
    #: a skipped frame adds what the correction missed on it when the block last computed it
    own_residual: bool = False
    #: the oldest own residual used, in steps (None: any); older ones are not kept
    own_age: int | None = None
    #: the own residual scaled by how much of its input residual persists (:func:`persistence_scale`); keeps the
    #: frame's input residual as well
    own_scaled: bool = False
    #: the own residual kept averaged over ``own_pool`` x ``own_pool`` tokens of the frame, brought back bilinearly
    own_pool: int = 1
    #: the own residual kept in FP8 (e4m3, one scale per frame and batch entry)
    own_fp8: bool = False
    #: not a mechanism but a probe, from the same block run dense on the same input: ``maps``: each call's maps
    #: fitted on the dense block's updates of the skipped frames (per distance with ``per_distance``); ``skipped``:
    #: the skipped frames take the dense block's output; ``computed``: the computed frames do (the restore's own error)
    oracle: str | None = None


MECHANISMS = (
    Mechanism("today: pairs G frames apart, sums over the earlier steps"),
    Mechanism("without the sums over earlier steps", carried=False),
    Mechanism("+ pairs at the real distances (previous step)", next_pairs=1),
    Mechanism("+ per-distance maps (previous step's pairs)", next_pairs=1, per_distance=True),
    Mechanism("+ the frame's own previous-step residual", own_residual=True),
)
#: Where a skipped frame has two distances (G=3): both from the previous steps' pairs, and the own residual of the
#: previous step alone (an older one persists less: ``own_residual_errors``).
G3_MECHANISMS = (
    Mechanism("+ pairs at both real distances (the previous two steps)", next_pairs=2),
    Mechanism("+ per-distance maps, both distances", next_pairs=2, per_distance=True),
    Mechanism("+ the own residual, the previous step's alone", own_residual=True, own_age=1),
    Mechanism("+ the own residual, the previous step's alone, scaled by its input residual's persistence",
              own_residual=True, own_age=1, own_scaled=True),
    Mechanism("+ per-distance maps, both distances, + the own residual, the previous step's alone", next_pairs=2,
              per_distance=True, own_residual=True, own_age=1),
)
PER_DISTANCE_BOTH = G3_MECHANISMS[1]
#: What the own residual keeps, cut (G=2, where it helps): FP8, averaged over 2x2 or 4x4 tokens.
OWN_RESIDUAL_FORMS = (
    Mechanism("+ the own residual in FP8", own_residual=True, own_fp8=True),
    Mechanism("+ the own residual averaged over 2x2 tokens", own_residual=True, own_pool=2),
    Mechanism("+ the own residual averaged over 4x4 tokens", own_residual=True, own_pool=4),
)
OWN_FP8 = OWN_RESIDUAL_FORMS[0]
#: With a dense first step: what the dense step's exact pairs give the fit of the sparse steps after it.
DENSE_STEP_MECHANISMS = (
    Mechanism("today"),
    Mechanism("+ the dense step's pairs", dense_pairs=True),
    Mechanism("+ per-distance maps from the dense step", dense_pairs=True, per_distance=True),
)
#: Probes, not mechanisms (the block also runs dense on the same input): where G=3 loses the video.
PROBES = (
    Mechanism("probe: the computed frames take the dense block's output (the restore's own error)", oracle="computed"),
    Mechanism("probe: the skipped frames take the dense block's output", oracle="skipped"),
    Mechanism("probe: each call's maps fitted on the dense block's skipped frames", oracle="maps"),
    Mechanism("probe: each call's maps per distance fitted on the dense block's skipped frames", oracle="maps",
              per_distance=True),
)


class StudyRestore:
    """Stands in for :func:`comfyui_fis.fis_core.restore` in the patcher: the linear restore of the product's
    kernel, today's correction written out (:func:`pair_sums`, :func:`solve`) and ``mechanism`` on top. Keeps its
    state per block key of a run (cleared with the product's fit sums), counts its FLOPs beyond today's correction
    (``extra_flops``, summed over batch entries) and the values it keeps across steps per block and batch entry."""

    def __init__(self, mechanism: Mechanism, groups: int, c: int = 128):
        self.mechanism, self.groups, self.c = mechanism, groups, c
        self.state: dict = {}
        self.extra_flops = 0.0
        self.kept_values = 0

    def clear(self):
        self.state = {}

    def _state(self, key) -> dict:
        """What the block of ``key`` keeps: its fit sums (by distance, and pooled), own residuals, calls so far."""
        return self.state.setdefault(key, {"sums": {}, "residual": {}, "calls": 0})

    def __call__(self, x, y_sub, layout, plan, carry, rows=None):
        from comfyui_fis.fis_core.restore_kernel import restore_frames
        mech, c = self.mechanism, self.c
        batch, frames, tokens, channels = x.shape[0], layout.frames, layout.tokens_per_frame, x.shape[-1]
        if layout.prefix or layout.suffix:
            raise ValueError("the study's restore handles a sequence of frames alone (Wan text-to-video)")
        x4 = x.reshape(batch, frames, tokens, channels).float()
        dense = None if mech.oracle is None else x4 + self.dense_update.view(x4.shape).float()
        if mech.oracle == "computed":
            y_sub = dense[:, list(plan.computed)].reshape(y_sub.shape).to(y_sub.dtype)
        restored = restore_frames(x.reshape(batch, frames, -1), y_sub.reshape(batch, len(plan.computed), -1), plan.table,
                                  plan.weight).view(batch, frames, tokens, channels).float()
        computed = plan.computed
        state = self._state(carry[1])
        state["calls"] += 1
        fit = [between(computed[i], computed[i - 1:i + 2:2]) for i in range(1, len(computed) - 1)]
        now = pair_sums(x4, restored - x4, fit, c)
        earlier = state["sums"].get("pooled")
        pooled = now if earlier is None or not mech.carried else (now[0] + earlier[0], now[1] + earlier[1])
        state["sums"]["pooled"] = pooled
        classes = {k: v for k, v in state["sums"].items() if k != "pooled"}
        if (mech.next_pairs or mech.dense_pairs) and classes:
            pooled = tuple(pooled[i] + sum(v[i] for v in classes.values()) for i in (0, 1))
        maps = solve(pooled)
        skipped = [t for t in (between(f, computed, ends=True) for f in range(frames) if f not in computed) if t]
        n = channels // c
        own = {}
        if mech.oracle == "maps":      # the dense run's updates on the skipped frames, the sparse run's elsewhere
            chosen = [t[0] for t in skipped]
            u = (restored - x4).index_copy(1, torch.tensor(chosen, device=x4.device), dense[:, chosen] - x4[:, chosen])
            maps = solve(pair_sums(x4, u, skipped, c))
            if mech.per_distance:
                own = {d: solve(pair_sums(x4, u, [t for t in skipped if distance(t) == d], c))
                       for d in {distance(t) for t in skipped}}
        elif mech.per_distance:
            own = {d: solve(classes[d]) for d in {distance(t) for t in skipped} if d in classes}
            self.extra_flops += batch * len(own) * n * (c ** 3 / 3 + 2 * c ** 3)
        out = restored.clone()
        for t in skipped:
            dx = _residuals(x4, [t])
            out[:, t[0]] += _from_maps(dx, own.get(distance(t), maps))[:, 0]
            call, missed, dx_then = state["residual"].pop(t[:3], (None, None, None))    # each is used once
            if missed is not None and (mech.own_age is None or state["calls"] - call <= mech.own_age):
                missed = unpack_residual(missed, tokens)
                out[:, t[0]] += missed * (persistence_scale(dx, dx_then)[:, 0] if mech.own_scaled else 1.0)
                self.extra_flops += batch * tokens * channels * (1 + 4 * mech.own_scaled + 4 * (mech.own_pool > 1))
        if mech.oracle == "skipped":
            out[:, [t[0] for t in skipped]] = dense[:, [t[0] for t in skipped]]
        if mech.next_pairs or mech.own_residual:
            self._keep_for_later(state, x4, out - x4, computed, maps, frames)
        sums = len(state["sums"]) - (not mech.carried)
        kept = len(state["residual"]) * tokens * (1 / mech.own_pool ** 2 + mech.own_scaled) + 2 * c * sums
        self.kept_values = max(self.kept_values, kept * channels)
        return out.view(batch, frames * tokens, channels).to(x.dtype)

    def dense_step(self, key, x, y, frames: int):
        """A block ran dense (``x``, ``y`` [B, L, C]): with ``dense_pairs``, the exact pairs of every group's skipped
        frames join its sums, by distance."""
        if not self.mechanism.dense_pairs:
            return
        batch, channels = x.shape[0], x.shape[-1]
        tokens = x.shape[1] // frames
        x4 = x.reshape(batch, frames, tokens, channels).float()
        u = y.reshape(batch, frames, tokens, channels).float() - x4
        state = self._state(key)
        triples = {t for g in range(self.groups) for t in (between(f, group(g, self.groups, frames))
                                                             for f in range(frames) if f % self.groups != g) if t}
        for d in {distance(t) for t in triples}:
            chosen = sorted(t for t in triples if distance(t) == d)
            new = pair_sums(x4, u, chosen, self.c)
            old = state["sums"].get(d)
            state["sums"][d] = new if old is None else (old[0] + new[0], old[1] + new[1])
            self.extra_flops += batch * len(chosen) * tokens * (2 * 2 * channels * self.c + 2 * 6 * channels)

    def _keep_for_later(self, state, x4, u, computed, maps, frames):
        """What the next steps use: pairs at the real distances (the computed frames between the frames of the next
        steps' groups, as restored) and each computed frame's residual the correction missed against them."""
        mech, c = self.mechanism, self.c
        batch, _, tokens, channels = x4.shape
        groups = computed[1] - computed[0]           # interleaved groups, no anchors (the study's text-to-video)
        oldest = groups - 1 if mech.own_age is None else min(mech.own_age, groups - 1)
        state["residual"] = {k: v for k, v in state["residual"].items() if state["calls"] - v[0] < oldest}
        for ahead in range(1, groups):
            later = group(computed[0] + ahead, groups, frames)
            triples = [t for t in (between(f, later) for f in computed) if t]
            if ahead <= mech.next_pairs:
                for d in {distance(t) for t in triples}:
                    chosen = [t for t in triples if distance(t) == d]
                    new = pair_sums(x4, u, chosen, c)
                    old = state["sums"].get(d)
                    state["sums"][d] = new if old is None else (old[0] + new[0], old[1] + new[1])
                    self.extra_flops += batch * len(chosen) * tokens * (2 * 2 * channels * c + 2 * 6 * channels)
            if mech.own_residual and (mech.own_age is None or ahead <= mech.own_age):
                for t in triples:
                    dx, du = _residuals(x4, [t]), _residuals(u, [t])
                    kept = dx if mech.own_scaled else None
                    missed = pack_residual((du - _from_maps(dx, maps))[:, 0], mech.own_pool, mech.own_fp8)
                    state["residual"][t[:3]] = (state["calls"], missed, kept)
                    self.extra_flops += batch * tokens * channels * (2 * c + 2 * 6)


def pack_residual(r: torch.Tensor, pool: int, fp8: bool) -> tuple:
    """An own residual [B, T, C] of a square frame of T tokens as kept: averaged over ``pool`` x ``pool`` tokens,
    in FP8 with one scale per batch entry (``fp8``)."""
    if pool > 1:
        side = math.isqrt(r.shape[1])
        grid = r.mT.reshape(r.shape[0], r.shape[2], side, side)
        r = torch.nn.functional.avg_pool2d(grid, pool, ceil_mode=True).flatten(2).mT
    if not fp8:
        return r, None
    scale = r.abs().amax((1, 2), keepdim=True).clamp_min(1e-30) / torch.finfo(torch.float8_e4m3fn).max
    return (r / scale).to(torch.float8_e4m3fn), scale


def unpack_residual(packed: tuple, tokens: int) -> torch.Tensor:
    """:func:`pack_residual`'s residual back as [B, T, C] (pooled ones brought back bilinearly)."""
    r, scale = packed
    r = r.float() if scale is None else r.float() * scale
    if r.shape[1] == tokens:
        return r
    side, small = math.isqrt(tokens), math.isqrt(r.shape[1])
    grid = r.mT.reshape(r.shape[0], r.shape[2], small, small)
    return torch.nn.functional.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False).flatten(2).mT


@dataclass(frozen=True)
class Candidate:
    """One measured setting: FIS ``widgets`` (and study overrides), the product's restore or a :class:`Mechanism` on
    today's, and optionally an opening: the first ``opening[1]`` steps at ``opening[0]`` groups, and a closing: the
    final step at ``closing`` groups (lab overrides of the runtime's schedule; ``fresh_sums``: the fit sums start
    afresh after the opening, to see what its sums give)."""

    name: str
    widgets: dict
    mechanism: Mechanism | None = None
    opening: tuple[int, int] | None = None
    closing: int | None = None
    fresh_sums: bool = False
    #: each sparse call also carries each skipped frame's tokens averaged over this many x this many as extra tokens
    #: (their outputs dropped): the computed frames' self-attention sees every frame (0: not)
    context_pool: int = 0
    #: each such token weighs as the pool x pool tokens it stands for in the softmax (log of their count added)
    context_weighted: bool = False
    #: the computed frames also attend to each skipped frame's keys and values averaged over this many x this many
    #: tokens after their projection (:class:`PooledKeys`; 0: not), each weighing as the tokens it stands for unless
    #: ``pooled_unweighted``
    pooled_keys: int = 0
    pooled_unweighted: bool = False
    #: the keys averaged before their RoPE, the window centre's RoPE then applied
    pooled_rope: bool = False
    #: only the skipped frames this many frames apart from the computed ones give keys (1: all of them)
    key_stride: int = 1
    #: the skipped frames within this many frames of a computed one give it their whole keys (0: none)
    near_keys: int = 0

    @property
    def groups(self) -> int:
        return self.widgets.get("groups", 2)


@contextmanager
def _study_restore(runner: Runner, mechanism: Mechanism, groups: int):
    """The patcher's restore replaced by a :class:`StudyRestore` (cleared with the product's fit sums) and, for its
    dense-step pairs, every block's dense calls observed; yields the StudyRestore."""
    import comfyui_fis.nodes.patching.fis as patcher
    from comfyui_fis.fis_core import FitSums
    from comfyui_fis.nodes.patching.call_state import FIS_CALL
    study = StudyRestore(mechanism, groups)
    original_restore, original_clear, original_block = patcher.restore, FitSums.clear, patcher.SparseBlockPatch.__call__
    blocks = runner.model.model.diffusion_model.blocks
    full = dense_block_work(runner.model, 1)[1] // len(blocks)          # image tokens of one dense block call
    dense_flops = dense_block_work(runner.model, 1)[0] / len(blocks)   # FLOPs of one dense block call, one clip

    def block_with_oracle(patch, args, extra):
        """The oracle's dense run of the block first (its FLOPs not counted: the bound has the sparse run's cost)."""
        if FIS_CALL.get(patch.runtime) is not None:
            study.dense_update = patch.inner_block(extra)(args)["img"] - args["img"]
            study.extra_flops -= args["img"].shape[0] * dense_flops
        return original_block(patch, args, extra)

    def clear(sums):
        original_clear(sums)
        study.clear()

    def dense_step(args, kwargs, out, i):
        x = kwargs.get("x", args[0] if args else None)
        if FIS_CALL.value is None and x.shape[1] == full:             # FIS off for this call: the block ran dense
            options = kwargs.get("transformer_options") or {}
            study.dense_step((i, (tuple(options.get("cond_or_uncond") or ()), x.shape[0])), x, out, runner.shape.frames)
    patcher.restore, FitSums.clear = study, clear
    if mechanism.oracle:
        patcher.SparseBlockPatch.__call__ = block_with_oracle
    handles = [b.register_forward_hook(lambda m, a, k, o, i=i: dense_step(a, k, o, i), with_kwargs=True)
               for i, b in enumerate(blocks)]
    try:
        yield study
    finally:
        patcher.restore, FitSums.clear = original_restore, original_clear
        patcher.SparseBlockPatch.__call__ = original_block
        for handle in handles:
            handle.remove()


@contextmanager
def _step_groups(opening: tuple[int, int] | None, closing: int | None, fresh_sums: bool):
    """The runtime's schedule at ``opening[0]`` groups for the first ``opening[1]`` sampling steps (``fresh_sums``: its
    fit sums cleared at the first step after) and at ``closing`` groups for the final step."""
    from dataclasses import replace

    from comfyui_fis.nodes.patching.fis import FisRuntime, schedule_position
    original = FisRuntime.begin_call

    def begin_call(self, base_model, x, sigma, c_concat, options, kwargs):
        step, _, final = schedule_position(options.get("sample_sigmas"), float(sigma.max()),
                                           base_model.model_sampling.sigma_max)
        kept = self.schedule
        groups, steps = opening or (kept.groups, 0)
        if step < steps:
            self.schedule = replace(kept, groups=groups)
        elif step == steps and fresh_sums:
            self.run.fit_sums.clear()
        if final and closing is not None:
            self.schedule = replace(kept, groups=closing)
        try:
            return original(self, base_model, x, sigma, c_concat, options, kwargs)
        finally:
            self.schedule = kept
    FisRuntime.begin_call = begin_call
    try:
        yield
    finally:
        FisRuntime.begin_call = original


def pooled_tokens(x: torch.Tensor, frames: int, skipped: list[int], pool: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens of ``skipped`` frames of ``x`` [B, F*T, C] (square frames) averaged over ``pool`` x ``pool``, and the
    position of each window's token nearest its centre (its RoPE position), [B, n, C] and [n]."""
    batch, channels, side = x.shape[0], x.shape[-1], math.isqrt(x.shape[1] // frames)
    grid = x.view(batch, frames, side, side, channels)[:, skipped].movedim(-1, 2).flatten(0, 1)
    pooled = torch.nn.functional.avg_pool2d(grid, pool, ceil_mode=True)             # [B*s, C, side/p, side/p]
    pooled = pooled.view(batch, len(skipped), channels, -1).movedim(2, -1).flatten(1, 2)
    rows = torch.arange(pool // 2, side, pool).clamp_max(side - 1)
    within = (rows.view(-1, 1) * side + rows).flatten()
    return pooled, (torch.tensor(skipped).view(-1, 1) * side * side + within).flatten()


@contextmanager
def _pooled_context(pool: int, weighted: bool):
    """Each sparse call carries the skipped frames' tokens averaged over ``pool`` x ``pool`` after its own, with the
    RoPE of each window's centre token, as keys and values for the computed frames (and as queries, whose outputs
    are dropped before the restore; ``weighted``: each weighs as the tokens it stands for). Their work is counted
    with the block's (its tokens grow). Wan text-to-video."""
    import comfyui_fis.nodes.patching.fis as patcher
    from comfyui_fis.nodes.families.base import cut_tokens
    original_args, original_restore = patcher.sparse_args, patcher.restore

    def sparse_args(family, key, args, layout, plan, shared):
        sub = original_args(family, key, args, layout, plan, shared)
        skipped = [f for f in range(layout.frames) if f not in plan.computed]
        extra, positions = pooled_tokens(args["img"], layout.frames, skipped, pool)
        options = sub["transformer_options"]
        kept, length = sub["img"].shape[1], sub["img"].shape[1] + extra.shape[1]
        attention = options.get("optimized_attention_override")

        def proportional(func, q, k, v, *a, **kw):  # the self-attention's softmax: log(pool^2) added to a window's key
            if k.shape[1] == length and q.shape[1] == length:
                bias = torch.zeros(length, device=q.device, dtype=q.dtype)
                bias[kept:] = 2 * math.log(pool)
                kw["mask"] = bias.expand(length, length)
            return attention(func, q, k, v, *a, **kw) if attention else func(q, k, v, *a, **kw)
        if weighted:
            options = {**options, "optimized_attention_override": proportional}
        return {**sub, "img": torch.cat([sub["img"], extra.to(sub["img"].dtype)], 1), "transformer_options": options,
                "pe": torch.cat([sub["pe"], cut_tokens(args["pe"], positions.to(args["pe"].device))], 1)}

    def restore(x, y_sub, layout, plan, carry, rows=None):
        return patcher_restore(x, y_sub[:, :len(plan.computed) * layout.tokens_per_frame], layout, plan, carry, rows)
    patcher_restore = original_restore
    patcher.sparse_args, patcher.restore = sparse_args, restore
    try:
        yield
    finally:
        patcher.sparse_args, patcher.restore = original_args, original_restore


def averaged_tokens(rows: int, columns: int, pool: int) -> int:
    """The tokens of a frame of ``rows`` x ``columns`` averaged over ``pool`` x ``pool`` (partial windows kept)."""
    return math.ceil(rows / pool) * math.ceil(columns / pool)


def riding_frames(computed, frames: int, stride: int) -> list[int]:
    """The skipped frames that give the ``computed`` ones keys: those ``stride`` frames apart from them (1: all)."""
    return [f for f in range(frames) if f not in computed and (f - computed[0]) % stride == 0]


def widened_block_flops(computed, riding, frame: tuple[int, int], pool: int, near: int, dim: int, ffn: int,
                        context: int) -> float:
    """One batch entry's block FLOPs of a sparse call of the ``computed`` frames whose attention :class:`PooledKeys`
    widens: their block as :func:`quality.metrics.block_flops` counts it, their queries against the ``riding``
    frames' keys (whole within ``near`` frames, else averaged), the riding tokens' key and value projections."""
    from .metrics import block_flops
    tokens = frame[0] * frame[1]
    near_pairs = sum(abs(c - r) <= near for c in computed for r in riding)
    far_pairs = len(computed) * len(riding) - near_pairs
    keys = tokens * (near_pairs * tokens + far_pairs * averaged_tokens(*frame, pool))   # over the computed queries
    return (block_flops(len(computed) * tokens, dim, ffn, context) + 4 * keys * dim
            + 2 * len(riding) * tokens * 2 * dim * dim)


def wan14b_block_saved(candidate: "Candidate") -> float:
    """The block FLOPs a sparse block of ``candidate`` saves at Wan-14B 720p (21 frames of 45x80 tokens, 512 text
    tokens), over its G rotations, its attention widened where it says; the correction not counted."""
    from .metrics import block_flops
    w, groups = WAN14B_BLOCK, candidate.groups
    tokens = w["rows"] * w["columns"]
    dense = block_flops(w["frames"] * tokens, w["dim"], w["ffn"], w["text"])
    work = 0.0
    for group in range(groups):
        computed = list(range(group, w["frames"], groups))
        if not candidate.pooled_keys:
            work += block_flops(len(computed) * tokens, w["dim"], w["ffn"], w["text"])
            continue
        riding = riding_frames(computed, w["frames"], candidate.key_stride)
        work += widened_block_flops(computed, riding, (w["rows"], w["columns"]), candidate.pooled_keys,
                                    candidate.near_keys, w["dim"], w["ffn"], w["text"])
    return 1.0 - work / groups / dense


class PooledKeys:
    """Each sparse call's computed frames attend, besides each other, to the skipped frames' keys and values averaged
    over ``pool`` x ``pool`` tokens after their projection, their norm and their RoPE (``weighted``: each weighs as the
    tokens it stands for, the log of their count added in the softmax: proportional attention), and to the whole keys
    of the skipped frames within ``near`` frames of their own. In the study the skipped frames' tokens ride along as
    extra tokens of the call (their queries answered with zeros, their outputs dropped before the restore);
    ``flops`` is what the real mechanism does less than the call counted: the skipped tokens need only their key and
    value projections, the computed queries attend to the keys said. Wan text-to-video."""

    def __init__(self, pool: int, weighted: bool, near: int, diffusion_model, correction):
        self.pool, self.weighted, self.near, self.correction = pool, weighted, near, correction
        self.dim, self.ffn = diffusion_model.dim, diffusion_model.ffn_dim
        self.flops = 0.0

    def averaged(self, tokens: int) -> int:
        """The averaged tokens of a square frame of ``tokens``."""
        return averaged_tokens(math.isqrt(tokens), math.isqrt(tokens), self.pool)

    def near_frames(self, computed: tuple, riding: list) -> torch.Tensor:
        """[computed, riding]: whether a riding frame is within ``near`` frames of a computed one."""
        return (torch.tensor(computed).view(-1, 1) - torch.tensor(riding)).abs() <= self.near

    def count(self, batch: int, computed: tuple, riding: list, skipped: int, tokens: int, context: int):
        """What :class:`quality.host.BlockWork` counts for the call (every token of the ``computed`` and ``riding``
        frames through the block, the correction at frames of ``(computed + riding) * tokens / computed`` tokens)
        replaced by the mechanism's real work (:func:`widened_block_flops`)."""
        from comfyui_fis.fis_core import correction_flops, fit_sources

        from .metrics import block_flops
        side, length = math.isqrt(tokens), (len(computed) + len(riding)) * tokens
        counted = block_flops(length, self.dim, self.ffn, context)
        real = widened_block_flops(computed, riding, (side, side), self.pool, self.near, self.dim, self.ffn, context)
        if self.correction is not None:
            fit = len(fit_sources(tuple(computed))[0])
            counted += correction_flops(fit, skipped, length // len(computed), self.dim, self.correction)
            real += correction_flops(fit, skipped, tokens, self.dim, self.correction)
        self.flops += batch * (real - counted)

    def attention(self, computed: tuple, riding: list, tokens: int, previous, rope=None):
        """The self-attention of a call of the ``computed`` frames' tokens, then the ``riding`` ones: computed
        queries against the keys said, zeros for the riding queries. With ``rope`` (the riding tokens' RoPE and each
        window's centre token's) the keys are averaged before their RoPE and given the centre's: averaging rotated
        keys cancels their fast-turning channels."""
        pool, frames, kept = self.pool, len(riding), len(computed) * tokens
        length, every, averaged = kept + frames * tokens, list(range(frames)), self.averaged(tokens)
        near = self.near_frames(computed, riding).repeat_interleave(tokens, 0)      # [kept, riding frames]
        whole = torch.where(near.repeat_interleave(tokens, 1), 0.0, -math.inf)
        weight = 2 * math.log(pool) if self.weighted else 0.0
        bias = torch.cat([torch.zeros(kept, kept), whole, torch.where(near, -math.inf, weight).repeat_interleave(
            averaged, 1)], 1)
        if not self.near:                                   # no whole keys: leave them out of the call
            bias = torch.cat([bias[:, :kept], bias[:, length:]], 1)

        def averaged_keys(k, heads):
            if rope is None:
                return pooled_tokens(k, frames, every, pool)[0]
            from comfy.ldm.flux.math import _apply_rope1
            tokens_rope, centres = rope
            plain = _apply_rope1(k.view(*k.shape[:2], heads, -1), tokens_rope.transpose(-1, -2)).flatten(2)
            pooled = pooled_tokens(plain, frames, every, pool)[0]
            return _apply_rope1(pooled.view(*pooled.shape[:2], heads, -1), centres).flatten(2)

        def attend(func, q, k, v, *args, **kwargs):
            if q.shape[1] != length or k.shape[1] != length:            # cross-attention, or another call
                return previous(func, q, k, v, *args, **kwargs) if previous else func(q, k, v, *args, **kwargs)
            heads = kwargs.get("heads", args[0] if args else None)
            whole_keys = (k[:, kept:], v[:, kept:]) if self.near else (k[:, :0], v[:, :0])
            keys = torch.cat([k[:, :kept], whole_keys[0], averaged_keys(k[:, kept:], heads)], 1)
            values = torch.cat([v[:, :kept], whole_keys[1], pooled_tokens(v[:, kept:], frames, every, pool)[0]], 1)
            kwargs["mask"] = bias.to(q.device, q.dtype)
            out = func(q[:, :kept], keys, values, *args, **kwargs)
            return torch.cat([out, out.new_zeros(out.shape[0], length - kept, out.shape[2])], 1)
        return attend


@contextmanager
def _pooled_keys(runner: Runner, candidate: "Candidate", correction):
    """The G=3-or-more sparse calls of the run as :class:`PooledKeys` runs them, the keys of the skipped frames
    ``candidate.key_stride`` frames apart from the computed ones alone (1: every frame); yields it (its ``flops``
    to add)."""
    import comfyui_fis.nodes.patching.fis as patcher
    from comfyui_fis.nodes.families.base import cut_tokens
    original_args, original_restore = patcher.sparse_args, patcher.restore
    mechanism = PooledKeys(candidate.pooled_keys, not candidate.pooled_unweighted, candidate.near_keys,
                           runner.model.model.diffusion_model, correction)

    def sparse_args(family, key, args, layout, plan, shared):
        sub = original_args(family, key, args, layout, plan, shared)
        if 2 * len(plan.computed) >= layout.frames - 1:                 # a G=2 call (an opening step) runs as it is
            return sub
        skipped = [f for f in range(layout.frames) if f not in plan.computed]
        riding = riding_frames(plan.computed, layout.frames, candidate.key_stride)
        tokens = layout.tokens_per_frame
        index = (torch.tensor(riding).view(-1, 1) * tokens + torch.arange(tokens)).flatten().to(args["img"].device)
        options = sub["transformer_options"]
        rope = None
        if candidate.pooled_rope:
            centres = pooled_tokens(args["img"], layout.frames, riding, candidate.pooled_keys)[1]
            rope = (cut_tokens(args["pe"], index), cut_tokens(args["pe"], centres.to(args["img"].device)))
        attend = mechanism.attention(plan.computed, riding, tokens, options.get("optimized_attention_override"), rope)
        mechanism.count(args["img"].shape[0], plan.computed, riding, len(skipped), tokens, args["txt"].shape[1])
        return {**sub, "img": torch.cat([sub["img"], args["img"][:, index]], 1),
                "pe": torch.cat([sub["pe"], cut_tokens(args["pe"], index)], 1),
                "transformer_options": {**options, "optimized_attention_override": attend}}

    def restore(x, y_sub, layout, plan, carry, rows=None):
        return original_restore(x, y_sub[:, :len(plan.computed) * layout.tokens_per_frame], layout, plan, carry, rows)
    patcher.sparse_args, patcher.restore = sparse_args, restore
    try:
        yield mechanism
    finally:
        patcher.sparse_args, patcher.restore = original_args, original_restore


def measure(runner: Runner, candidate: Candidate) -> dict:
    """``runner``'s measurement of ``candidate``, the mechanism's own FLOPs counted in the compute saved."""
    from contextlib import ExitStack
    with ExitStack() as stack:
        study = None
        if candidate.mechanism is not None:
            study = stack.enter_context(_study_restore(runner, candidate.mechanism, candidate.groups))
        if candidate.context_pool:
            stack.enter_context(_pooled_context(candidate.context_pool, candidate.context_weighted))
        pooled = None
        if candidate.pooled_keys:
            correction = run_correction(runner.model, candidate.widgets)
            pooled = stack.enter_context(_pooled_keys(runner, candidate, correction))
        if candidate.opening is not None or candidate.closing is not None:
            stack.enter_context(_step_groups(candidate.opening, candidate.closing, candidate.fresh_sums))
        row = runner.measure(Setting(candidate.name, "fis", candidate.widgets))
    extra_flops = (study.extra_flops if study else 0.0) + (pooled.flops if pooled else 0.0)
    row["compute_saved"] -= extra_flops / (len(runner.prompts) * dense_block_work(runner.model, runner.steps)[0])
    row["groups"] = candidate.groups
    if candidate.pooled_keys or candidate.context_pool or (candidate.mechanism and candidate.mechanism.oracle):
        del row["tokens_skipped"]          # it counted the study's extra tokens (or a probe's), not the mechanism's
    row["wan14b_block_saved"] = wan14b_block_saved(candidate)
    if study is not None:
        if candidate.mechanism.oracle is None:            # a probe keeps what today's restore keeps
            row["kept_values_per_block"] = study.kept_values
            row["wan14b_kept_mb"] = wan14b_kept_mb(candidate.mechanism, candidate.groups)
    return row


def wan14b_kept_mb(mechanism: Mechanism, groups: int) -> float:
    """What ``mechanism`` keeps across steps at Wan-14B 720p (fp32 sums, model-dtype residuals of 2 bytes), in MB
    for all sparse blocks and one batch entry."""
    w = WAN14B
    classes = groups - 1 if mechanism.dense_pairs else min(mechanism.next_pairs, groups - 1)
    sums = 2 * w["dim"] * w["map"] * 4 * (int(mechanism.carried) + classes)
    return w["blocks"] * (sums + own_residual_bytes(mechanism, groups)) / 1e6


def own_residual_bytes(mechanism: Mechanism, groups: int) -> float:
    """What ``mechanism``'s own residuals keep across steps at Wan-14B 720p for one sparse block and batch entry, in
    bf16 (FP8 where it says; the frame's input residual as well where scaled): a step keeps a residual for each of
    its computed frames (a G-th of the frames) and each later step that skips it within ``own_age`` steps, and each
    waits until that step, so between two steps a block holds ``A(A+1)/2`` G-ths of its frames, ``A = min(own_age,
    G-1)``."""
    if not mechanism.own_residual:
        return 0.0
    oldest = groups - 1 if mechanism.own_age is None else min(mechanism.own_age, groups - 1)
    waiting = oldest * (oldest + 1) / 2
    kept = 1 / mechanism.own_pool ** 2 * (0.5 if mechanism.own_fp8 else 1.0) + mechanism.own_scaled
    return WAN14B["frames"] * waiting / groups * WAN14B["tokens"] * WAN14B["dim"] * 2 * kept


EVERY_BLOCK_G3 = {"groups": 3, "sparse_blocks": "all"}
FIRST_DENSE = {"sparse_blocks": "all", "dense_first_step": True}
EVERY_BLOCK_FINAL_DENSE = {"sparse_blocks": "all", "dense_final_step": True}
#: The computed frames' attention widened (:class:`PooledKeys`): every skipped frame's keys averaged, or the skipped
#: frames between a computed frame and its computed neighbours (its span: within G-1 frames) whole and the others
#: averaged, and with those whole keys the final step dense.
KEY_CANDIDATES = (
    Candidate("G=3, every block, the skipped frames' keys averaged over 4x4", EVERY_BLOCK_G3, pooled_keys=4),
    Candidate("G=3, every block, the span's keys whole, the others averaged over 4x4", EVERY_BLOCK_G3,
              pooled_keys=4, near_keys=2),
    Candidate("G=3, every block, the span's keys whole, the others averaged over 2x2", EVERY_BLOCK_G3,
              pooled_keys=2, near_keys=2),
    Candidate("G=3, auto blocks, the span's keys whole, the others averaged over 4x4", {"groups": 3},
              pooled_keys=4, near_keys=2),
    Candidate("G=3, every block, the final step dense, the span's keys whole, the others averaged over 4x4",
              {**EVERY_BLOCK_G3, "dense_final_step": True}, pooled_keys=4, near_keys=2),
)
SPAN_KEYS = KEY_CANDIDATES[1]

#: ``near_keys`` for every skipped frame's keys whole
ANY_DISTANCE = 1 << 20
#: What widening the attention gives at 8 prompts, beyond :data:`KEY_CANDIDATES`: the averaging's size, its weight and
#: its RoPE, how many whole frames, every frame's keys whole, and G=2, G=4 with it.
KEY_VARIANTS = (
    *KEY_CANDIDATES,
    Candidate("G=3, every block, the skipped frames' keys averaged over 2x2", EVERY_BLOCK_G3, pooled_keys=2),
    Candidate("G=3, every block, the skipped frames' keys averaged over 8x8 (one key a frame here)", EVERY_BLOCK_G3,
              pooled_keys=8),
    Candidate("G=3, every block, the skipped frames' keys averaged over 4x4, unweighted", EVERY_BLOCK_G3,
              pooled_keys=4, pooled_unweighted=True),
    Candidate("G=3, every block, the skipped frames' keys averaged over 4x4 before their RoPE", EVERY_BLOCK_G3,
              pooled_keys=4, pooled_rope=True),
    Candidate("G=3, every block, the adjacent frames' keys whole, the others averaged over 4x4", EVERY_BLOCK_G3,
              pooled_keys=4, near_keys=1),
    Candidate("G=3, every block, the adjacent frames' keys whole, the others averaged over 2x2", EVERY_BLOCK_G3,
              pooled_keys=2, near_keys=1),
    Candidate("G=3, every block, the span's keys whole, the others averaged over 4x4, unweighted", EVERY_BLOCK_G3,
              pooled_keys=4, near_keys=2, pooled_unweighted=True),
    Candidate("G=3, every block, the span's keys whole, the others averaged over 4x4 before their RoPE",
              EVERY_BLOCK_G3, pooled_keys=4, near_keys=2, pooled_rope=True),
    Candidate("G=3, every block, the span's keys whole, the others averaged over 8x8 (one key a frame here)",
              EVERY_BLOCK_G3, pooled_keys=8, near_keys=2),
    Candidate("G=3, every block, the span's keys whole, the others averaged, per-distance maps", EVERY_BLOCK_G3,
              PER_DISTANCE_BOTH, pooled_keys=4, near_keys=2),
    Candidate("G=3, every block, the span's keys whole, the others averaged, its first step at G=2", EVERY_BLOCK_G3,
              pooled_keys=4, near_keys=2, opening=(2, 1)),
    Candidate("G=3, every block, every frame's keys whole", EVERY_BLOCK_G3, pooled_keys=1, near_keys=ANY_DISTANCE),
    Candidate("G=4, every block, the span's keys whole, the others averaged over 4x4", {**EVERY_BLOCK_G3, "groups": 4},
              pooled_keys=4, near_keys=3),
    Candidate("G=4, every block, every second frame's keys whole", {**EVERY_BLOCK_G3, "groups": 4}, pooled_keys=1,
              near_keys=ANY_DISTANCE, key_stride=2),
)

#: The candidates at 8 prompts: every mechanism at G=2 and G=3 (auto blocks; G=3's on every block too), what a
#: dense first step's exact pairs give, G=3 opened or closed by G=2 steps, the own residual's cut forms, the probes,
#: and schedules of the product as it is.
CANDIDATES = (
    *(Candidate(m.name, {"groups": g}, m) for g in (2, 3) for m in MECHANISMS),
    *(Candidate(m.name, {"groups": 3}, m) for m in G3_MECHANISMS),
    *(Candidate(f"every block: {m.name}", EVERY_BLOCK_G3, m) for m in (MECHANISMS[2], MECHANISMS[4], *G3_MECHANISMS)),
    *(Candidate(f"every block, the first step dense: {m.name}", {**FIRST_DENSE, "groups": g}, m)
      for g in (2, 3) for m in DENSE_STEP_MECHANISMS),
    *(Candidate(f"faithful: {m.name}", {**FIRST_DENSE, "dense_final_step": True}, m) for m in DENSE_STEP_MECHANISMS[:2]),
    Candidate("every block, the first step dense: + per-distance maps from the dense step and the previous steps",
              {**FIRST_DENSE, "groups": 3}, Mechanism("dense and previous steps' pairs", next_pairs=2, dense_pairs=True,
                                                      per_distance=True)),
    Candidate("G=3 every block, its first step at G=2", EVERY_BLOCK_G3, opening=(2, 1)),
    Candidate("G=3 every block, its first step at G=2, the fit sums afresh after it", EVERY_BLOCK_G3, opening=(2, 1),
              fresh_sums=True),
    Candidate("G=3 every block, its first two steps at G=2", EVERY_BLOCK_G3, opening=(2, 2)),
    Candidate("G=3 auto blocks, its first step at G=2", {"groups": 3}, opening=(2, 1)),
    Candidate("G=3 every block, its final step at G=2", EVERY_BLOCK_G3, closing=2),
    Candidate("G=3 every block, its first and final steps at G=2", EVERY_BLOCK_G3, opening=(2, 1), closing=2),
    Candidate("G=3 every block, its first step at G=2, the final step dense",
              {**EVERY_BLOCK_G3, "dense_final_step": True}, opening=(2, 1)),
    *(Candidate(f"G=3 every block, per-distance maps, both distances, {where}", {**EVERY_BLOCK_G3, **widgets},
                PER_DISTANCE_BOTH, **steps)
      for where, widgets, steps in (("its first step at G=2", {}, {"opening": (2, 1)}),
                                    ("its first two steps at G=2", {}, {"opening": (2, 2)}),
                                    ("its final step at G=2", {}, {"closing": 2}),
                                    ("its first and final steps at G=2", {}, {"opening": (2, 1), "closing": 2}),
                                    ("the final step dense", {"dense_final_step": True}, {}))),
    *(Candidate(f"{label}: {m.name}", widgets, m) for label, widgets in
      (("G=2 auto blocks", {}), ("G=2 every block, the final step dense", EVERY_BLOCK_FINAL_DENSE))
      for m in (MECHANISMS[4], *OWN_RESIDUAL_FORMS)),
    *(Candidate(f"{label}: {m.name}", widgets, m) for label, widgets in
      (("G=2 auto blocks", {}), ("G=2 every block", {"sparse_blocks": "all"}), ("G=3 every block", EVERY_BLOCK_G3))
      for m in PROBES),
    *(Candidate(f"{label}, the skipped frames' tokens averaged over {pool}x{pool} as context{weight}", widgets,
                context_pool=pool, context_weighted=bool(weight))
      for label, widgets in (("G=2 every block", {"sparse_blocks": "all"}), ("G=3 every block", EVERY_BLOCK_G3))
      for pool, weight in ((4, ""), (2, ""), (4, ", each weighing as its 16 tokens"))),
    *KEY_VARIANTS,
    Candidate("G=2, auto blocks (balanced)", {}),
    Candidate("G=2, every block (fastest)", {"sparse_blocks": "all"}),
    Candidate("G=2, every block, the final step dense", EVERY_BLOCK_FINAL_DENSE),
    Candidate("G=2, auto blocks, the final step dense", {"dense_final_step": True}),
    Candidate("G=3, auto blocks", {"groups": 3}),
    Candidate("G=3, every block", EVERY_BLOCK_G3),
    Candidate("G=3, every block, the final step dense", {**EVERY_BLOCK_G3, "dense_final_step": True}),
    Candidate("G=3, every block, the first step dense", {**EVERY_BLOCK_G3, "dense_first_step": True}),
)

#: What is confirmed on the 32 evaluation prompts and the 16 unseen ones: the balanced and G=3 references, the
#: candidates that moved them at 8 prompts, and the probes that say where G=3 loses the video.
CONFIRM = (
    Candidate("G=2, auto blocks (balanced)", {}),
    Candidate("G=2, auto blocks, the own residual in FP8", {}, OWN_FP8),
    Candidate("G=2, every block, the final step dense", EVERY_BLOCK_FINAL_DENSE),
    Candidate("G=2, every block, the final step dense, the own residual in FP8", EVERY_BLOCK_FINAL_DENSE, OWN_FP8),
    Candidate("G=2, every block (fastest)", {"sparse_blocks": "all"}),
    Candidate("G=3, auto blocks", {"groups": 3}),
    Candidate("G=3, auto blocks, per-distance maps, both distances", {"groups": 3}, PER_DISTANCE_BOTH),
    Candidate("G=3, every block", EVERY_BLOCK_G3),
    Candidate("G=3, every block, per-distance maps, both distances", EVERY_BLOCK_G3, PER_DISTANCE_BOTH),
    Candidate("G=3, every block, the own residual, the previous step's alone", EVERY_BLOCK_G3, G3_MECHANISMS[2]),
    Candidate("G=3 every block, its first two steps at G=2", EVERY_BLOCK_G3, opening=(2, 2)),
    Candidate("G=3 every block, per-distance maps, its first step at G=2", EVERY_BLOCK_G3, PER_DISTANCE_BOTH,
              opening=(2, 1)),
    Candidate("G=3 every block, per-distance maps, its first two steps at G=2", EVERY_BLOCK_G3, PER_DISTANCE_BOTH,
              opening=(2, 2)),
    Candidate("G=3 every block, the first step dense, its exact pairs", {**EVERY_BLOCK_G3, "dense_first_step": True},
              DENSE_STEP_MECHANISMS[1]),
    Candidate("probe: G=2 auto blocks, the computed frames from the dense block", {}, PROBES[0]),
    Candidate("probe: G=3 every block, the computed frames from the dense block", EVERY_BLOCK_G3, PROBES[0]),
    Candidate("probe: G=3 every block, the skipped frames from the dense block", EVERY_BLOCK_G3, PROBES[1]),
    Candidate("G=3 every block, the skipped frames' tokens averaged over 4x4 as context", EVERY_BLOCK_G3,
              context_pool=4),
    *KEY_CANDIDATES,
)


def run_candidates(runner: Runner, chosen, log, label: str = "") -> list[dict]:
    rows = []
    for candidate in chosen:
        rows.append(measure(runner, candidate))
        log(f"{label}G={candidate.groups} {candidate.name}: {rows[-1]['psnr']:.2f} dB, "
            f"{100 * rows[-1]['compute_saved']:.1f}% saved")
    return rows


def confirm(log) -> dict:
    """The rows of :data:`CONFIRM` on the 32 evaluation prompts and on 16 unseen ones."""
    out = {}
    for label, count, seed in (("32 prompts", CONFIRM_PROMPTS, None), ("16 unseen prompts", UNSEEN_PROMPTS, UNSEEN_SEED)):
        runner = Runner(FEW_STEPS, prompts(count) if seed is None else prompts(count, seed))
        out[label] = run_candidates(runner, CONFIRM, log, f"{label}: ")
    return out


def _slim(row: dict) -> dict:
    """A row without its per-prompt lists (the summaries stay)."""
    return {k: v for k, v in row.items() if k != "per_prompt"}


def table(result: dict) -> str:
    """The markdown tables of a result: the fit errors, the candidates, the confirmation."""
    lines = ["| fit on | G=2 | G=3 |", "| --- | --- | --- |"]
    names = list(dict.fromkeys(n for g in result["fit_error"].values() for n in g))
    for name in names:
        cells = [result["fit_error"][g].get(name) for g in ("G=2", "G=3")]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{100 * v:.1f}%" for v in cells) + " |")
    own = result.get("own_residual_error", {})
    if own:
        lines += ["", "| added to today's correction | " + " | ".join(own) + " |", "| --- |" + " --- |" * len(own)]
        for name in OWN_RESIDUAL_ROWS:
            lines.append(f"| {name} | " + " | ".join(f"{100 * own[k][name]:.1f}%" for k in own) + " |")
    lines += ["", "| G | candidate | compute saved | PSNR (dB) | worst frame (dB) | SSIM | temporal error | kept at Wan-14B 720p "
              "| saved per sparse block at Wan-14B 720p |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["candidates"]:
        kept = f"{row['wan14b_kept_mb']:.0f} MB" if "wan14b_kept_mb" in row else "-"
        lines.append(f"| {row['groups']} | {row['name']} | {100 * row['compute_saved']:.1f}% | {fidelity_cells(row)} | {kept} "
                     f"| {100 * row['wan14b_block_saved']:.1f}% |")
    if "confirm" in result:
        sets = list(result["confirm"])
        lines += ["", "| setting | " + " | ".join(f"{s}: saved, PSNR (dB)" for s in sets) + " |",
                  "| --- | " + " | ".join("---" for _ in sets) + " |"]
        for i, candidate in enumerate(CONFIRM):
            cells = [result["confirm"][s][i] for s in sets]
            lines.append(f"| {candidate.name} | " + " | ".join(f"{100 * r['compute_saved']:.1f}%, {r['psnr']:.1f}" for r in cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help="prompts of the fit errors and the candidates")
    parser.add_argument("--confirm", action="store_true", help="also the winners on the 32 prompts and 16 unseen")
    parser.add_argument("--out", default=str(DOCS / "fit_study.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    log = host.boot_study()
    runner = Runner(FEW_STEPS, prompts(args.prompts))
    sparse = host.resolved_settings(runner.model).sparse_blocks
    result = {"prompts": args.prompts, "steps": FEW_STEPS, "date": time.strftime("%Y-%m-%d"), "noise_seed": NOISE_SEED,
              **dense_errors(runner, sparse)}
    log("fit errors done")
    result["candidates"] = [_slim(r) for r in run_candidates(runner, CANDIDATES, log)]
    if args.confirm:
        result["confirm"] = {k: [_slim(r) for r in v] for k, v in confirm(log).items()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


if __name__ == "__main__":
    main()
