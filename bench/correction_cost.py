"""The cost of the corrected interpolation against the plain restore, at a full-size model's shapes, before and
after the fused fit.

One sparse block's restore on random bf16 tokens (the even frames computed), timed with CUDA events (median of
20): the linear restore, the corrected restore (fit sums carried, as shipped), its fit alone (products and
solve) and the solve alone (the maps' ridged systems, from Gram sums of correlated random residuals: Cholesky before,
the Gauss-Jordan kernel after, with its error against an fp64 solve), on the torch path (``before``: the unfused
correction) and the fused one (``after``: ``fis_core.correction_kernel``), with the CUDA kernels one corrected
restore launches. The correction's own cost
(corrected minus linear) per sparse block, times the model's sparse blocks, is given as a share of the ideal
forward measured by ``bench/speed.py`` on an H200 (2026-12-05, the linear rows of
``bench/results/h200_speed_wan14b.json`` and ``h200_speed_wan5b_hv15.json``); the target is at most 3%. Pure
torch: needs no ComfyUI.

    python bench/correction_cost.py --out bench/out/correction_cost.json     # all shapes, before and after (~1 min)
    python bench/correction_cost.py --shapes wan14b-480p --fit-tokens 4096,16384 --fit-dtypes float32,bfloat16 --profile
        # other forms, and where the time goes: the CUDA kernels of one corrected restore, into OUT's .txt
    python bench/correction_cost.py --tiny --profile   # a tiny shape on the CPU: checks the script, no speed claims
                                                       # (with TRITON_INTERPRET=1 the fused path too, interpreted)
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


class Shape:
    """A model's sparse block: latent frames, tokens per frame, channels; its sparse blocks (``auto``) and the
    ideal forward (ms, H200, ``bench/speed.py``'s linear row) the correction's cost is a share of."""

    def __init__(self, frames: int, tokens: int, channels: int, sparse_blocks: int, ideal_ms: float):
        self.frames, self.tokens, self.channels = frames, tokens, channels
        self.sparse_blocks, self.ideal_ms = sparse_blocks, ideal_ms


SHAPES = {"wan14b-720p": Shape(21, 3600, 5120, 38, 5324.22), "wan14b-480p": Shape(21, 1560, 5120, 38, 1438.71),
          "hv15-720p": Shape(21, 3600, 2048, 52, 2609.56), "hv15-480p": Shape(21, 1590, 2048, 52, 690.44),
          "wan5b-720p": Shape(31, 880, 3072, 28, 472.3), "wan5b-480p": Shape(31, 390, 3072, 28, 159.63)}
TINY_SHAPES = {"tiny": Shape(9, 64, 256, 6, 0.0)}
#: The correction's own cost, at most, as a share of the ideal forward (issue 22).
TARGET = 0.03


def sparse_block(frames: int, tokens: int, channels: int, device):
    """A sparse block's layout, random bf16 input x [1, F * T, C] and output y on the even frames."""
    from comfyui_fis.fis_core import FrameLayout, build_plan, token_index
    layout = FrameLayout(0, frames, tokens)
    x = torch.randn(1, frames * tokens, channels, device=device, dtype=torch.bfloat16)
    plan = build_plan(frames, tuple(range(0, frames, 2)), "linear", device)
    return layout, x, x.index_select(1, token_index(layout, plan)) * 1.01


def fit_sums(channels: int, c: int, tokens: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram and cross sums [1, n, c, c] (fp32) of correlated random residuals over ``tokens`` fit tokens, as a fit of
    maps of ``c`` channels forms them."""
    n = channels // c
    dx = torch.randn(1, n, tokens, c, device=device) @ torch.randn(1, n, c, c, device=device)
    du = dx @ torch.randn(1, n, c, c, device=device) / c ** 0.5 + torch.randn(1, n, tokens, c, device=device)
    return dx.mT @ dx, dx.mT @ du


def peak_extra_gib(device, fn) -> float:
    """The GPU memory ``fn()`` allocated at its peak beyond what was allocated before, in GiB (0 on the CPU)."""
    base = torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return run_with_peak(device, fn)[1] - base


def measure(name: str, shape: Shape, forms, paths, device) -> list[dict]:
    from comfyui_fis.fis_core import FitSums, build_plan, correction, correction_kernel, restore
    clock = Clock(device)
    frames, tokens, channels = shape.frames, shape.tokens, shape.channels
    layout, x, y = sparse_block(frames, tokens, channels, device)
    computed = tuple(range(0, frames, 2))
    linear = build_plan(frames, computed, "linear", device)
    rows = []
    linear_ms = clock.median_ms(lambda: restore(x, y, layout, linear), reps=20, warmup=3)
    x4, y4 = x.view(1, frames, tokens, channels), y.view(1, len(computed), tokens, channels)
    for form in forms:
        corrected = build_plan(frames, computed, "corrected", device, form)
        outputs = {}
        for path in paths:
            correction_kernel.ENABLED = path == "after"
            fused = correction_kernel.fused(x4, form.channels_per_map(channels))
            outputs[path] = restore(x, y, layout, corrected).float()
            sums = FitSums()
            corrected_restore = lambda: restore(x, y, layout, corrected, (sums, "call"))  # noqa: E731
            extra_gib = peak_extra_gib(device, corrected_restore)
            corrected_ms = clock.median_ms(corrected_restore, reps=20, warmup=3)
            fit_ms = clock.median_ms(lambda: correction.fit_maps(x4, y4, corrected.fit, corrected.fit_weight,
                                                                 corrected.frame_index, (sums, "call"), form),
                                     reps=20, warmup=3)
            gram, cross = fit_sums(channels, form.channels_per_map(channels), form.fit_tokens, device)
            solve_ms = clock.median_ms(lambda: correction.ridge_solve(gram, cross, fused), reps=20, warmup=3)
            solve_error = relative_difference(correction.ridge_solve(gram, cross, fused).double(),
                                              correction.ridge_solve(gram.double(), cross.double(), False))
            cost_ms = corrected_ms - linear_ms
            share = cost_ms * shape.sparse_blocks / shape.ideal_ms if shape.ideal_ms else None
            rows.append(dict(shape=name, path=path, fused=fused, frames=frames, tokens=tokens, channels=channels,
                             fit_tokens=form.fit_tokens, fit_dtype=str(form.products_dtype(fused)).removeprefix("torch."),
                             map_channels=form.map_channels, linear_ms=round(linear_ms, 3),
                             corrected_ms=round(corrected_ms, 3), fit_ms=round(fit_ms, 3),
                             solve_ms=round(solve_ms, 3), solve_rel_err=float(f"{solve_error:.2e}"),
                             correction_ms=round(cost_ms, 3), launches=profiled(corrected_restore, device)[1],
                             sparse_blocks=shape.sparse_blocks, ideal_forward_ms=shape.ideal_ms,
                             share_of_ideal=share and round(share, 4), restore_peak_extra_gib=round(extra_gib, 3),
                             # the corrected restore against the torch path's (after; a check of the kernels)
                             rel_diff_to_before=round(relative_difference(outputs[path], outputs.get("before")), 6)))
            print(rows[-1], flush=True)
    correction_kernel.ENABLED = True
    return rows


def relative_difference(out: torch.Tensor, reference: torch.Tensor | None) -> float:
    """|out - reference| / |reference| (0 without a reference: the before row itself)."""
    return 0.0 if reference is None else ((out - reference).norm() / reference.norm()).item()


def profiled(fn, device):
    """torch.profiler's events of one call of ``fn`` and the CUDA kernels (on the CPU: operators) it launched."""
    cuda = device.type == "cuda"
    kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    activity = torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU
    torch.cuda.synchronize() if cuda else None
    with torch.profiler.profile(activities=[activity]) as profile:
        fn()
        torch.cuda.synchronize() if cuda else None
    events = profile.key_averages()
    return events, sum(event.count for event in events if event.device_type == kind)


def table(rows: list[dict]) -> str:
    """The rows as a markdown table: before and after per shape, the correction's share against the target."""
    lines = ["| shape | path | fit products | linear ms | corrected ms | fit + solve ms | solve ms (error vs fp64) "
             f"| correction ms | launches | share of the ideal forward (target <= {TARGET:.0%}) | output vs before |",
             "| --- " * 11 + "|"]
    for r in rows:
        share = "-" if r["share_of_ideal"] is None else (
            f"{r['share_of_ideal']:+.1%} ({'met' if r['share_of_ideal'] <= TARGET else 'missed'})")
        lines.append(f"| {r['shape']} | {r['path']} | {r['fit_dtype']}, {r['fit_tokens']} tokens | {r['linear_ms']:.3f} "
                     f"| {r['corrected_ms']:.3f} | {r['fit_ms']:.3f} | {r['solve_ms']:.3f} ({r['solve_rel_err']:.1e}) "
                     f"| {r['correction_ms']:.3f} | {r['launches']} "
                     f"| {share} | {r['rel_diff_to_before']:.1e} |")
    return "\n".join(lines)


def kernel_table(name: str, shape: Shape, form, device) -> str:
    """The kernels one corrected restore of ``form`` launches at this shape (on the CPU its operators), by total
    time (torch.profiler), on the path ``correction_kernel.ENABLED`` picks."""
    from comfyui_fis.fis_core import build_plan, correction_kernel, restore
    layout, x, y = sparse_block(shape.frames, shape.tokens, shape.channels, device)
    plan = build_plan(shape.frames, tuple(range(0, shape.frames, 2)), "corrected", device, form)
    for _ in range(3):
        restore(x, y, layout, plan)
    events, count = profiled(lambda: restore(x, y, layout, plan), device)
    cuda = device.type == "cuda"
    path = "after" if correction_kernel.ENABLED else "before"
    return (f"{name}, {path}, {form}: {count} {'CUDA kernel launches' if cuda else 'CPU operator calls'}\n"
            + events.table(sort_by="device_time_total" if cuda else "self_cpu_time_total", row_limit=30))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--paths", default="before,after", help="before: the torch path; after: the fused kernels")
    parser.add_argument("--fit-tokens", default="4096")
    parser.add_argument("--fit-dtypes", default="default",
                        help="dtypes of the fit's product operands: default (bf16 fused, fp32 in torch), float32, bfloat16")
    parser.add_argument("--profile", action="store_true", help="also write each shape, path and form's kernel table")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape on the CPU: checks the script, no speed claims")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "correction_cost.json"))
    args = parser.parse_args(argv)
    import_pack()
    from comfyui_fis.fis_core import CorrectionForm, correction_kernel, restore_kernel
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("correction_cost: the full-size shapes need a CUDA GPU; --tiny checks the script on the CPU")
    device = torch.device("cpu" if args.tiny else "cuda")
    shapes = TINY_SHAPES if args.tiny else SHAPES
    forms = [CorrectionForm(fit_tokens=int(budget), fit_dtype=None if dtype == "default" else getattr(torch, dtype))
             for dtype in args.fit_dtypes.split(",") for budget in args.fit_tokens.split(",")]
    paths = args.paths.split(",")
    if "after" in paths and not restore_kernel.use_triton(torch.empty(0, device=device)):
        print("no fused path here (needs CUDA and Triton, or TRITON_INTERPRET=1): 'after' left out")
        paths.remove("after")
    rows = []
    tables = []
    with torch.no_grad():
        for name in list(shapes) if args.tiny else args.shapes.split(","):
            rows += measure(name, shapes[name], forms, paths, device)
            for path in paths if args.profile else ():
                correction_kernel.ENABLED = path == "after"
                tables += [kernel_table(name, shapes[name], form, device) for form in forms]
            correction_kernel.ENABLED = True
    report = dict(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__,
                  date=datetime.date.today().isoformat(), tf32=torch.backends.cuda.matmul.allow_tf32, tiny=args.tiny,
                  ideal_forward="bench/speed.py, NVIDIA H200, 2026-12-05, linear rows", target=TARGET, rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if tables:
        Path(args.out).with_suffix(".txt").write_text("\n\n".join(tables))
    print(table(rows))
    print(f"\n{report['device']}, torch {report['torch']}, {report['date']}; written to {args.out}")


if __name__ == "__main__":
    main()
