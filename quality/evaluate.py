"""Measure FIS's quality cost on the model trained here, against dense sampling and ComfyUI's EasyCache.

For each of ``--prompts`` scene descriptions (each with its own seed), the shipped model is sampled
through ComfyUI (euler, simple, cfg 1): dense, with FIS settings, and with EasyCache at several
thresholds, at 4 steps (base + 4-step LoRA) and at 20 steps (base). Every clip is compared with the
dense clip of the same prompt and seed on decoded pixels: PSNR and SSIM per frame and the temporal
error (see :mod:`quality.metrics`). Compute saved is the share of the transformer blocks' FLOPs skipped:
for FIS from its schedule, for EasyCache the share of model calls it skipped (counted).

At 4 steps it also measures each block's sensitivity (that block alone sparse), proposes the ``auto``
blocks from it, and compares block choices at equal compute.

    python -m quality.evaluate                 # 32 prompts, 4 and 20 steps: docs/quality_*
    python -m quality.evaluate --readme        # also rewrites the README's measured section

Writes ``docs/quality_results.json``, ``docs/quality_curve.png`` and ``docs/quality_tables.md``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import host, latent, scenes
from .metrics import block_flops, fidelity, pooled_psnr, summary
from .model import BASE_FILE, FEW_STEPS, LORA_FILE, MODELS_DIR, read_shape
from .plot import Panel, Series, save_panels

PROMPT_SEED = 5
#: every clip's noise: draw number i (its prompt's index) from this seed, as ComfyUI's batch_index gives it
NOISE_SEED = 2026
#: prompts per sampler call for dense and FIS runs (EasyCache runs one prompt at a time: it decides per batch)
BATCH = 16
DOCS = host.PACK_ROOT / "docs"
README = host.PACK_ROOT / "README.md"
README_BEGIN, README_END = "<!-- quality:begin -->", "<!-- quality:end -->"


@dataclass(frozen=True)
class Setting:
    """One way of running the model: FIS with these node widgets, or EasyCache with these inputs."""

    name: str
    kind: str                       # "fis", "easycache", "fps" (widgets {"fps": ..., optionally "fis": ...}) or
                                    # "fis+easycache" (widgets {"fis": ..., "easycache": ...})
    widgets: dict = field(default_factory=dict)


FIS_DEFAULT = Setting("FIS default (balanced: auto blocks, G=2, corrected, rotated)", "fis")
FIS_FAITHFUL = Setting("FIS faithful (every block sparse, the first and final steps dense)", "fis", {"quality": "faithful"})
FIS_FASTEST = Setting("FIS fastest (every block sparse, G=2, corrected)", "fis", {"quality": "fastest"})
#: Before this round's fidelity work: linear interpolation, each block's group fixed across steps.
FIS_BEFORE = Setting("FIS linear, fixed groups (the default before)", "fis", {"interpolation": "linear", "rotate": False})


def fis_settings(num_blocks: int, steps: int) -> tuple[Setting, ...]:
    """The FIS settings measured: the presets, what rotation and the correction each add, more groups, and (at few
    steps) the old interpolations and the correction's parts. At many steps (five times the sampling work) only
    the presets, the default before and more groups."""
    settings = (
        FIS_DEFAULT,
        FIS_FAITHFUL,
        FIS_FASTEST,
        FIS_BEFORE,
        Setting("FIS G=3", "fis", {"groups": 3}),
    )
    if steps != FEW_STEPS:
        return settings
    return settings + (
        Setting("FIS linear, rotated", "fis", {"interpolation": "linear"}),
        Setting("FIS corrected, fixed groups", "fis", {"rotate": False}),
        Setting("FIS G=4", "fis", {"groups": 4}),
        Setting("FIS G=3, every block", "fis", {"groups": 3, "sparse_blocks": "all"}),
        Setting("FIS nearest, rotated", "fis", {"interpolation": "nearest"}),
        Setting("FIS first step dense (from 25% of the schedule)", "fis", {"start_percent": 0.25}),
        Setting("FIS final step dense (auto blocks)", "fis", {"dense_final_step": True}),
    )


EASYCACHE_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)
EASYCACHE_SETTINGS = tuple(Setting(f"EasyCache {t}", "easycache", {"reuse_threshold": t}) for t in EASYCACHE_THRESHOLDS)


def prompts(count: int, seed: int = PROMPT_SEED) -> list[scenes.Scene]:
    """``count`` random scenes, the same on every machine (Python's own RNG)."""
    rng = random.Random(seed)
    return [scenes.random_scene(rng) for _ in range(count)]


def dense_block_work(model, steps: int) -> tuple[float, int]:
    """Block FLOPs and image tokens of one clip (of the model's shape) sampled dense in ``steps`` steps on ``model``."""
    diffusion_model = model.model.diffusion_model
    tokens = host.shape_of(model).tokens
    per_block = block_flops(tokens, diffusion_model.dim, diffusion_model.ffn_dim, scenes.TOKENS)
    calls = steps * len(diffusion_model.blocks)
    return calls * per_block, calls * tokens


def savings(model, work: host.BlockWork, clips: int, steps: int) -> dict:
    """The share of the block FLOPs and of the block tokens that ``work`` skipped, against ``clips`` dense
    clips of ``steps`` steps."""
    flops, tokens = dense_block_work(model, steps)
    return {"compute_saved": 1.0 - work.flops / (clips * flops), "tokens_skipped": 1.0 - work.tokens / (clips * tokens)}


def run_correction(model, widgets: dict):
    """The correction form FIS runs with ``widgets`` on ``model`` (None where the restore is not corrected)."""
    settings = host.resolved_settings(model, **widgets)
    return settings.correction if settings.interpolation == "corrected" else None


class Runner:
    """Samples one prompt set at one step count and measures settings against its dense clips."""

    def __init__(self, steps: int, prompt_set: list[scenes.Scene], models_dir: Path = MODELS_DIR):
        self.steps, self.prompts = steps, prompt_set
        self.model = host.load_model(steps, models_dir)
        self.shape = host.shape_of(self.model)
        self.num_blocks = len(self.model.model.diffusion_model.blocks)
        self.dense = self.clips(self.model)

    def clips(self, model, seed: int = NOISE_SEED, batch: int = BATCH) -> list[torch.Tensor]:
        """Decoded pixels [1, 3, F, H, W] of every prompt sampled with ``model``, ``batch`` at a time."""
        out = []
        for start in range(0, len(self.prompts), batch):
            chunk = self.prompts[start:start + batch]
            latents = host.sample(model, chunk, seed, self.steps, batch_index=range(start, start + len(chunk)))
            out.extend(latent.to_pixels(latents).split(1))
        return out

    def another_seed(self) -> dict:
        """For scale: the same prompts from another seed (a different video of each description) against dense."""
        return _fidelity_summary(self.clips(self.model, seed=NOISE_SEED + 1), self.dense)

    def patched(self, setting: Setting):
        if setting.kind == "fis":
            return host.with_fis(self.model, **setting.widgets)
        if setting.kind == "fps":                  # FPS attention, under FIS where widgets has "fis"
            model = host.with_fps(self.model, **setting.widgets["fps"])
            return host.with_fis(model, **setting.widgets["fis"]) if "fis" in setting.widgets else model
        if setting.kind == "fis+easycache":        # EasyCache after FIS, as a workflow stacks them
            return host.with_easycache(host.with_fis(self.model, **setting.widgets["fis"]), **setting.widgets["easycache"])
        return host.with_easycache(self.model, **setting.widgets)

    def measure(self, setting: Setting) -> dict:
        """Fidelity of ``setting`` against dense, per prompt and summarised, and the block compute it saved
        (counted while sampling). EasyCache decides per batch, so it samples one prompt at a time."""
        model = self.patched(setting)
        fis_widgets = setting.widgets.get("fis", {}) if setting.kind in ("fps", "fis+easycache") else setting.widgets
        cached = setting.kind in ("easycache", "fis+easycache")
        correction = None if setting.kind == "easycache" else run_correction(self.model, fis_widgets)
        with host.count_block_work(model, correction) as work:
            clips = self.clips(model, batch=1 if cached else BATCH)
        result = {"name": setting.name, "kind": setting.kind, "widgets": _plain(setting.widgets),
                  **_fidelity_summary(clips, self.dense), **savings(self.model, work, len(clips), self.steps)}
        if setting.kind == "fis":
            result["blocks"] = list(host.resolved_settings(self.model, **setting.widgets).sparse_blocks)
            result["correction_share"] = work.correction_flops / max(work.flops, 1.0)
        if cached:
            result["model_calls_skipped"] = 1.0 - work.runs / (len(clips) * self.steps)
        return result


def _plain(widgets: dict) -> dict:
    """``widgets`` as JSON can hold them: a correction form (a ``FisSettings`` override) as its fields, dtypes as names."""
    from dataclasses import asdict, is_dataclass
    plain = {}
    for name, value in widgets.items():
        if is_dataclass(value):
            value = {k: str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v for k, v in asdict(value).items()}
        plain[name] = _plain(value) if isinstance(value, dict) else value
    return plain


def sensitivity_proposal(sensitivity: list[dict]) -> dict:
    """The ``auto`` blocks the sensitivity suggests: a block stays dense when making it alone sparse
    does more than twice the median block's damage (the mean squared error against dense)."""
    damage = [s["summary"]["mse"]["mean"] for s in sensitivity]
    median = statistics.median(damage)
    dense = [b for b, d in enumerate(damage) if d > 2 * median]
    return {"rule": "dense where single-block damage > 2x the median block's", "damage": damage,
            "dense_blocks": dense, "sparse_blocks": [b for b in range(len(damage)) if b not in dense]}


def block_studies(runner: Runner, log) -> dict:
    """Block sensitivity, the proposal, and block choices of equal size compared."""
    from comfyui_fis.fis_core import format_block_list
    n = runner.num_blocks
    sensitivity = []
    for block in range(n):
        sensitivity.append(runner.measure(Setting(f"block {block} alone", "fis", {"sparse_blocks": str(block)})))
        log(f"  block {block} alone: {sensitivity[-1]['psnr']:.2f} dB")
    proposal = sensitivity_proposal(sensitivity)
    order = sorted(range(n), key=lambda b: proposal["damage"][b])   # least sensitive first
    auto = host.resolved_settings(runner.model).sparse_blocks
    comparisons, measured = [], {}
    for k in sorted({len(auto), len(proposal["sparse_blocks"])}):
        choices = {"least sensitive": tuple(sorted(order[:k])), "first blocks (naive)": tuple(range(k)),
                   "last blocks": tuple(range(n - k, n))}
        if k == len(auto):
            choices["auto (current default)"] = auto
        for label, blocks in choices.items():
            spec = format_block_list(blocks)
            if spec not in measured:
                measured[spec] = runner.measure(Setting(spec, "fis", {"sparse_blocks": spec}))
            result = {**measured[spec], "name": f"{label}: {spec}", "choice": label, "k": k}
            comparisons.append(result)
            log(f"  {k} blocks, {result['name']}: {result['psnr']:.2f} dB")
    return {"sensitivity": sensitivity, "proposal": proposal, "equal_compute": comparisons}


def checkpoint_hashes(models_dir: Path = MODELS_DIR) -> dict:
    """SHA-256 of the checkpoint and the LoRA, so that results can be matched to the files they measured."""
    return {name: hashlib.sha256((Path(models_dir) / name).read_bytes()).hexdigest() for name in (BASE_FILE, LORA_FILE)}


def run(prompt_count: int, steps_list: list[int], models_dir: Path, log=print, blocks: bool = True,
        prompt_seed: int = PROMPT_SEED) -> dict:
    """Every measurement; returns the results as written to ``quality_results.json``."""
    prompt_set = prompts(prompt_count, prompt_seed)
    shape = read_shape(Path(models_dir) / BASE_FILE)
    results = {"checkpoint_sha256": checkpoint_hashes(models_dir), "prompts": [s.description for s in prompt_set],
               "noise_seed": NOISE_SEED, "frames": shape.frames, "size": shape.size, "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d"), "steps": {}}
    dense_by_steps = {}
    for steps in steps_list:
        started = time.monotonic()
        runner = Runner(steps, prompt_set, models_dir)
        dense_by_steps[steps] = runner.dense
        log(f"{steps} steps: dense sampled ({time.monotonic() - started:.0f} s)")
        entry = {"settings": [], "num_blocks": runner.num_blocks}
        # scale: the same prompts with another seed (a different video of the same description)
        entry["another_seed"] = runner.another_seed()
        for setting in fis_settings(runner.num_blocks, steps) + EASYCACHE_SETTINGS:
            entry["settings"].append(runner.measure(setting))
            s = entry["settings"][-1]
            log(f"  {setting.name}: saved {100 * s['compute_saved']:.0f}%, PSNR {s['psnr']:.2f} dB "
                f"({time.monotonic() - started:.0f} s)")
        if steps == FEW_STEPS and blocks:
            results["blocks"] = block_studies(runner, log)
        results["steps"][str(steps)] = entry
    if len(dense_by_steps) > 1:
        few, many = sorted(dense_by_steps)[:2]
        results["few_vs_many_steps"] = _fidelity_summary(dense_by_steps[few], dense_by_steps[many])
    return results


