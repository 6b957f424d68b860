"""The cost of the corrected interpolation against the plain restore, at a full-size model's shapes.

One sparse block's restore on random bf16 tokens (Wan-14B 720p by default: 21 latent frames of 3600 tokens, 5120
channels, the 11 even frames computed), timed with CUDA events: the linear restore, the corrected restore, and
the corrected restore's fit alone, for a few correction forms (fit-token budgets, fp32 or bf16 products). Pure
torch: needs no ComfyUI.

    python bench/correction_cost.py --out bench/out/correction_cost.json
    python bench/correction_cost.py --shapes wan14b-480p --fit-tokens 4096 --fit-dtypes float32 --profile
        # also where the time goes: the CUDA kernels of one corrected restore, by total time, into OUT's .txt
    python bench/correction_cost.py --tiny --profile   # a tiny shape on the CPU: checks the script, no speed claims
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from host_path import import_pack  # noqa: E402

from speed import run_with_peak  # noqa: E402
from timing import Clock  # noqa: E402

SHAPES = {"wan14b-720p": (21, 3600, 5120), "wan14b-480p": (21, 1560, 5120), "hv15-720p": (21, 3600, 2048),
          "wan5b-720p": (31, 880, 3072)}
TINY_SHAPES = {"tiny": (9, 64, 256)}


def sparse_block(frames: int, tokens: int, channels: int, device):
    """A sparse block's layout, random bf16 input x [1, F * T, C] and output y on the even frames."""
    from comfyui_fis.fis_core import FrameLayout, build_plan, token_index
    layout = FrameLayout(0, frames, tokens)
    x = torch.randn(1, frames * tokens, channels, device=device, dtype=torch.bfloat16)
    plan = build_plan(frames, tuple(range(0, frames, 2)), "linear", device)
    return layout, x, x.index_select(1, token_index(layout, plan)) * 1.01


def peak_extra_gib(device, fn) -> float:
    """The GPU memory ``fn()`` allocated at its peak beyond what was allocated before, in GiB (0 on the CPU)."""
    base = torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return run_with_peak(device, fn)[1] - base


def measure(name: str, frames: int, tokens: int, channels: int, forms, device) -> list[dict]:
    from comfyui_fis.fis_core import build_plan, correction, restore
    clock = Clock(device)
    layout, x, y = sparse_block(frames, tokens, channels, device)
    computed = tuple(range(0, frames, 2))
    linear = build_plan(frames, computed, "linear", device)
    rows = []
    linear_ms = clock.median_ms(lambda: restore(x, y, layout, linear), reps=20, warmup=3)
    x4, y4 = x.view(1, frames, tokens, channels), y.view(1, len(computed), tokens, channels)
    for form in forms:
        corrected = build_plan(frames, computed, "corrected", device, form)
        extra_gib = peak_extra_gib(device, lambda: restore(x, y, layout, corrected))
        rows.append(dict(shape=name, frames=frames, tokens=tokens, channels=channels, fit_tokens=form.fit_tokens,
                         fit_dtype=str(form.fit_dtype).removeprefix("torch."), map_channels=form.map_channels,
                         linear_ms=round(linear_ms, 3),
                         corrected_ms=round(clock.median_ms(lambda: restore(x, y, layout, corrected), reps=20, warmup=3), 3),
                         fit_ms=round(clock.median_ms(lambda: correction.fit_maps(
                             x4, y4, corrected.fit, corrected.fit_weight, corrected.frame_index, form=form),
                             reps=20, warmup=3), 3),
                         restore_peak_extra_gib=round(extra_gib, 3)))
        print(rows[-1], flush=True)
    return rows


def kernel_table(name: str, frames: int, tokens: int, channels: int, form, device) -> str:
    """The kernels one corrected restore of ``form`` launches at this shape (on the CPU its operators), by total
    time (torch.profiler)."""
    from comfyui_fis.fis_core import build_plan, restore
    layout, x, y = sparse_block(frames, tokens, channels, device)
    plan = build_plan(frames, tuple(range(0, frames, 2)), "corrected", device, form)
    for _ in range(3):
        restore(x, y, layout, plan)
    cuda = device.type == "cuda"
    activity = torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU
    kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    torch.cuda.synchronize() if cuda else None
    with torch.profiler.profile(activities=[activity]) as profile:
        restore(x, y, layout, plan)
        torch.cuda.synchronize() if cuda else None
    events = profile.key_averages()
    launches = sum(event.count for event in events if event.device_type == kind)
    return (f"{name}, {form}: {launches} {'CUDA kernel launches' if cuda else 'CPU operator calls'}\n"
            + events.table(sort_by="device_time_total" if cuda else "self_cpu_time_total", row_limit=30))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--fit-tokens", default="4096,8192,16384,32768")
    parser.add_argument("--fit-dtypes", default="float32,bfloat16", help="dtypes of the fit's products")
    parser.add_argument("--profile", action="store_true", help="also write each shape and form's CUDA kernel table")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape on the CPU: checks the script, no speed claims")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "correction_cost.json"))
    args = parser.parse_args(argv)
    import_pack()
    from comfyui_fis.fis_core import CorrectionForm
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("correction_cost: the full-size shapes need a CUDA GPU; --tiny checks the script on the CPU")
    device = torch.device("cpu" if args.tiny else "cuda")
    shapes = TINY_SHAPES if args.tiny else SHAPES
    forms = [CorrectionForm(fit_tokens=int(budget), fit_dtype=getattr(torch, dtype))
             for dtype in args.fit_dtypes.split(",") for budget in args.fit_tokens.split(",")]
    rows = []
    tables = []
    with torch.no_grad():
        for name in list(shapes) if args.tiny else args.shapes.split(","):
            rows += measure(name, *shapes[name], forms, device)
            tables += [kernel_table(name, *shapes[name], form, device) for form in forms] if args.profile else []
    report = dict(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__,
                  date=datetime.date.today().isoformat(), tf32=torch.backends.cuda.matmul.allow_tf32, tiny=args.tiny,
                  rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if tables:
        Path(args.out).with_suffix(".txt").write_text("\n\n".join(tables))
        print("\n\n".join(tables))


if __name__ == "__main__":
    main()
