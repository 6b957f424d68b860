"""Train the model here, within a wall-clock budget this script enforces itself.

Phase 1 trains the base model by flow matching on procedural videos made on the fly
(:mod:`quality.scenes`), as Wan is trained: x_sigma = (1 - sigma) x0 + sigma noise with sigma drawn
through the flow shift, the loss the squared error of the predicted velocity noise - x0. AdamW,
warm-up then cosine decay over the phase's time, an exponential moving average of the weights
(saved), bf16 autocast on CUDA.

Phase 2 distils a 4-step sampler into a LoRA: the base model (frozen) is the teacher; for random
descriptions and noise it integrates the ODE from sigma 1 to 0 with ``--substeps`` Euler steps per
segment of the 4-step schedule, and the student (base + LoRA) learns, at the start of each segment,
the velocity that takes it in one step to where the teacher arrived. No video data is needed.

``--shape`` picks the model and its clips from :data:`quality.model.SHAPES` (the shipped one by default;
``wan-shaped`` for the model shaped more like Wan, see :mod:`quality.wan_shaped`); the checkpoint's metadata
records it, and the studies sample at that size.

    python -m quality.train --device cuda --minutes 7 --out OUT

writes to OUT: the base checkpoint and the 4-step LoRA (safetensors, fp16, ComfyUI key names),
``train_log.json`` (settings, seed, loss curves, timings), ``loss_curve.png`` and ``samples.png``
(training clips beside the base model's 20-step and the LoRA's 4-step samples). ComfyUI's ``comfy``
package must be importable: ``$COMFYUI_PATH``, the ComfyUI this pack sits in, or ``~/ComfyUI``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from . import latent, scenes, text
from .host import boot, pytorch_attention
from .model import (BASE_FILE, FEW_STEPS, LORA_FILE, LORA_RANK, METADATA_KEY, SHAPES, SHIFT, Shape, add_lora, build,
                    config_of, lora_state_dict, schedule_sigmas, shift_sigma)
from .plot import Panel, Series, save_frame_grid, save_panels

PHASE1_SHARE = 0.62   # of the budget: base model
PHASE2_SHARE = 0.93   # the base and the LoRA are trained by this share; the rest is for writing files


class Clock:
    """Wall-clock budget from its creation (the start of :func:`main`)."""

    def __init__(self, minutes: float):
        self.budget = minutes * 60
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def deadline(self, share: float) -> float:
        return self.budget * share


class Batches:
    """Random scenes of ``shape``'s clips as (clean latent, text tokens) on the device, and noise, from one seed:
    the scene words are drawn on the CPU, everything else on the device."""

    def __init__(self, seed: int, shape: Shape, device: torch.device):
        self.cpu = torch.Generator().manual_seed(seed)
        self.device_gen = torch.Generator(device).manual_seed(seed + 1)
        self.shape, self.device = shape, device

    def scenes(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices = scenes.random_indices(batch, self.cpu)
        return indices, text.embed_indices(indices).to(self.device)

    def data(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices, context = self.scenes(batch)
        video = self.render(indices)
        return latent.encode(video), context

    def render(self, indices: torch.Tensor) -> torch.Tensor:
        return scenes.render(indices, self.device_gen, frames=self.shape.frames, size=self.shape.size, device=self.device)

    def noise_latents(self, count: int) -> torch.Tensor:
        """Noise the shape of ``count`` clean latents."""
        s = self.shape
        return torch.randn(count, latent.CHANNELS, s.frames, s.latent_size, s.latent_size, generator=self.device_gen,
                           device=self.device)

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.device_gen, device=like.device)

    def uniform(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.device_gen, device=self.device)


def velocity(model, x, sigma, context):
    """The model's velocity prediction; sigma [B] in [0, 1] (the model takes sigma * 1000)."""
    options = {"optimized_attention_override": pytorch_attention}
    return model(x, sigma * 1000, context, transformer_options=options).float()


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def learning_rate(peak: float, step: int, progress: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to a tenth over the phase's time."""
    return peak * min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * min(progress, 1.0)))


class Ema:
    """Exponential moving average of some parameters (decay warming up as (1 + n) / (10 + n))."""

    def __init__(self, params, decay: float):
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self):
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - decay)

    @torch.no_grad()
    def copy_to(self, params):
        for target, value in zip(params, self.shadow):
            target.copy_(value)


class LossLog:
    """Loss per step, averaged over windows of ``every`` steps."""

    def __init__(self, every: int):
        self.every, self.window, self.points = every, [], []

    def add(self, step: int, seconds: float, loss: torch.Tensor):
        self.window.append(loss.detach())
        if len(self.window) == self.every:
            mean = torch.stack(self.window).mean().item()
            self.points.append({"step": step + 1, "seconds": round(seconds, 1), "loss": mean})
            self.window = []