def _fidelity_summary(clips: list[torch.Tensor], references: list[torch.Tensor]) -> dict:
    """Fidelity of clips against references: pooled PSNR, per-prompt figures and their summaries."""
    per_prompt = {}
    for clip, reference in zip(clips, references):
        for key, values in fidelity(clip, reference).items():
            per_prompt.setdefault(key, []).extend(values)
    return {"psnr": pooled_psnr(per_prompt["mse"]), "per_prompt": per_prompt,
            "summary": {k: summary(v) for k, v in per_prompt.items()}}


# --- outputs -------------------------------------------------------------------------------------

#: The presets, as the curve labels them (fastest first: the front runs from most saved to least).
_PRESETS = {FIS_FASTEST.name: "fastest", FIS_DEFAULT.name: "balanced", FIS_FAITHFUL.name: "faithful"}


def curve(results: dict, path: Path):
    """The speed-fidelity curve: PSNR against dense over compute saved, one panel per step count.
    Settings that skipped nothing (identical to dense) are left out of the plot, not the table."""
    panels = []
    for steps, entry in results["steps"].items():
        settings = [s for s in entry["settings"] if s["compute_saved"] > 0]
        presets = sorted((s for s in settings if s["name"] in _PRESETS), key=lambda s: s["compute_saved"])
        variants = [s for s in settings if s["kind"] == "fis" and s["name"] not in _PRESETS]
        caches = [s for s in settings if s["kind"] == "easycache"]
        series = [
            Series("FIS presets", [100 * s["compute_saved"] for s in presets], [s["psnr"] for s in presets],
                   labels=[_PRESETS[s["name"]] for s in presets]),
            Series("FIS variants", [100 * s["compute_saved"] for s in variants], [s["psnr"] for s in variants],
                   line=False, marker="s", labels=[_short(s["name"]) for s in variants]),
        ]
        if caches:
            series.append(Series("EasyCache (reuse threshold)", [100 * s["compute_saved"] for s in caches],
                                 [s["psnr"] for s in caches], marker="^",
                                 labels=[str(s["widgets"]["reuse_threshold"]) for s in caches]))
        title = f"{steps} steps ({'base + 4-step LoRA' if int(steps) == FEW_STEPS else 'base model'})"
        panels.append(Panel(title, "compute saved (% of transformer-block FLOPs)", "PSNR vs dense (dB)", series))
    save_panels(panels, path, panel_size=(640, 480))


