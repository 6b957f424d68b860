"""Every attention backend the GPU can run, on the same video-like inputs: ms, TFLOPS, error against exact.

The table a reader needs before any "x faster": FIS and FPS are measured against the attention users
actually run, not only PyTorch SDPA. Backends: SDPA (flash and cuDNN), SageAttention (the ``sageattention``
package; ComfyUI's ``--use-sage-attention``), comfy-kitchen's INT8 attention (``--use-ck-attention``),
FlashAttention-3 (the ``fa3-fwd`` wheel) in BF16 and FP8, and FPS (FP8, dense and tile-sparse). A backend that
is not installed is skipped and named with the reason. Inputs are ``fps_kernel.video_qkv`` (smooth content,
a shared key offset, Wan's 3D rotary embedding); the exact reference is float32 attention on two heads.
TFLOPS count dense-equivalent work, 4 L^2 H D, for every row (so a sparse row's figure is its speed-up in
disguise, not its hardware rate).

    python bench/attention.py --shapes wan14b-720p,wan14b-480p,hv15-720p --out bench/out/attention.json

Needs a CUDA GPU; needs no ComfyUI.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fps_kernel import load_core, relative_error, video_qkv  # noqa: E402
from host_path import PACK_ROOT  # noqa: E402
from markdown import table  # noqa: E402
from timing import Clock  # noqa: E402
import backends as attn  # noqa: E402

#: name -> (frames, rows, columns) in tokens, heads; head dim 128 everywhere.
SHAPES = {
    "wan14b-720p": ((21, 45, 80), 40),
    "wan14b-480p": ((21, 30, 52), 40),
    "hv15-720p": ((21, 45, 80), 16),
}
REFERENCE_HEADS = 2


@dataclass
class Backend:
    """One attention on [B, L, H, D] bf16 tensors, or why it cannot run here."""

    name: str
    fn: Callable | None
    missing: str | None = None


def _fps(fps, grid, sparsity, **variant):
    settings = fps.FpsSettings("fp8", sparsity, "window")
    if not variant:
        return lambda q, k, v: fps.fps_attention(q, k, v, grid, settings, backend="triton"), None
    from comfyui_fis.fis_core.fps.attention import _dense_lists
    from comfyui_fis.fis_core.fps.triton_kernel import attention_triton
    layout = settings.layout(grid)

    def run(q, k, v):
        kv_list, kv_count = _dense_lists(layout.num_tiles, str(q.device))
        return attention_triton(q, k, v, layout, kv_list, kv_count, "fp8", dense=True, **variant)
    return run, None


def backends(fps, grid) -> list[Backend]:
    """Every backend of the table, built for ``grid`` (FPS's tiles depend on it)."""
    makers = [
        ("SDPA flash (bf16)", lambda: attn.sdpa("FLASH_ATTENTION")),
        ("SDPA cuDNN (bf16)", lambda: attn.sdpa("CUDNN_ATTENTION")),
        ("SageAttention (int8 QK, fp16 PV)", attn.sage),
        ("SageAttention as ComfyUI calls it (K not smoothed)", lambda: attn.sage(smooth_k=False)),
        ("comfy-kitchen int8", attn.comfy_kitchen_int8),
        ("FlashAttention-3 bf16", attn.fa3_bf16),
        ("FlashAttention-3 fp8", attn.fa3_fp8),
        ("FPS fp8, dense", lambda: _fps(fps, grid, 0.0)),
        ("FPS fp8, dense, K smoothed", lambda: _fps(fps, grid, 0.0, smooth_k=True)),
        ("FPS fp8 QK + bf16 PV, dense", lambda: _fps(fps, grid, 0.0, pv_fp8=False)),
        ("FPS fp8, 50% tiles skipped", lambda: _fps(fps, grid, 0.5)),
        ("FPS fp8, 75% tiles skipped", lambda: _fps(fps, grid, 0.75)),
        ("FPS fp8, 90% tiles skipped", lambda: _fps(fps, grid, 0.9)),
    ]
    out = []
    for name, make in makers:
        try:
            fn, version = make()
            out.append(Backend(f"{name} {version}" if version else name, fn))
        except Exception as error:          # not installed, no kernel for this GPU, an ABI mismatch: named
            out.append(Backend(name, None, f"{type(error).__name__}: {error}"[:300]))
    return out


def exact_reference(q, k, v, heads: list[int]) -> torch.Tensor:
    """Float32 attention of ``heads`` (memory-efficient SDPA kernel, no TF32): [B, L, len(heads), D]."""
    q, k, v = (x[:, :, heads].float().transpose(1, 2) for x in (q, k, v))
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)


