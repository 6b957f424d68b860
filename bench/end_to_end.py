"""What a user waits for: a whole sampling run plus the VAE decode, dense and with FIS, on full-size random weights.

Builds the Wan-14B expert as ``speed.py`` does and ComfyUI's Wan 2.1 VAE (``comfy.sd.VAE`` from a randomly
initialised state dict), then times ``nodes.common_ksampler`` (euler, simple, CFG 1, as the 4-step distilled
models run) and ``VAE.decode`` of the 81 frames, dense and through the FIS node with each setting given.

    python bench/end_to_end.py --res 720p --steps 4 --settings balanced --out bench/out/end_to_end.json
    python bench/end_to_end.py --tiny       # a tiny Wan and VAE on the CPU: checks the script, no speed claims
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

import speed


def wan_vae(dim: int, device, dtype):
    """ComfyUI's Wan 2.1 VAE (width ``dim``; 96 is the released one) with random weights."""
    import comfy.ldm.wan.vae
    import comfy.sd
    torch.manual_seed(0)
    model = comfy.ldm.wan.vae.WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                     temperal_downsample=[False, True, True])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
    return comfy.sd.VAE(sd=model.state_dict(), device=device, dtype=dtype)


def timed(device, fn):
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--res", default="720p")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--settings", default="balanced", help="comma list of FIS quality presets")
    parser.add_argument("--attention", default="sdpa", choices=list(speed.backends.HOST_FLAGS),
                        help="the attention of dense and FIS alike (see speed.py)")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "end_to_end.json"))
    args = parser.parse_args(argv)
    speed.boot_host(args.attention)
    import comfy.sample

    from comfyui_fis.nodes import FrameInterleavedSparsity
    device, dtype = speed.bench_device(args.tiny)   # bf16 on the GPU (the model and the VAE, as ComfyUI runs them)
    spec = speed.TINY_MODELS["wan-tiny"] if args.tiny else speed.MODELS["wan14b"]
    resolution = "tiny" if args.tiny else args.res
    model = speed.build_model(spec, device, dtype, args.attention)
    vae = wan_vae(8 if args.tiny else 96, device, dtype)
    shape = spec.latent_shape(resolution)
    generator = torch.Generator().manual_seed(1)
    cond = [[torch.randn(1, spec.text_tokens, spec.text_dim, generator=generator), {}]]
    latent = torch.zeros(shape)

    def sample(patched, steps=args.steps):   # what nodes.common_ksampler does (importing ``nodes`` needs PyAV)
        noise = comfy.sample.prepare_noise(latent, 0)
        return timed(device, lambda: comfy.sample.sample(patched, noise, steps, 1.0, "euler", "simple", cond, cond, latent))

    report = dict(attention=args.attention, what=f"{args.steps} sampling steps (euler, CFG 1) + VAE decode, {spec.name}, {resolution}, random "
                       "weights; the decode is timed once, on the dense run's latent (the same VAE and shape for every row)",
                  date=datetime.date.today().isoformat(), device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                  torch=torch.__version__, dtype=str(dtype), latent=list(shape), rows=[])
    vae.decode(sample(model, steps=1)[0])   # warm-up: loads the weights, autotunes the decode
    decode_s = None
    for preset in ["dense"] + args.settings.split(","):
        patched = model if preset == "dense" else FrameInterleavedSparsity().patch(
            model, preset, "auto", 2, "interleave", "corrected", "auto", 0.0, 1.0)[0]
        samples, sample_s = sample(patched)
        if decode_s is None:
            frames, decode_s = timed(device, lambda: vae.decode(samples))
            report["frames"] = int(frames.shape[-4]) if frames.dim() == 5 else int(frames.shape[0])
        row = dict(setting=preset, sample_s=round(sample_s, 2), decode_s=round(decode_s, 2),
                   total_s=round(sample_s + decode_s, 2))
        row["speedup"] = round(report["rows"][0]["total_s"] / row["total_s"], 3) if report["rows"] else 1.0
        row["sampling_speedup"] = round(report["rows"][0]["sample_s"] / row["sample_s"], 3) if report["rows"] else 1.0
        report["rows"].append(row)
        print(row, flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))   # after every row: a run cut short keeps its rows


if __name__ == "__main__":
    with torch.inference_mode():   # as ComfyUI runs a prompt (the VAE's tiled fallback writes its output in place)
        main()