def train_base(model, batches: Batches, clock: Clock, args, device) -> dict:
    """Phase 1: flow matching until the phase's deadline; leaves the EMA weights in ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    ema = Ema(params, args.ema)
    log = LossLog(args.log_every)
    start, deadline = clock.elapsed(), clock.deadline(PHASE1_SHARE)
    step = 0
    while clock.elapsed() < deadline or step == 0:
        x0, context = batches.data(args.batch)
        noise = batches.noise(x0)
        sigma = shift_sigma(batches.uniform(x0.shape[0]))
        s = sigma.view(-1, 1, 1, 1, 1)
        x = (1 - s) * x0 + s * noise
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, step, (clock.elapsed() - start) / (deadline - start), args.warmup)
        with autocast(device):
            loss = torch.nn.functional.mse_loss(velocity(model, x, sigma, context), noise - x0)
        optimizer_step(loss, optimizer, params, ema)
        log.add(step, clock.elapsed() - start, loss)
        step += 1
    ema.copy_to(params)
    return {"steps": step, "samples": step * args.batch, "seconds": round(clock.elapsed() - start, 1),
            "loss": log.points}


def optimizer_step(loss: torch.Tensor, optimizer, params: list, ema: Ema):
    """One step on ``loss``: gradients clipped to norm 1, then the EMA weights follow."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    ema.update()


@torch.no_grad()
def teacher_segments(teacher, x: torch.Tensor, context, sigmas: list[float], substeps: int, device) -> list[torch.Tensor]:
    """The teacher's states at each sigma of ``sigmas``, integrating from x (at sigmas[0]) with Euler,
    ``substeps`` steps per segment, evenly spaced in schedule time."""
    states = [x]
    times = [1 - k / (len(sigmas) - 1) for k in range(len(sigmas))]
    for t0, t1 in zip(times, times[1:]):
        for j in range(substeps):
            s0 = shift_sigma(t0 + (t1 - t0) * j / substeps)
            s1 = shift_sigma(t0 + (t1 - t0) * (j + 1) / substeps)
            with autocast(device):
                v = velocity(teacher, x, torch.full((x.shape[0],), s0, device=device), context)
            x = x + (s1 - s0) * v
        states.append(x)
    return states


def distil_lora(teacher, batches: Batches, clock: Clock, args, device) -> tuple[torch.nn.Module, dict, dict]:
    """Phase 2: a LoRA on a copy of the teacher that samples in 4 steps; returns (the student with its
    LoRA, the LoRA state dict, the log)."""
    student = copy.deepcopy(teacher)
    loras = add_lora(student, args.rank)
    params = [p for lora in loras.values() for p in lora.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lora_lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = Ema(params, args.lora_ema)
    log = LossLog(max(1, args.log_every // 10))
    sigmas = schedule_sigmas(FEW_STEPS)
    start, deadline = clock.elapsed(), clock.deadline(PHASE2_SHARE)
    step = 0
    while clock.elapsed() < deadline or step == 0:
        _, context = batches.scenes(args.distil_batch)
        noise = batches.noise_latents(args.distil_batch)
        states = teacher_segments(teacher, noise, context, sigmas, args.substeps, device)
        x = torch.cat(states[:-1])
        target = torch.cat([(b - a) / (s1 - s0) for a, b, s0, s1 in zip(states, states[1:], sigmas, sigmas[1:])])
        sigma = torch.tensor(sigmas[:-1], device=device).repeat_interleave(args.distil_batch)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lora_lr, step, (clock.elapsed() - start) / (deadline - start), warmup=20)
        with autocast(device):
            loss = torch.nn.functional.mse_loss(velocity(student, x, sigma, context.repeat(len(sigmas) - 1, 1, 1)), target)
        optimizer_step(loss, optimizer, params, ema)
        log.add(step, clock.elapsed() - start, loss)
        step += 1
    ema.copy_to(params)
    info = {"steps": step, "samples": step * args.distil_batch, "seconds": round(clock.elapsed() - start, 1),
            "sigmas": sigmas, "teacher_substeps": args.substeps, "rank": args.rank, "loss": log.points}
    return student, lora_state_dict(loras), info


@torch.no_grad()
def preview(base, student, batches: Batches, device, path: Path, count: int = 4):
    """A PNG of what was learnt: for ``count`` random descriptions, a training clip of the description,
    the base model's 20-step sample and the LoRA's 4-step sample (Euler on the sampling schedule)."""
    indices, context = batches.scenes(count)
    rows = [("training clip", (batches.render(indices) + 1) / 2)]
    noise = batches.noise_latents(count)
    for label, model, steps in (("base, 20 steps", base, 20), (f"LoRA, {FEW_STEPS} steps", student, FEW_STEPS)):
        x = noise
        sigmas = schedule_sigmas(steps)
        for s0, s1 in zip(sigmas, sigmas[1:]):
            with autocast(device):
                x = x + (s1 - s0) * velocity(model, x, torch.full((count,), s0, device=device), context)
        rows.append((label, latent.to_pixels(x)))
    grid = [(f"{label} {i}", clip[i]) for i in range(count) for label, clip in rows]
    save_frame_grid(grid, path)


def save_outputs(out: Path, model, lora: dict, log: dict, shape: Shape):
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps({**shape.metadata(), "shift": SHIFT, "seed": log["seed"]})}
    save_file(state, str(out / BASE_FILE), metadata=metadata)
    if lora:
        save_file(lora, str(out / LORA_FILE), metadata={METADATA_KEY: json.dumps({"steps": FEW_STEPS, "shift": SHIFT})})
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
    panels = []
    for phase, title in (("base", "Phase 1: flow matching (base model)"), ("lora", "Phase 2: 4-step distillation (LoRA)")):
        points = log.get(phase, {}).get("loss")
        if points:
            series = Series(f"mean loss per {points[0]['step']} steps", [p["step"] for p in points],
                            [p["loss"] for p in points], marker="")
            panels.append(Panel(title, "training step", "loss (MSE of the velocity)", [series], log_y=True))
    if panels:
        save_panels(panels, out / "loss_curve.png")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--minutes", type=float, default=7.0,
                        help="wall-clock budget from the start (Python and torch start-up come on top: ~10-20 s)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--batch", type=int, default=64, help="clips per step of phase 1")
    parser.add_argument("--distil-batch", type=int, default=32,
                        help="noises per step of phase 2 (the student trains on 4 segments of each)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=200, help="warm-up steps of phase 1")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--rank", type=int, default=LORA_RANK)
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--lora-ema", type=float, default=0.99)
    parser.add_argument("--substeps", type=int, default=6, help="teacher Euler steps per 4-step segment")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--preview", type=int, default=4, help="descriptions shown in samples.png")
    parser.add_argument("--shape", choices=tuple(SHAPES), default="shipped", help="the model and its clips")
    parser.add_argument("--layers", type=int, help="the shape's blocks, fewer for a quick smoke test")
    parser.add_argument("--frames", type=int, help="the shape's frames, fewer for a quick smoke test")
    return parser.parse_args(argv)


