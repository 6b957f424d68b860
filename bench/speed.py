"""Speed of one model forward, dense and with FIS, on the host's real model classes at full size.

Builds ComfyUI's own WanModel / HunyuanVideo at their published sizes with random weights (bf16; values
do not change the cost), applies the FIS node as a user would, and times ``BaseModel.apply_model`` dense
and with FIS in the same run (warm-up, CUDA events, median). Per block it also times the blocks
themselves, so each row has the ideal time of its schedule (dense time minus the dense blocks plus the
sparse blocks as they ran) and FIS's own overhead over it.

    python bench/speed.py --models wan14b,wan5b,hv15 --res 480p,720p --out bench/out/speed.json
    python bench/speed.py --models wan14b --res 720p --attention sage   # dense and FIS on SageAttention
    python bench/speed.py --tiny            # tiny models on the CPU in seconds: checks the script, no speed claims

``--attention`` picks the attention every row runs (dense and FIS alike), as a user picks it: ComfyUI's own flag
(``sage``: --use-sage-attention, ``ck``: --use-ck-attention), or an attention override (``fa3``); see backends.py.

Needs a ComfyUI checkout: $COMFYUI_PATH, the ComfyUI this pack sits in, or ~/ComfyUI.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from host_path import PACK_ROOT, find_comfyui, import_pack  # noqa: E402
from timing import Clock  # noqa: E402
import backends  # noqa: E402


@dataclass(frozen=True)
class ModelSpec:
    """A model as the benchmark builds it: the host's unet config and the shape of its inputs."""

    name: str
    unet_config: dict
    latent_channels: int
    concat_channels: int      # image-to-video channels the model takes by concatenation (zeros here)
    spatial: int              # VAE spatial compression
    temporal: int             # VAE temporal compression
    video_frames: int
    text_tokens: int
    text_dim: int
    resolutions: dict = field(default_factory=dict)   # name -> (width, height)

    def latent_shape(self, resolution: str) -> tuple[int, ...]:
        width, height = self.resolutions[resolution]
        frames = (self.video_frames - 1) // self.temporal + 1
        return (1, self.latent_channels, frames, height // self.spatial, width // self.spatial)


_WAN = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), freq_dim=256, window_size=(-1, -1),
            qk_norm=True, cross_attn_norm=True, eps=1e-6)
_HV15 = dict(image_model="hunyuan_video", in_channels=65, out_channels=32, vec_in_dim=None, mlp_ratio=4.0,
             depth_single_blocks=0, axes_dim=[16, 56, 56], theta=256, patch_size=[1, 1, 1], qkv_bias=True,
             guidance_embed=False, byt5=True, meanflow=False, use_cond_type_embedding=True, vision_in_dim=1152,
             meanflow_sum=True)

MODELS = {
    # Wan2.2-A14B, one expert (the same shape as Wan 2.1 14B)
    "wan14b": ModelSpec("Wan2.2-A14B expert", dict(_WAN, dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=16, out_dim=16),
                        16, 0, 8, 4, 81, 512, 4096, {"480p": (832, 480), "720p": (1280, 720)}),
    "wan5b": ModelSpec("Wan2.2-TI2V-5B", dict(_WAN, dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48),
                       48, 0, 16, 4, 121, 512, 4096, {"480p": (832, 480), "720p": (1280, 704)}),
    "hv15": ModelSpec("HunyuanVideo 1.5", dict(_HV15, hidden_size=2048, num_heads=16, depth=54, context_in_dim=3584),
                      32, 33, 16, 4, 81, 512, 3584, {"480p": (848, 480), "720p": (1280, 720)}),
}
TINY_MODELS = {
    "wan-tiny": ModelSpec("tiny Wan", dict(_WAN, dim=128, ffn_dim=256, num_heads=1, num_layers=6, in_dim=16, out_dim=16),
                          16, 0, 8, 4, 33, 8, 4096, {"tiny": (64, 64)}),
    "hv15-tiny": ModelSpec("tiny HunyuanVideo 1.5", dict(_HV15, hidden_size=128, num_heads=1, depth=6, context_in_dim=64),
                           32, 33, 16, 4, 33, 8, 64, {"tiny": (64, 64)}),
}


