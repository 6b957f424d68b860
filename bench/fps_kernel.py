"""FPS attention on the GPU: the Triton kernel against the reference path, its accuracy against BF16 SDPA,
and its speed against PyTorch SDPA (flash backend) at Wan-14B 720p shapes.

    python bench/fps_kernel.py --out bench/out/fps_kernel.json          # on a CUDA GPU with Triton (H100: ~2 min)
    python bench/fps_kernel.py --check-only                             # only the kernel-vs-reference check

Inputs are "video-like": a smooth random content field over (frames, rows, columns) shared by queries and
keys (40% of their variance) plus noise, keys with a common offset, and Wan's 3D rotary embedding, so
that attention is local as in a video DiT (plain Gaussian Q/K gives flat attention, where no sparse
pattern can work). They are a stand-in for real activations, which need the real weights. Needs no ComfyUI.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from host_path import PACK_ROOT, import_pack  # noqa: E402
from timing import Clock  # noqa: E402
import backends  # noqa: E402


def load_core():
    """``comfyui_fis.fis_core.fps`` (the pack's core needs no ComfyUI)."""
    import_pack()
    import comfyui_fis.fis_core.fps as fps
    return fps


def rope(x: torch.Tensor, grid) -> torch.Tensor:
    """Wan's 3D rotary embedding of x [B, L, H, D]: D/2 frequency pairs split over frames, rows, columns."""
    d = x.shape[-1]
    half = d // 2
    splits = (half - 2 * (half // 3), half // 3, half // 3)
    f, r, c = torch.meshgrid(*(torch.arange(n, device=x.device) for n in grid), indexing="ij")
    angles = []
    for pos, n in zip((f, r, c), splits):
        freqs = 1.0 / (10000 ** (torch.arange(n, device=x.device, dtype=torch.float64) * 2 / (2 * n)))
        angles.append(pos.reshape(-1, 1).double() * freqs)
    angle = torch.cat(angles, -1).float()                          # [L, D/2]
    xc = torch.view_as_complex(x.float().contiguous().view(*x.shape[:-1], half, 2))
    return torch.view_as_real(xc * torch.polar(torch.ones_like(angle), angle)[None, :, None]).flatten(-2).to(x.dtype)


def video_qkv(grid, heads=40, dim=128, seed=0, device="cuda", dtype=torch.bfloat16, shared=0.4):
    g = torch.Generator(device=device).manual_seed(seed)
    frames, rows, cols = grid
    coarse = torch.randn(1, heads * dim, max(frames // 3, 2), max(rows // 4, 2), max(cols // 4, 2), generator=g, device=device)
    content = F.interpolate(coarse, size=grid, mode="trilinear", align_corners=False)
    content = content.view(1, heads, dim, -1).permute(0, 3, 1, 2)                    # [1, L, H, D]
    content = content / content.std()
    noise = lambda: torch.randn(content.shape, generator=g, device=device)
    mix = lambda: shared ** 0.5 * content + (1 - shared) ** 0.5 * noise()
    q = rope(mix(), grid)                      # unit variance per channel, as after Wan's RMS q/k norm
    k = rope(mix() + 0.5, grid)                # keys share an offset (SageAttention's reason to smooth K)
    v = torch.randn(content.shape, generator=g, device=device)
    return q.to(dtype), k.to(dtype), v.to(dtype)


#: ComfyUI's attention_pytorch on [B, L, H, D], flash backend.
sdpa, _ = backends.sdpa("FLASH_ATTENTION")


def relative_error(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


CLOCK = Clock("cuda")
REPS, WARMUP = 5, 2
SETTINGS = [("fp8", 0.0, "window"), ("bf16", 0.0, "window"), ("bf16", 0.5, "window"), ("bf16", 0.75, "window"), ("bf16", 0.9, "window"),
            ("fp8", 0.5, "window"), ("fp8", 0.75, "window"), ("fp8", 0.9, "window"), ("fp8", 0.75, "topk"),
            ("bf16", 0.75, "topk")]


def check_against_reference(fps) -> list[dict]:
    """The kernel and the reference path on the same inputs (a small grid, 2 heads): they must agree."""
    rows = []
    grid = (5, 12, 20)                                   # rows pad (12 -> 16 with 1x8x16 tiles)
    q, k, v = video_qkv(grid, heads=2)
    from comfyui_fis.fis_core.fps.triton_kernel import quantize_to_tiles
    layout = fps.TileLayout(*grid, (1, 8, 16))
    fused = quantize_to_tiles(q, layout)
    values, scale = fps.quantize_tiles(layout.to_tiles(q, 1), 128)
    same = torch.equal(fused[1], scale) and torch.equal(fused[0].view(torch.uint8), values.view(torch.uint8))
    print(f"fused quantisation kernel is bit-identical to quant.quantize_tiles: {same}")
    rows.append(dict(check="fused quantisation", passed=same))
    # (precision, sparsity, pattern, tile, text tokens in front)
    checks = [(precision, sparsity, pattern, (1, 8, 16), 0) for precision, sparsity, pattern in SETTINGS]
    checks.append(("fp8", 0.0, "window", None, 0))       # auto at sparsity 0: runs of 128 tokens
    checks += [("fp8", 0.5, "window", (1, 8, 16), 200), ("bf16", 0.5, "window", (1, 8, 16), 200)]   # HunyuanVideo
    text = [torch.randn(1, 200, 2, 128, device="cuda", dtype=q.dtype) for _ in range(3)]
    for precision, sparsity, pattern, tile, prefix in checks:
        settings = fps.FpsSettings(precision, sparsity, pattern, tile)
        inputs = [torch.cat([t[:, :prefix], x], 1) for t, x in zip(text, (q, k, v))] if prefix else (q, k, v)
        kernel = fps.fps_attention(*inputs, grid, settings, backend="triton", prefix=prefix)
        reference = fps.fps_attention(*inputs, grid, settings, backend="reference", prefix=prefix)
        error = relative_error(kernel, reference)
        limit = 2e-2 if precision == "fp8" else 1e-2   # FP8: P is quantised against the running max, not the row max
        what = settings.layout(grid).describe() + (f" + {prefix} text tokens" if prefix else "")
        rows.append(dict(precision=precision, sparsity=sparsity, pattern=pattern, tile=what,
                         kernel_vs_reference=error, passed=error < limit))
        print(f"kernel vs reference  {precision:5s} {pattern:6s} sparsity {sparsity:.2f} tile {what}: rel. error {error:.2e} "
              f"{'ok' if error < limit else 'FAILED'}")
    return rows


def accuracy_and_speed(fps, grid, heads) -> tuple[list[dict], dict]:
    q, k, v = video_qkv(grid, heads=heads)
    exact = sdpa(q, k, v)
    sdpa_ms = CLOCK.median_ms(lambda: sdpa(q, k, v), REPS, WARMUP)
    print(f"SDPA flash {q.shape[1]} tokens x {heads} heads: {sdpa_ms:.1f} ms")
    rows = []
    for precision, sparsity, pattern in SETTINGS:
        settings = fps.FpsSettings(precision, sparsity, pattern)
        call = lambda: fps.fps_attention(q, k, v, grid, settings, backend="triton")
        error = relative_error(call(), exact)
        ms = CLOCK.median_ms(call, REPS, WARMUP)
        layout = settings.layout(grid)
        kept = fps.kept_per_row(layout, sparsity) if sparsity else layout.num_tiles
        rows.append(dict(precision=precision, sparsity=sparsity, pattern=pattern, tile=layout.describe(),
                         kept_tiles_per_row=kept, tiles=layout.num_tiles, rel_error_vs_sdpa=error, ms=ms,
                         speedup=sdpa_ms / ms))
        print(f"{precision:5s} {pattern:6s} sparsity {sparsity:.2f}: rel. error {error:.4f}  {ms:7.1f} ms  "
              f"{sdpa_ms / ms:.2f}x over SDPA")
    from comfyui_fis.fis_core.fps.triton_kernel import quantize_to_tiles
    layout = fps.FpsSettings().layout(grid)
    quant_ms = CLOCK.median_ms(lambda: [quantize_to_tiles(x, layout, transposed=x is v) for x in (q, k, v)],
                               REPS, WARMUP)
    print(f"FP8 quantisation of Q, K, V (included above): {quant_ms:.1f} ms")
    return rows, dict(sdpa_ms=sdpa_ms, tokens=q.shape[1], heads=heads, fp8_quantisation_ms=quant_ms)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="21x45x80", help="frames x rows x columns in tokens (Wan 720p, 81 frames)")
    parser.add_argument("--heads", type=int, default=40)
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--out", default=str(PACK_ROOT / "bench" / "out" / "fps_kernel.json"))
    args = parser.parse_args(argv)
    fps = load_core()
    reason = fps.triton_reason(torch.device("cuda"), "fp8") if torch.cuda.is_available() else "no CUDA GPU"
    if reason:
        sys.exit(f"cannot run the kernel: {reason}")
    result = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                  date=datetime.date.today().isoformat(), check=check_against_reference(fps))
    if not args.check_only:
        grid = tuple(int(n) for n in args.grid.split("x"))
        result["rows"], result["sdpa"] = accuracy_and_speed(fps, grid, args.heads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("wrote", args.out)
    if not all(row["passed"] for row in result["check"]):
        sys.exit("the kernel disagrees with the reference")


if __name__ == "__main__":
    main()
