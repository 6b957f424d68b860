"""The model shaped more like Wan (issue 26), trained on a GPU and studied in the same call: its checkpoint never
leaves the machine (it is not shipped: models/ keeps the 8-block model alone), what comes back is the study.

    OUT=DIR bash quality/gpu_wan_shaped.sh                   # on the GPU: at most ~10 min, results in DIR
    python -m quality.wan_shaped --tiny --device cpu --out DIR --seconds 150   # the whole path, small, on the CPU

The shape (``quality.model.SHAPES["wan-shaped"]``): 21 latent frames of 64x64 pixels (latent 32x32, 16x16 tokens
after the model's 2x2 patches: 5,376 tokens a clip), dim 512 (4 heads of 128), feed-forward 1536, 16 blocks: 63 M
parameters, 121 MiB in fp16. Trained by :mod:`quality.train` (same recipe as the shipped model: flow matching, then
the 4-step LoRA distilled from the base's own trajectories), then measured by the studies' own code on the 32
evaluation prompts and the 16 unseen ones (``quality.evaluate``'s settings and ``quality.fit_study``'s candidates,
4 steps, PSNR against dense at the same seed, block FLOPs saved with the correction's counted), most important
first, each result written as soon as it is measured; what the time left cannot hold is listed as skipped.

GPU time, by FLOP arithmetic (``quality.metrics.block_flops``, 2 FLOPs a multiply-add; checked on the CPU with
torch's FLOP counter for the projections and the feed-forward): one block on one clip is 93.1 GFLOP forward, 59.2
of them self-attention (5,376 tokens attending to 5,376), 33.8 projections and feed-forward; a clip through 16
blocks 1.49 TFLOP forward, 4.47 with the backward pass.

- Phase 1 (flow matching, batch 8, bf16 autocast): 35.7 TFLOP a step. At ~300 TFLOP/s for the matrix products and
  flash attention and ~80 ms of fp32 element-wise traffic a step (the norms, modulation and RoPE of 43k tokens x 16
  blocks), about 0.2 s a step: ~1,100 steps (9k clips) in its 62% of a 6-minute budget. Memory: 240 MB of saved
  activations a clip and block (measured on the CPU under bf16 autocast), ~31 GB at batch 8, within an H100's 80.
- Phase 2 (4-step LoRA, 2 noises a step, 6 teacher substeps a segment): 24 teacher forwards of 2 clips (71 TFLOP)
  and the student's 8 segments trained (36 TFLOP), about 0.45 s a step: ~250 steps in its 31%.
- The study samples in fp32 as on the CPU (the host's loader, SDPA; no TF32): 4 steps x 16 blocks are 5.96 TFLOP a
  clip, 3.8 of them attention at ~30 TFLOP/s in fp32, about 0.2 s a clip: ~10 s for the 48 prompts dense, less
  with FIS; EasyCache samples one prompt at a time (~15 s a threshold).

Split of the 600 s call: ~25 s unpacking the host and starting, 360 s training (phase 1 ~223 s, phase 2 ~112 s,
files and the preview ~25 s), ~200 s of study: the dense clips, the presets, G=3 and its lab candidates, G=4 and
EasyCache at its three thresholds that skip steps at 4 steps fit; the rest (more seeds for scale, the older
variants, EasyCache 0.1 and 0.05, the fit errors of ``quality.fit_study`` on 8 prompts) as time allows.

Files in ``--out`` (at most 8, for the device's limits): ``wan_shaped_study.json`` (shape, training summary,
checkpoint SHA-256, per prompt set in ``quality.evaluate``'s results layout, timings, skipped items, errors),
``wan_shaped_front.png`` (the speed-fidelity front on the 32 prompts), ``wan_shaped_tables.md``, and training's
``train_log.json``, ``loss_curve.png``, ``samples.png``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import time
import traceback
from pathlib import Path

import torch

from . import host, train
from .evaluate import (EASYCACHE_SETTINGS, FIS_DEFAULT, FIS_FAITHFUL, FIS_FASTEST, Runner, Setting, checkpoint_hashes,
                       curve, fis_settings, prompts, tables)
from .fit_study import (CONFIRM, CONFIRM_PROMPTS, KEY_CANDIDATES, UNSEEN_PROMPTS, UNSEEN_SEED, Candidate, dense_errors,
                        measure)
from .model import FEW_STEPS

#: the prompt sets, as the 8-block model's study has them (README, Quality)
SETS = {f"{CONFIRM_PROMPTS} prompts": (CONFIRM_PROMPTS, None),
        f"{UNSEEN_PROMPTS} unseen prompts": (UNSEEN_PROMPTS, UNSEEN_SEED)}
#: prompts of the fit-error study (``quality.fit_study``'s default)
FIT_ERROR_PROMPTS = 8
#: quality.train's settings for the GPU run: batch 8 fills ~31 GB (see above), 2 noises a distillation step ~31 GB
TRAINING = {"shape": "wan-shaped", "batch": 8, "distil-batch": 2, "warmup": 100}
#: the same path at a size the CPU runs in a minute or two: 9 frames of 64x64 (G=3 keeps three frames a group)
TINY_TRAINING = {"shape": "wan-shaped-tiny", "batch": 1, "distil-batch": 1, "substeps": 1, "warmup": 5, "log-every": 5,
                 "preview": 1}
TINY_SETS = {"2 prompts": (2, None), "1 unseen prompt": (1, UNSEEN_SEED)}
#: what the study loads from the host (the loader, the sampler, ComfyUI's nodes: they import PyAV, YAML, SciPy),
#: checked before the training: a host packed without them fails in seconds, not after the training
HOST_MODULES = ("comfy.sd", "comfy.sample", "nodes", "comfy_extras.nodes_model_advanced", "comfy_extras.nodes_easycache")
#: seconds kept at the end for writing the files
RESERVE = 10.0
#: seconds the training leaves at least for the dense clips and the first settings
LEAST_STUDY = 120.0
#: the other seed's clips, for scale (a different video of the same description)
ANOTHER_SEED = "dense, another seed"
FIT_ERRORS = "fit errors on the dense run's activations"
STEPS = str(FEW_STEPS)


def study_items(num_blocks: int) -> list:
    """What is measured, most important first: the default, G=3 and the lab's best G=3 candidates, the other presets,
    G=4, EasyCache where it skips steps at 4 steps, the scale, then the rest of the 8-block model's rows."""
    fis = {s.name: s for s in fis_settings(num_blocks, FEW_STEPS)}
    confirm = {c.name: c for c in CONFIRM}
    caches = {s.widgets["reuse_threshold"]: s for s in EASYCACHE_SETTINGS}
    first = [FIS_DEFAULT, fis["FIS G=3"], fis["FIS G=3, every block"],
             confirm["G=3, auto blocks, per-distance maps, both distances"],
             confirm["G=3 every block, its first two steps at G=2"], *KEY_CANDIDATES[1:3], FIS_FASTEST, FIS_FAITHFUL, fis["FIS G=4"],
             caches[0.5], caches[0.3], caches[0.2], ANOTHER_SEED]
    # CONFIRM's rows without a lab mechanism or override are evaluate's settings under other names: measured once;
    # the probes first, which say whether G=3 loses its video in the computed frames there too
    lab = sorted((c for c in CONFIRM if (c.mechanism or c.opening or c.closing or c.context_pool or c.pooled_keys)
                  and c not in first),
                 key=lambda c: item_kind(c) != "probe")
    final_dense = confirm["G=2, every block, the final step dense"]
    return (first + lab + [final_dense] + [s for s in fis.values() if s not in first]
            + [s for s in EASYCACHE_SETTINGS if s not in first] + [FIT_ERRORS])