def measure(shape_name: str, fps, clock: Clock, reps: int, warmup: int) -> list[dict]:
    grid, heads = SHAPES[shape_name]
    q, k, v = video_qkv(grid, heads=heads)
    tokens = q.shape[1]
    flops = 4.0 * tokens ** 2 * heads * q.shape[-1]
    picked = [0, heads // 2][:REFERENCE_HEADS]
    exact = exact_reference(q, k, v, picked)
    rows = []
    for backend in backends(fps, grid):
        row = dict(shape=shape_name, tokens=tokens, heads=heads, backend=backend.name)
        if backend.fn is None:
            row.update(skipped=backend.missing)
            print(f"{shape_name}: {backend.name}: skipped ({backend.missing})", flush=True)
            rows.append(row)
            continue
        try:
            out = backend.fn(q, k, v)
            error = relative_error(out[:, :, picked], exact)
            ms = clock.median_ms(lambda: backend.fn(q, k, v), reps, warmup)
        except Exception as error_:     # a kernel that fails at this shape is a row that says so
            row.update(skipped=f"failed: {type(error_).__name__}: {error_}"[:300])
            print(f"{shape_name}: {backend.name}: failed ({row['skipped']})", flush=True)
            rows.append(row)
            continue
        row.update(ms=round(ms, 3), tflops=round(flops / ms / 1e9, 1), rel_error=round(error, 5))
        print(f"{shape_name}: {backend.name}: {ms:.2f} ms, {row['tflops']:.0f} TFLOPS, error {error:.4f}", flush=True)
        rows.append(row)
        del out
    fastest = min((r for r in rows if "ms" in r and not r["backend"].startswith("FPS")), key=lambda r: r["ms"])
    for row in rows:
        if "ms" in row:
            row["vs_fastest_other"] = round(fastest["ms"] / row["ms"], 3)
            row["vs_sdpa_flash"] = round(rows[0]["ms"] / row["ms"], 3) if "ms" in rows[0] else None
    return rows


def markdown(rows: list[dict]) -> str:
    return table(["shape", "backend", "ms", "TFLOPS", "rel. error", "vs fastest other", "vs SDPA flash"],
                 [[r["shape"], r["backend"], *( [f"{r['ms']:.2f}", f"{r['tflops']:.0f}", f"{100 * r['rel_error']:.2f}%",
                                                f"{r['vs_fastest_other']:.2f}x", f"{r['vs_sdpa_flash']:.2f}x"]
                                               if "ms" in r else ["-", "-", "-", "-", r["skipped"][:60]])]
                  for r in rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(PACK_ROOT / "bench" / "out" / "attention.json"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench/attention.py needs a CUDA GPU")
    fps = load_core()
    clock = Clock("cuda")
    rows = []
    for shape in args.shapes.split(","):
        rows += measure(shape, fps, clock, args.reps, args.warmup)
        torch.cuda.empty_cache()
    print(markdown(rows))
    report = dict(what="attention backends on video-like inputs (bench/fps_kernel.video_qkv), batch 1, head dim 128",
                  date=datetime.date.today().isoformat(), device=torch.cuda.get_device_name(), torch=torch.__version__,
                  capability=list(torch.cuda.get_device_capability()), rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
