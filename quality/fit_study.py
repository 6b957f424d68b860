"""Why the corrected interpolation's fit falls short at G=3, what each proposed remedy gives, and what brings
``balanced`` nearer dense (issue 26, items 2 and 4), on the shipped model at 4 steps.

Two parts, both against dense at the same seed:

- **Fit error** (dense activations, no sampling error): every sparse block's input and output of the dense run,
  each step, each group of G=2 and G=3. The correction is fitted on different pairs and its error measured on the
  skipped frames (the update's error energy over the update's, after the correction): on the frames FIS fits on
  today (computed frames, neighbours G frames away), on as many frames and on every frame with neighbours 1, 2 or
  G frames away (pairs FIS never has: a block never computes two frames nearer than G in one call), and on the
  skipped frames themselves (the oracle). It splits the shortfall into too few pairs and pairs at the wrong distance.
- **Candidates in the sampling loop** (8 prompts, PSNR of decoded pixels, block FLOPs saved with each mechanism's
  own work counted): the product's restore is replaced by :class:`StudyRestore`, which reproduces today's corrected
  restore and adds one mechanism: no sums over earlier steps; pairs at the skipped frames' real distances, taken
  from the block's previous step (the frames it computed there against the next step's neighbours, as restored);
  per-distance maps fitted on those pairs; the frame's own previous-step residual (what the correction missed on it
  when it was last computed); with a dense first step, that step's exact pairs at the real distances. Then G=3 opened
  by G=2 steps (a lab override of the runtime's schedule), with and without the opening's fit sums, and schedules of
  the product as it is (G=3 on every block, the first or final step dense). ``--confirm`` measures the references and
  what moved them on the 32 evaluation prompts and on 16 prompts no choice saw.

    python -m quality.fit_study                       # 8 prompts: docs/fit_study.json
    python -m quality.fit_study --confirm             # and the winners on the 32 prompts and 16 unseen ones
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import torch

from . import host
from .evaluate import DOCS, NOISE_SEED, Runner, Setting, dense_block_work, fidelity_cells, prompts
from .model import FEW_STEPS

#: The prompts the issue's figures use: the evaluation's 32 and 16 drawn with another seed (README, Quality).
CONFIRM_PROMPTS, UNSEEN_PROMPTS, UNSEEN_SEED = 32, 16, 12
#: Wan-14B 720p: 21 latent frames of 3600 tokens, 5120 channels in maps of 128, 38 sparse blocks (README, Speed)
WAN14B = dict(frames=21, tokens=3600, dim=5120, map=128, blocks=38)


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


def fit_errors(runner: Runner, sparse_blocks, frames: int, c: int = 128) -> dict:
    """The correction's relative error on the skipped frames, fitted on different pairs, averaged over the sparse
    blocks, steps and groups of the dense run (see the module's docstring)."""
    with dense_activations(runner) as calls:
        runner.clips(runner.model)
    errors: dict = {}
    for block, xin, yout in calls:
        if block not in sparse_blocks:
            continue
        batch, tokens = xin.shape[0], xin.shape[1] // frames
        x = xin.view(batch, frames, tokens, -1)
        u = yout.view(batch, frames, tokens, -1) - x
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


# --- part 2: candidates in the sampling loop -------------------------------------------------------------------

@dataclass(frozen=True)
class Mechanism:
    """One candidate on top of today's corrected restore."""

    name: str
    #: the fit adds its sums to those of the block's earlier steps (today: yes)
    carried: bool = True
    #: pairs at the skipped frames' real distances from the block's previous step join the pooled fit
    next_pairs: bool = False
    #: on a dense step (a preset's first step) each block adds the pairs of every group's skipped frames, exact
    dense_pairs: bool = False
    #: each distance (1/3, 2/3 of the way) gets its own map, fitted on the pairs at that distance (needs them)
    per_distance: bool = False
    #: a skipped frame adds what the correction missed on it when the block last computed it
    own_residual: bool = False


MECHANISMS = (
    Mechanism("today: pairs G frames apart, sums over the earlier steps"),
    Mechanism("without the sums over earlier steps", carried=False),
    Mechanism("+ pairs at the real distances (previous step)", next_pairs=True),
    Mechanism("+ per-distance maps (previous step's pairs)", next_pairs=True, per_distance=True),
    Mechanism("+ the frame's own previous-step residual", own_residual=True),
)
#: With a dense first step: what the dense step's exact pairs give the fit of the sparse steps after it.
DENSE_STEP_MECHANISMS = (
    Mechanism("today"),
    Mechanism("+ the dense step's pairs", dense_pairs=True),
    Mechanism("+ per-distance maps from the dense step", dense_pairs=True, per_distance=True),
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

    def __call__(self, x, y_sub, layout, plan, carry, rows=None):
        from comfyui_fis.fis_core.restore_kernel import restore_frames
        mech, c = self.mechanism, self.c
        batch, frames, tokens, channels = x.shape[0], layout.frames, layout.tokens_per_frame, x.shape[-1]
        if layout.prefix or layout.suffix:
            raise ValueError("the study's restore handles a sequence of frames alone (Wan text-to-video)")
        x4 = x.reshape(batch, frames, tokens, channels).float()
        restored = restore_frames(x.reshape(batch, frames, -1), y_sub.reshape(batch, len(plan.computed), -1), plan.table,
                                  plan.weight).view(batch, frames, tokens, channels).float()
        computed = plan.computed
        state = self.state.setdefault(carry[1], {"sums": {}, "residual": {}})
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
        if mech.per_distance:
            own = {d: solve(classes[d]) for d in {distance(t) for t in skipped} if d in classes}
            self.extra_flops += batch * len(own) * n * (c ** 3 / 3 + 2 * c ** 3)
        out = restored.clone()
        for t in skipped:
            dx = _residuals(x4, [t])
            out[:, t[0]] += (_per_map(dx, c) @ own.get(distance(t), maps)).transpose(1, 2).reshape(batch, tokens, channels)
            missed = state["residual"].get(t[:3])
            if mech.own_residual and missed is not None:
                out[:, t[0]] += missed
                self.extra_flops += batch * tokens * channels
        if mech.next_pairs or mech.own_residual:
            self._keep_for_later(state, x4, out - x4, computed, maps, frames)
        sums = len(state["sums"]) - (not mech.carried)
        kept = len(state["residual"]) * tokens + 2 * c * sums
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
        state = self.state.setdefault(key, {"sums": {}, "residual": {}})
        triples = {t for g in range(self.groups) for t in (between(f, group(g, self.groups, frames))
                                                             for f in range(frames) if f % self.groups != g) if t}
        for d in {distance(t) for t in triples}:
            chosen = sorted(t for t in triples if distance(t) == d)
            new = pair_sums(x4, u, chosen, self.c)
            old = state["sums"].get(d)
            state["sums"][d] = new if old is None else (old[0] + new[0], old[1] + new[1])
            self.extra_flops += batch * len(chosen) * tokens * (2 * 2 * channels * self.c + 2 * 6 * channels)

    def _keep_for_later(self, state, x4, u, computed, maps, frames):
        """What the next steps use: the previous step's pairs at the real distances (the computed frames against the
        next group's frames, as restored) and each computed frame's residual the correction missed."""
        mech, c = self.mechanism, self.c
        batch, _, tokens, channels = x4.shape
        for ahead in range(1, self.groups):
            later = group(computed[0] + ahead, self.groups, frames)
            triples = [t for t in (between(f, later) for f in computed) if t]
            if mech.next_pairs and ahead == 1:
                for d in {distance(t) for t in triples}:
                    chosen = [t for t in triples if distance(t) == d]
                    new = pair_sums(x4, u, chosen, c)
                    old = state["sums"].get(d)
                    state["sums"][d] = new if old is None else (old[0] + new[0], old[1] + new[1])
                    self.extra_flops += batch * len(chosen) * tokens * (2 * 2 * channels * c + 2 * 6 * channels)
            if mech.own_residual:
                for t in triples:
                    dx, du = _residuals(x4, [t]), _residuals(u, [t])
                    predicted = (_per_map(dx, c) @ maps).transpose(1, 2).reshape(batch, 1, tokens, channels)
                    state["residual"][t[:3]] = (du - predicted)[:, 0]
                    self.extra_flops += batch * tokens * channels * (2 * c + 2 * 6)


@dataclass(frozen=True)
class Candidate:
    """One measured setting: FIS ``widgets`` (and study overrides), the product's restore or a :class:`Mechanism` on
    today's, and optionally an opening: the first ``opening[1]`` steps at ``opening[0]`` groups (a lab override of the
    runtime's schedule; ``fresh_sums``: the fit sums start afresh after it, to see what the opening's sums give)."""

    name: str
    widgets: dict
    mechanism: Mechanism | None = None
    opening: tuple[int, int] | None = None
    fresh_sums: bool = False

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
    original_restore, original_clear = patcher.restore, FitSums.clear
    blocks = runner.model.model.diffusion_model.blocks
    full = dense_block_work(runner.model, 1)[1] // len(blocks)          # image tokens of one dense block call

    def clear(sums):
        original_clear(sums)
        study.clear()

    def dense_step(args, kwargs, out, i):
        x = kwargs.get("x", args[0] if args else None)
        if FIS_CALL.value is None and x.shape[1] == full:             # FIS off for this call: the block ran dense
            options = kwargs.get("transformer_options") or {}
            study.dense_step((i, (tuple(options.get("cond_or_uncond") or ()), x.shape[0])), x, out, runner.shape.frames)
    patcher.restore, FitSums.clear = study, clear
    handles = [b.register_forward_hook(lambda m, a, k, o, i=i: dense_step(a, k, o, i), with_kwargs=True)
               for i, b in enumerate(blocks)]
    try:
        yield study
    finally:
        patcher.restore, FitSums.clear = original_restore, original_clear
        for handle in handles:
            handle.remove()


@contextmanager
def _opening(groups: int, steps: int, fresh_sums: bool):
    """The runtime's schedule at ``groups`` for the first ``steps`` sampling steps (``fresh_sums``: its fit sums
    cleared at the first step after)."""
    from dataclasses import replace

    from comfyui_fis.nodes.patching.fis import FisRuntime, schedule_position
    original = FisRuntime.begin_call

    def begin_call(self, base_model, x, sigma, c_concat, options, kwargs):
        step, _, _ = schedule_position(options.get("sample_sigmas"), float(sigma.max()), base_model.model_sampling.sigma_max)
        kept = self.schedule
        if step < steps:
            self.schedule = replace(kept, groups=groups)
        elif step == steps and fresh_sums:
            self.run.fit_sums.clear()
        try:
            return original(self, base_model, x, sigma, c_concat, options, kwargs)
        finally:
            self.schedule = kept
    FisRuntime.begin_call = begin_call
    try:
        yield
    finally:
        FisRuntime.begin_call = original


def measure(runner: Runner, candidate: Candidate) -> dict:
    """``runner``'s measurement of ``candidate``, the mechanism's own FLOPs counted in the compute saved."""
    from contextlib import ExitStack
    with ExitStack() as stack:
        study = None
        if candidate.mechanism is not None:
            study = stack.enter_context(_study_restore(runner, candidate.mechanism, candidate.groups))
        if candidate.opening is not None:
            stack.enter_context(_opening(*candidate.opening, candidate.fresh_sums))
        row = runner.measure(Setting(candidate.name, "fis", candidate.widgets))
    row["groups"] = candidate.groups
    if study is not None:
        dense_flops, _ = dense_block_work(runner.model, runner.steps)
        row["compute_saved"] -= study.extra_flops / (len(runner.prompts) * dense_flops)
        row["kept_values_per_block"] = study.kept_values
        row["wan14b_kept_mb"] = wan14b_kept_mb(candidate.mechanism, candidate.groups)
    return row


def wan14b_kept_mb(mechanism: Mechanism, groups: int) -> float:
    """What ``mechanism`` keeps across steps at Wan-14B 720p (fp32 sums, model-dtype residuals of 2 bytes), in MB
    for all sparse blocks and one batch entry."""
    w = WAN14B
    classes = groups - 1 if mechanism.next_pairs or mechanism.dense_pairs else 0
    sums = 2 * w["dim"] * w["map"] * 4 * (int(mechanism.carried) + classes)
    residual = w["frames"] * w["tokens"] * w["dim"] * 2 * (groups - 1) / groups if mechanism.own_residual else 0
    return w["blocks"] * (sums + residual) / 1e6


EVERY_BLOCK_G3 = {"groups": 3, "sparse_blocks": "all"}
FIRST_DENSE = {"sparse_blocks": "all", "dense_first_step": True}
#: The candidates at 8 prompts: every mechanism at G=2 and G=3 (auto blocks), what a dense first step's exact pairs
#: give, G=3 opened by G=2 steps, and schedules of the product as it is.
CANDIDATES = (
    *(Candidate(m.name, {"groups": g}, m) for g in (2, 3) for m in MECHANISMS),
    *(Candidate(f"every block, the first step dense: {m.name}", {**FIRST_DENSE, "groups": g}, m)
      for g in (2, 3) for m in DENSE_STEP_MECHANISMS),
    *(Candidate(f"faithful: {m.name}", {**FIRST_DENSE, "dense_final_step": True}, m) for m in DENSE_STEP_MECHANISMS[:2]),
    Candidate("G=3 every block, its first step at G=2", EVERY_BLOCK_G3, opening=(2, 1)),
    Candidate("G=3 every block, its first step at G=2, the fit sums afresh after it", EVERY_BLOCK_G3, opening=(2, 1),
              fresh_sums=True),
    Candidate("G=3 every block, its first two steps at G=2", EVERY_BLOCK_G3, opening=(2, 2)),
    Candidate("G=3 auto blocks, its first step at G=2", {"groups": 3}, opening=(2, 1)),
    Candidate("G=2, auto blocks (balanced)", {}),
    Candidate("G=2, every block (fastest)", {"sparse_blocks": "all"}),
    Candidate("G=2, every block, the final step dense", {"sparse_blocks": "all", "dense_final_step": True}),
    Candidate("G=2, auto blocks, the final step dense", {"dense_final_step": True}),
    Candidate("G=3, auto blocks", {"groups": 3}),
    Candidate("G=3, every block", EVERY_BLOCK_G3),
    Candidate("G=3, every block, the final step dense", {**EVERY_BLOCK_G3, "dense_final_step": True}),
    Candidate("G=3, every block, the first step dense", {**EVERY_BLOCK_G3, "dense_first_step": True}),
)

#: What is confirmed on the 32 evaluation prompts and the 16 unseen ones: the balanced and G=3 references and the
#: candidates that moved them at 8 prompts.
CONFIRM = (
    Candidate("G=2, auto blocks (balanced)", {}),
    Candidate("G=2, auto blocks, per-distance maps", {}, MECHANISMS[3]),
    Candidate("G=2, auto blocks, the frame's own previous-step residual", {}, MECHANISMS[4]),
    Candidate("G=2, every block, the final step dense", {"sparse_blocks": "all", "dense_final_step": True}),
    Candidate("G=2, every block (fastest)", {"sparse_blocks": "all"}),
    Candidate("G=3, auto blocks", {"groups": 3}),
    Candidate("G=3, auto blocks, per-distance maps", {"groups": 3}, MECHANISMS[3]),
    Candidate("G=3, every block", EVERY_BLOCK_G3),
    Candidate("G=3, every block, per-distance maps", EVERY_BLOCK_G3, MECHANISMS[3]),
    Candidate("G=3 every block, its first step at G=2", EVERY_BLOCK_G3, opening=(2, 1)),
    Candidate("G=3 every block, its first two steps at G=2", EVERY_BLOCK_G3, opening=(2, 2)),
    Candidate("G=3 every block, the first step dense, its exact pairs", {**EVERY_BLOCK_G3, "dense_first_step": True},
              DENSE_STEP_MECHANISMS[1]),
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
    lines += ["", "| G | candidate | compute saved | PSNR (dB) | worst frame (dB) | SSIM | temporal error | kept at Wan-14B 720p |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["candidates"]:
        kept = f"{row['wan14b_kept_mb']:.0f} MB" if "wan14b_kept_mb" in row else "-"
        lines.append(f"| {row['groups']} | {row['name']} | {100 * row['compute_saved']:.1f}% | {fidelity_cells(row)} | {kept} |")
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
              "fit_error": fit_errors(runner, sparse, frames=runner.shape.frames)}
    log("fit errors done")
    result["candidates"] = [_slim(r) for r in run_candidates(runner, CANDIDATES, log)]
    if args.confirm:
        result["confirm"] = {k: [_slim(r) for r in v] for k, v in confirm(log).items()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


if __name__ == "__main__":
    main()