@dataclass(frozen=True)
class Setting:
    """FIS widget values for one benchmark row."""

    name: str
    groups: int                         # 1: no FIS
    sparse_share: float | None = None   # None: the node's `auto` blocks; 1: every block; else this share, centred
    fps_sparsity: float | None = None   # FP8 + sparse attention (the FPSAttention node, window pattern) first
    interpolation: str = "corrected"

    def sparse_blocks(self, num_blocks: int) -> str:
        if self.sparse_share is None:
            return "auto"
        count = round(self.sparse_share * num_blocks)
        first = (num_blocks - count) // 2
        return f"{first}-{first + count - 1}"


DEFAULT = Setting("default", 2)
SWEEP = [Setting("linear", 2, interpolation="linear"), Setting("fastest", 2, 1.0), Setting("G3", 3), Setting("G4", 4),
         Setting("75%", 2, 0.75), Setting("50%", 2, 0.5)]
#: FPS attention alone and with FIS; only by name (--settings fps0,fps75+G2,...), not in 'all'.
FPS_SETTINGS = [Setting("fps0", 1, fps_sparsity=0.0), Setting("fps50", 1, fps_sparsity=0.5),
                Setting("fps75", 1, fps_sparsity=0.75), Setting("fps90", 1, fps_sparsity=0.9),
                Setting("fps0+G2", 2, fps_sparsity=0.0), Setting("fps50+G2", 2, fps_sparsity=0.5),
                Setting("fps75+G2", 2, fps_sparsity=0.75), Setting("fps75+G3", 3, fps_sparsity=0.75),
                Setting("fps90+G2", 2, fps_sparsity=0.9)]


def boot_host(attention: str = "sdpa"):
    """Import the ComfyUI host with ``attention``'s flag set (before its attention module is imported, as the
    command line sets it) and this pack (as package ``comfyui_fis``)."""
    host = find_comfyui()
    if host is None:
        sys.exit("No ComfyUI found: set COMFYUI_PATH (see README)")
    sys.path.insert(0, str(host))
    import comfy.cli_args
    if not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    if backends.HOST_FLAGS[attention]:
        setattr(comfy.cli_args.args, backends.HOST_FLAGS[attention], True)
    import_pack()
    return host


def bench_device(tiny: bool) -> tuple[torch.device, torch.dtype]:
    """Where the benchmarks run: the GPU in bf16, as ComfyUI runs these models there, or, with ``tiny`` or without
    a GPU, the CPU in fp32."""
    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    return device, torch.bfloat16 if device.type == "cuda" else torch.float32


def build_model(spec: ModelSpec, device, dtype, attention: str = "sdpa"):
    """The host's model class for ``spec``, on ``device``, random weights, in a ModelPatcher whose attention is
    ``attention``'s (see :func:`boot_host` for the flags)."""
    import comfy.model_detection
    import comfy.model_patcher
    config = comfy.model_detection.model_config_from_unet_config(dict(spec.unet_config))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({}, "", device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.diffusion_model.parameters():
            parameter.normal_(0.0, 0.02)
    model.eval()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)
    override = backends.host_override(attention)
    if override is not None:
        patcher.model_options["transformer_options"]["optimized_attention_override"] = override
    return patcher