def _short(name: str) -> str:
    """A point label for the plot: 'FIS middle half of the blocks (2-5)' -> 'blocks 2-5', 'FIS nearest' -> 'nearest'."""
    if name.endswith(")") and " block" in name:
        return "blocks " + name[name.rindex("(") + 1:-1]
    short = {FIS_BEFORE.name: "before", "FIS linear, rotated": "linear", "FIS corrected, fixed groups": "fixed groups",
             "FIS first step dense (from 25% of the schedule)": "first step dense",
             "FIS final step dense (auto blocks)": "final step dense"}
    return short.get(name, name.removeprefix("FIS ").split(" (")[0])


def fidelity_cells(result: dict) -> str:
    """A measured setting's table cells: pooled PSNR | worst frame | SSIM | temporal error."""
    summ = result["summary"]
    return (f"{result['psnr']:.1f} | {summ['psnr_min_frame']['min']:.1f} | {summ['ssim']['mean']:.4f} | "
            f"{100 * summ['temporal_error']['mean']:.1f}%")


def _row(label: str, saved: str, result: dict) -> str:
    return f"| {label} | {saved} | {fidelity_cells(result)} |"


def tables(results: dict) -> str:
    """The README tables (markdown)."""
    n = len(results["prompts"])
    lines = []
    header = ("| setting | compute saved | PSNR (dB) | worst frame (dB) | SSIM | temporal error |\n"
              "| --- | --- | --- | --- | --- | --- |")
    for steps, entry in results["steps"].items():
        kind = "base model + 4-step LoRA" if int(steps) == FEW_STEPS else "base model"
        lines += [f"**{steps} steps** ({kind}), {n} prompts, each against dense at the same seed:", "", header]
        for s in entry["settings"]:
            if s["kind"] == "fis":       # a lab row that runs extra tokens through its calls has no token share
                tokens = f" ({100 * s['tokens_skipped']:.0f}% of block tokens)" if "tokens_skipped" in s else ""
                saved = f"{100 * s['compute_saved']:.0f}%{tokens}"
            else:
                saved = f"{100 * s['compute_saved']:.0f}% ({100 * s['model_calls_skipped']:.0f}% of model calls)"
            lines.append(_row(s["name"], saved, s))
        if "another_seed" in entry:
            lines.append(_row("*dense, another seed (a different video)*", "-", entry["another_seed"]))
        lines.append("")
    if "few_vs_many_steps" in results:
        few = results["few_vs_many_steps"]
        lines += [f"For scale: dense 4-step (LoRA) against dense 20-step (base) clips of the same prompt and seed: "
                  f"{few['psnr']:.1f} dB, SSIM {few['summary']['ssim']['mean']:.4f}.", ""]
    if "blocks" in results:
        blocks = results["blocks"]
        sens = blocks["sensitivity"]
        lines += [f"**Block sensitivity** ({FEW_STEPS} steps, G=2, one block sparse at a time; PSNR against dense):", "",
                  "| block | " + " | ".join(str(b) for b in range(len(sens))) + " |",
                  "| --- |" + " --- |" * len(sens),
                  "| PSNR (dB) | " + " | ".join(f"{s['psnr']:.1f}" for s in sens) + " |", ""]
        proposal = blocks["proposal"]
        lines += [f"Proposed `auto` ({proposal['rule']}): sparse blocks "
                  f"{_blocks(proposal['sparse_blocks'])}, dense {_blocks(proposal['dense_blocks'])}.", "",
                  f"**Equal compute** ({FEW_STEPS} steps, G=2): which blocks are sparse, at the same number of sparse blocks:", "",
                  "| sparse blocks | compute saved | PSNR (dB) | worst frame (dB) | SSIM | temporal error |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for c in blocks["equal_compute"]:
            lines.append(_row(c["name"], f"{100 * c['compute_saved']:.0f}%", c))
        lines.append("")
    return "\n".join(lines)


def findings(results: dict) -> str:
    """The measured figures in sentences (markdown bullets), regenerated with the tables."""
    lines = []
    for steps, entry in results["steps"].items():
        fis = next(s for s in entry["settings"] if s["name"] == FIS_DEFAULT.name)
        caches = [s for s in entry["settings"] if s["kind"] == "easycache"]
        cache_text = "; ".join(f"threshold {s['widgets']['reuse_threshold']}: {100 * s['compute_saved']:.0f}% at "
                               f"{s['psnr']:.1f} dB" for s in caches)
        lines.append(f"- **{steps} steps**: FIS at its defaults skips {100 * fis['compute_saved']:.0f}% of the block "
                     f"FLOPs at {fis['psnr']:.1f} dB against dense (SSIM {fis['summary']['ssim']['mean']:.3f}, temporal "
                     f"error {100 * fis['summary']['temporal_error']['mean']:.1f}%). EasyCache ({cache_text}). Another "
                     f"seed of the same prompt is {entry['another_seed']['psnr']:.1f} dB away.")
    if "blocks" in results:
        blocks = results["blocks"]
        sensitivity = [s["psnr"] for s in blocks["sensitivity"]]
        worst = sorted(range(len(sensitivity)), key=lambda b: sensitivity[b])[:2]
        lines.append(f"- **Blocks**: made sparse alone, block {worst[0]} costs most ({sensitivity[worst[0]]:.1f} dB), then "
                     f"block {worst[1]} ({sensitivity[worst[1]]:.1f} dB); the median block {statistics.median(sensitivity):.1f} dB. "
                     f"Proposed `auto`: sparse {_blocks(blocks['proposal']['sparse_blocks'])}.")
        for k in sorted({c["k"] for c in blocks["equal_compute"]}):
            row = {c["choice"]: c for c in blocks["equal_compute"] if c["k"] == k}
            parts = ", ".join(f"{label} ({_blocks(c['blocks'])}) {c['psnr']:.1f} dB" for label, c in row.items())
            lines.append(f"- **{k} sparse blocks** ({100 * next(iter(row.values()))['compute_saved']:.0f}% saved): {parts}.")
    return "\n".join(lines)


def _blocks(blocks: list[int]) -> str:
    from comfyui_fis.fis_core import format_block_list
    return format_block_list(tuple(blocks)) or "none"


def update_readme(text: str, readme: Path = README):
    """Replace what lies between the README's quality markers with ``text``."""
    content = readme.read_text()
    start, end = content.index(README_BEGIN) + len(README_BEGIN), content.index(README_END)
    readme.write_text(content[:start] + "\n" + text + "\n" + content[end:])


def write_outputs(results: dict, out: Path, readme: bool):
    """The results JSON, the curve, the tables and, with ``readme``, the README's measured section."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality_results.json").write_text(json.dumps(results, indent=1))
    curve(results, out / "quality_curve.png")
    markdown = findings(results) + "\n\n" + tables(results)
    (out / "quality_tables.md").write_text(markdown + "\n")
    if readme:
        update_readme(markdown)
    print(markdown)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--steps", default="4,20", help="comma-separated step counts")
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the host's GPU")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's measured section")
    parser.add_argument("--prompt-seed", type=int, default=PROMPT_SEED,
                        help="draw other prompts (the defaults were chosen on those of the default seed)")
    parser.add_argument("--no-blocks", action="store_true", help="leave out the block studies (14 more settings)")
    parser.add_argument("--redraw", action="store_true",
                        help="sample nothing: redraw the curve and tables from OUT/quality_results.json")
    args = parser.parse_args(argv)
    if args.redraw:
        host.boot()
        write_outputs(json.loads((args.out / "quality_results.json").read_text()), args.out, args.readme)
        return
    log = host.boot_study(cpu=args.device == "cpu")
    results = run(args.prompts, [int(s) for s in args.steps.split(",")], args.models, log, blocks=not args.no_blocks,
                  prompt_seed=args.prompt_seed)
    write_outputs(results, args.out, args.readme)


if __name__ == "__main__":
    main()