def item_name(item) -> str:
    return item if isinstance(item, str) else item.name


def item_kind(item) -> str:
    """What an item costs like: a dense run of the prompt sets (``fis``), one prompt at a time (``easycache``), a
    FIS run whose sparse blocks also run dense (``probe``: ``quality.fit_study``'s probes)."""
    if isinstance(item, Candidate) and item.mechanism is not None and item.mechanism.oracle is not None:
        return "probe"
    return item.kind if isinstance(item, Setting) and item.kind == "easycache" else "fis"


#: an item's time estimate before one of its kind ran, in dense runs of the prompt sets (then: the slowest of its kind)
COST = {"fis": 1.2, "easycache": 2.5, "probe": 2.5}


class Study:
    """The measurements on one checkpoint, item by item within a deadline, the results file rewritten after each."""

    def __init__(self, models_dir: Path, out: Path, deadline: float, sets: dict, log, results: dict):
        self.models_dir, self.out, self.deadline, self.log = Path(models_dir), Path(out), deadline, log
        started = time.monotonic()
        self.runners = {label: Runner(FEW_STEPS, prompts(count) if seed is None else prompts(count, seed), models_dir)
                        for label, (count, seed) in sets.items()}
        self.dense_seconds = time.monotonic() - started
        runner = next(iter(self.runners.values()))
        sets = {label: {"prompts": [s.description for s in r.prompts],
                        "steps": {STEPS: {"num_blocks": r.num_blocks, "settings": []}}} for label, r in self.runners.items()}
        self.results = results
        results.update(shape=runner.shape.metadata(), checkpoint_sha256=checkpoint_hashes(models_dir), sets=sets,
                       seconds={"dense": round(self.dense_seconds, 1)}, skipped=[], errors={})
        self.slowest = {}
        log(f"dense: {', '.join(self.runners)} sampled in {self.dense_seconds:.0f} s")
        self.write()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, items: list, fit_error_prompts: int):
        for item in items:
            name, kind = item_name(item), item_kind(item)
            estimate = self.slowest.get(kind, COST[kind] * self.dense_seconds)
            if self.left() < estimate:
                self.results["skipped"].append(name)
                self.log(f"skipped (about {estimate:.0f} s, {self.left():.0f} s left): {name}")
            else:
                started = time.monotonic()
                try:
                    self.measure(item, fit_error_prompts)
                except Exception:                      # one setting failing must not cost the rest of the call
                    self.results["errors"][name] = traceback.format_exc()
                    self.log(f"failed: {name}\n{self.results['errors'][name]}")
                seconds = time.monotonic() - started
                self.slowest[kind] = max(seconds, self.slowest.get(kind, 0.0))
                self.results["seconds"][name] = round(seconds, 1)
            self.write()

    def measure(self, item, fit_error_prompts: int):
        if item == FIT_ERRORS:
            runner = Runner(FEW_STEPS, prompts(fit_error_prompts), self.models_dir)
            sparse = host.resolved_settings(runner.model).sparse_blocks
            errors = dense_errors(runner, sparse)
            self.results["fit_error"] = {"prompts": fit_error_prompts, **errors["fit_error"]}
            self.results["own_residual_error"] = errors["own_residual_error"]
            return
        for label, runner in self.runners.items():
            entry = self.results["sets"][label]["steps"][STEPS]
            if item == ANOTHER_SEED:
                entry["another_seed"] = runner.another_seed()
                self.log(f"{label}, {item}: {entry['another_seed']['psnr']:.2f} dB")
                continue
            row = measure(runner, item) if isinstance(item, Candidate) else runner.measure(item)
            entry["settings"].append(row)
            self.log(f"{label}, {item.name}: saved {100 * row['compute_saved']:.1f}%, PSNR {row['psnr']:.2f} dB "
                     f"({self.left():.0f} s left)")

    def write(self):
        """The results file, and from the measured rows the front (32 prompts) and the tables."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "wan_shaped_study.json").write_text(json.dumps(self.results, indent=1))
        sets = list(self.results["sets"].values())
        if any(row["compute_saved"] > 0 for row in sets[0]["steps"][STEPS]["settings"]):
            curve(front(sets[0]), self.out / "wan_shaped_front.png")
        (self.out / "wan_shaped_tables.md").write_text(
            "\n".join(f"### {label}\n\n{tables(s)}" for label, s in self.results["sets"].items()) + "\n")


#: the front's labels of the lab's rows (their names are sentences)
FRONT_LABELS = {
    "G=3, auto blocks, per-distance maps, both distances": "G=3, per-distance maps",
    "G=3 every block, its first two steps at G=2": "G=3 every block, G=2 opening",
    "G=3, every block, the span's keys whole, the others averaged over 4x4": "G=3 every block, span keys 4x4",
    "G=3, every block, the span's keys whole, the others averaged over 2x2": "G=3 every block, span keys 2x2",
    "G=3, every block, per-distance maps, both distances": "G=3 every block, per-distance maps",
    "G=2, auto blocks, the own residual in FP8": "balanced + own residual",
    "G=2, every block, the final step dense, the own residual in FP8": "final step dense + own residual",
}


def front(results: dict) -> dict:
    """``results`` as the front shows them: the probes left out (they run each block twice: not a setting), the lab's
    rows under short labels."""
    steps = {}
    for count, entry in results["steps"].items():
        settings = [{**s, "name": FRONT_LABELS.get(s["name"], s["name"])} for s in entry["settings"]
                    if not s["name"].startswith("probe:")]
        steps[count] = {**entry, "settings": settings}
    return {**results, "steps": steps}


def check_host():
    """Import :data:`HOST_MODULES`; a SystemExit names each that fails and why."""
    failed = {}
    for name in HOST_MODULES:
        try:
            importlib.import_module(name)
        except Exception as error:                 # any import failure: report them all at once
            failed[name] = repr(error)
    if failed:
        raise SystemExit("the host cannot run the study (nothing was trained): "
                         + "; ".join(f"{name}: {error}" for name, error in failed.items()))


def train_model(work: Path, minutes: float, device: str, settings: dict):
    """Train the model into ``work`` with :mod:`quality.train` (its own clock of ``minutes``)."""
    argv = ["--device", device, "--minutes", f"{minutes:.3f}", "--out", str(work)]
    for key, value in settings.items():
        argv += [f"--{key}", str(value)]
    train.main(argv)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def keep_training_files(models_dir: Path, out: Path):
    """Copy training's log and pictures from the checkpoint's folder into ``out`` (the checkpoint stays)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train_log.json", "loss_curve.png", "samples.png"):
        if (models_dir / name).exists() and models_dir.resolve() != out.resolve():
            shutil.copy(models_dir / name, out / name)