def shape_from_args(args) -> Shape:
    """The ``--shape``, with ``--layers`` and ``--frames`` where given."""
    overrides = {"num_layers": args.layers, "frames": args.frames}
    return replace(SHAPES[args.shape], **{k: v for k, v in overrides.items() if v is not None})


@contextmanager
def training_mode(device: torch.device):
    """The host's differentiable RoPE (not its fused inference kernel) and, on CUDA, TF32 matrix products, for the
    time of the training: a study run after it in the same process samples as it would alone."""
    import comfy.model_management
    kept = (comfy.model_management.in_training, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    comfy.model_management.in_training = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        comfy.model_management.in_training, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = kept


def main(argv=None):
    args = parse_args(argv)
    clock = Clock(args.minutes)
    device = torch.device(args.device)
    shape = shape_from_args(args)
    boot(cpu=device.type != "cuda")
    torch.manual_seed(args.seed)
    with training_mode(device):
        model = build(shape.config).to(device)
        batches = Batches(args.seed, shape, device)
        log = {"command": vars(args) | {"out": str(args.out), "device": str(device)}, "seed": args.seed,
               "shape": shape.name, "config": config_of(model), "frames": shape.frames, "size": shape.size,
               "shift": SHIFT, "torch": torch.__version__,
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
        print(f"phase 1: flow matching until {clock.deadline(PHASE1_SHARE):.0f} s", flush=True)
        log["base"] = train_base(model, batches, clock, args, device)
        print(f"  {log['base']['steps']} steps, last loss {log['base']['loss'][-1]['loss'] if log['base']['loss'] else float('nan'):.4g}", flush=True)
        model.requires_grad_(False).eval()
        save_outputs(args.out, model, {}, log, shape)          # the base model is safe even if phase 2 fails
        print(f"phase 2: 4-step LoRA until {clock.deadline(PHASE2_SHARE):.0f} s", flush=True)
        student, lora, log["lora"] = distil_lora(model, batches, clock, args, device)
        print(f"  {log['lora']['steps']} steps, last loss {log['lora']['loss'][-1]['loss'] if log['lora']['loss'] else float('nan'):.4g}", flush=True)
        save_outputs(args.out, model, lora, log, shape)
        preview(model, student, batches, device, args.out / "samples.png", args.preview)
    log["total_seconds"] = round(clock.elapsed(), 1)
    (args.out / "train_log.json").write_text(json.dumps(log, indent=1))
    print(f"wrote {args.out} in {clock.elapsed():.0f} s", flush=True)


if __name__ == "__main__":
    main()