def torch_compile_model(model):
    """What ComfyUI's TorchCompileModel node does (inductor), without importing the node module, which
    needs PyAV through comfy_api.latest."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    compiled = model.clone(disable_dynamic=True)
    set_torch_compile_wrapper(model=compiled, backend="inductor", options={
        "guard_filter_fn": lambda entries: [("transformer_options" not in entry.name) for entry in entries]})
    return compiled


def block_modules(diffusion_model) -> list[torch.nn.Module]:
    if hasattr(diffusion_model, "double_blocks"):
        return list(diffusion_model.double_blocks) + list(diffusion_model.single_blocks)
    return list(diffusion_model.blocks)


class Inputs:
    """One forward's inputs for ``spec`` at ``resolution``."""

    def __init__(self, spec: ModelSpec, resolution: str, device, dtype):
        generator = torch.Generator(device=device).manual_seed(1)
        shape = spec.latent_shape(resolution)
        self.x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        self.sigma = torch.tensor([0.9], device=device)
        self.context = torch.randn(1, spec.text_tokens, spec.text_dim, generator=generator, device=device, dtype=dtype)
        self.c_concat = (torch.zeros((1, spec.concat_channels) + shape[2:], device=device, dtype=dtype)
                         if spec.concat_channels else None)

    def run(self, model_patcher):
        options = {**model_patcher.model_options["transformer_options"], "wrappers": model_patcher.wrappers,
                   "sigmas": self.sigma}
        with torch.no_grad():
            return model_patcher.model.apply_model(self.x, self.sigma, c_concat=self.c_concat, c_crossattn=self.context,
                                                   transformer_options=options)


def run_with_peak(device, fn):
    """``fn()`` and the peak GPU memory it allocated, in GiB (0 on the CPU)."""
    if torch.device(device).type != "cuda":
        return fn(), 0.0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    return result, torch.cuda.max_memory_allocated() / 2**30