def training_summary(train_log: dict) -> dict:
    """What the study's results say of the training: steps, clips, seconds and the last loss of each phase."""
    return {"device_name": train_log["device_name"], "total_seconds": train_log.get("total_seconds"),
            **{phase: {"steps": train_log[phase]["steps"], "samples": train_log[phase]["samples"],
                       "seconds": train_log[phase]["seconds"],
                       "last_loss": train_log[phase]["loss"][-1]["loss"] if train_log[phase]["loss"] else None}
               for phase in ("base", "lora") if phase in train_log}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the study's files and training's log and pictures")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fis_wan_shaped"),
                        help="where the checkpoint is written (never models/: it is not shipped)")
    parser.add_argument("--models", type=Path, help="study this checkpoint folder instead of training one")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--until", type=float, help="Unix time by which everything is written (the call's end)")
    parser.add_argument("--seconds", type=float, default=570.0, help="without --until: the budget from now")
    parser.add_argument("--train-minutes", type=float, help="quality.train's budget (default 6, with --tiny 0.3)")
    parser.add_argument("--tiny", action="store_true", help="the small shape, prompt sets of 2 and 1: a CPU smoke test")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + ((args.until - time.time()) if args.until else args.seconds) - RESERVE
    log = host.boot_study(cpu=args.device == "cpu")
    check_host()
    results = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "device": args.device,
               "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}
    models_dir = args.models
    if models_dir is None:
        models_dir = args.work
        shutil.rmtree(models_dir, ignore_errors=True)
        wanted = args.train_minutes or (0.3 if args.tiny else 6.0)
        minutes = max(0.1, min(wanted, (deadline - time.monotonic() - LEAST_STUDY) / 60))
        log(f"training for {minutes:.2f} min")
        try:
            train_model(models_dir, minutes, args.device, TINY_TRAINING if args.tiny else TRAINING)
        finally:                                   # what training wrote comes back even if it fails
            keep_training_files(models_dir, args.out)
    else:
        keep_training_files(models_dir, args.out)
    if (models_dir / "train_log.json").exists():
        results["training"] = training_summary(json.loads((models_dir / "train_log.json").read_text()))
    study = Study(models_dir, args.out, deadline, TINY_SETS if args.tiny else SETS, log, results)
    study.run(study_items(next(iter(study.runners.values())).num_blocks), 2 if args.tiny else FIT_ERROR_PROMPTS)
    log(f"done: {len(results['skipped'])} skipped, {len(results['errors'])} failed; the checkpoint stays in {models_dir}")


if __name__ == "__main__":
    main()