def print_profile(fn):
    """The kernels of one call of ``fn``, by GPU time: where FIS's own time goes."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60), flush=True)


def bench_model(key: str, spec: ModelSpec, resolutions, settings, device, dtype, reps: int, warmup: int,
                compile_model: bool, profile: bool = False, attention: str = "sdpa", block_times: bool = True):
    """Rows of results for one model: every resolution, every setting."""
    from comfyui_fis.nodes import FPSAttention, FrameInterleavedSparsity
    node = FrameInterleavedSparsity()
    clock = Clock(device)
    dense_model = build_model(spec, device, dtype, attention)
    if compile_model:
        dense_model = torch_compile_model(dense_model)
    blocks = block_modules(dense_model.model.diffusion_model)
    rows = []
    for resolution in resolutions:
        inputs = Inputs(spec, resolution, device, dtype)
        dense_out, dense_peak = run_with_peak(device, lambda: inputs.run(dense_model))
        dense_ms = clock.median_ms(lambda: inputs.run(dense_model), reps, warmup)
        # block hooks would change a compiled graph: no ideal time for compiled rows
        block_times = block_times and not compile_model
        non_block_ms = None if not block_times else dense_ms - sum(clock.block_ms(lambda: inputs.run(dense_model), blocks))
        for setting in settings:
            fis_model = dense_model
            if setting.fps_sparsity is not None:
                fis_model = FPSAttention().patch(fis_model, "fp8", "auto", setting.fps_sparsity, "window", "")[0]
            fis_model = node.patch(fis_model, "custom", setting.sparse_blocks(len(blocks)), setting.groups, "interleave",
                                   setting.interpolation, "auto", 0.0, 1.0)[0]
            fis_out, fis_peak = run_with_peak(device, lambda: inputs.run(fis_model))
            fis_ms = clock.median_ms(lambda: inputs.run(fis_model), reps, warmup)
            ideal_ms = None if not block_times else non_block_ms + sum(clock.block_ms(lambda: inputs.run(fis_model), blocks))
            rows.append(dict(
                model=key, model_name=spec.name, attention=attention, resolution=resolution, latent=list(spec.latent_shape(resolution)),
                tokens=int(dense_out.shape[2] * dense_out.shape[3] * dense_out.shape[4]
                           // (spec.unet_config["patch_size"][1] * spec.unet_config["patch_size"][2])),
                setting=setting.name, blocks=len(blocks), sparse_blocks=setting.sparse_blocks(len(blocks)), groups=setting.groups,
                interpolation=setting.interpolation,
                compiled=compile_model, dense_ms=round(dense_ms, 2), fis_ms=round(fis_ms, 2),
                speedup=round(dense_ms / fis_ms, 3), ideal_ms=ideal_ms and round(ideal_ms, 2),
                ideal_speedup=ideal_ms and round(dense_ms / ideal_ms, 3), overhead=ideal_ms and round(fis_ms / ideal_ms - 1.0, 4),
                dense_peak_gib=round(dense_peak, 3),
                fis_peak_gib=round(fis_peak, 3),
                rel_err_random_weights=round(((fis_out - dense_out).float().norm() / dense_out.float().norm()).item(), 4)))
            print(format_row(rows[-1]), flush=True)
            if profile:
                print_profile(lambda: inputs.run(fis_model))
        del inputs, dense_out
    return rows


COLUMNS = [("model", "{}"), ("attention", "{}"), ("resolution", "{}"), ("setting", "{}"), ("dense_ms", "{:.1f}"), ("fis_ms", "{:.1f}"),
           ("speedup", "{:.2f}x"), ("ideal_speedup", "{:.2f}x"), ("overhead", "{:+.1%}"), ("dense_peak_gib", "{:.2f}"),
           ("fis_peak_gib", "{:.2f}")]


def format_row(row: dict) -> str:
    return " | ".join("-" if row[name] is None else fmt.format(row[name]) for name, fmt in COLUMNS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="wan14b,wan5b,hv15", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--res", default="480p,720p")
    parser.add_argument("--settings", default="all", help="comma list of setting names (default, linear, fastest, G3, G4, 75%%, 50%%; "
                                                          "FPS attention: fps0, fps50, fps75, fps90, fps0+G2, fps50+G2, "
                                                          "fps75+G2, fps75+G3, fps90+G2) or 'all' (the FIS ones)")
    parser.add_argument("--blocks", type=int, help="override the number of blocks (e.g. a shallower model for --compile)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--attention", default="sdpa", choices=list(backends.HOST_FLAGS),
                        help="the attention of every row, dense and FIS: ComfyUI's default (sdpa), its --use-sage-attention "
                             "(sage) or --use-ck-attention (ck), or FlashAttention-3 as an attention override (fa3)")
    parser.add_argument("--no-block-times", action="store_true", help="skip the per-block timing (the ideal and overhead columns)")
    parser.add_argument("--compile", action="store_true", help="apply ComfyUI's TorchCompileModel (inductor) first")
    parser.add_argument("--profile", action="store_true", help="print the top GPU kernels of one FIS forward per row")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the script, no speed claims")
    parser.add_argument("--out", default=str(PACK_ROOT / "bench" / "out" / "speed.json"))
    args = parser.parse_args(argv)

    host = boot_host(args.attention)
    device, dtype = bench_device(args.tiny)
    catalogue = TINY_MODELS if args.tiny else MODELS
    keys = list(TINY_MODELS) if args.tiny else args.models.split(",")
    resolutions = ["tiny"] if args.tiny else args.res.split(",")
    settings = ([DEFAULT] + SWEEP if args.settings == "all" else
                [s for s in [DEFAULT] + SWEEP + FPS_SETTINGS if s.name in args.settings.split(",")])
    print(" | ".join(name for name, _ in COLUMNS), flush=True)
    rows = []
    for key in keys:
        spec = catalogue[key]
        if args.blocks:
            depth_key = "num_layers" if "num_layers" in spec.unet_config else "depth"
            spec = replace(spec, name=f"{spec.name}, {args.blocks} blocks", unet_config={**spec.unet_config, depth_key: args.blocks})
        rows += bench_model(key, spec, resolutions, settings, device, dtype,
                            1 if args.tiny else args.reps, 0 if args.tiny else args.warmup, args.compile, args.profile,
                            args.attention, not args.no_block_times)
        torch.cuda.empty_cache() if device.type == "cuda" else None
    if args.compile:
        from torch._dynamo.utils import counters
        print(f"torch.compile: {counters['stats']['unique_graphs']} graphs, {sum(counters['graph_break'].values())} graph breaks")
    import comfyui_version
    report = dict(
        what="One model forward (BaseModel.apply_model), dense and with FIS, random weights, batch 1, CFG 1",
        date=datetime.date.today().isoformat(), device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        torch=torch.__version__, comfyui=getattr(comfyui_version, "__version__", "?"), comfyui_path=str(host),
        dtype=str(dtype), attention=args.attention, reps=args.reps, tiny=args.tiny, compiled=args.compile, rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
