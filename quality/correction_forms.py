"""How cheap can the corrected interpolation's fit be? The default (``balanced``) on the models trained here, with
the correction fitted in other forms (:class:`comfyui_fis.fis_core.CorrectionForm`): the full map and smaller
block-diagonal maps, the fit on a subsample of its tokens, its products in bf16; and the linear restore (no
correction) as the floor. 4 steps, each against dense at the same seed, the correction's FLOPs counted.

    python -m quality.correction_forms                        # the shipped model: docs/correction_forms.json
    python -m quality.correction_forms --models models,DEEP   # and the 24-block model of quality.depth

Each form's cost is also given at Wan-14B 720p, in FLOPs, as a share of one sparse block's (G=2, 11 of 21 frames
computed), the fit-token budget taken as the same share of the fit frames' tokens: here a call's fit frames hold
384-448 tokens, there 32,400, of which the shipped budget (4096) reads 1/8.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import host
from .evaluate import DOCS, Runner, Setting, fidelity_cells, prompts
from .metrics import block_flops
from .model import FEW_STEPS, MODELS_DIR

#: Wan-14B 720p, G=2: 21 latent frames of 3600 tokens, 11 computed (9 of them fit frames), 10 skipped
WAN14B = dict(frames=21, computed=11, fit=9, tokens=3600, dim=5120, ffn_dim=13824, text=512)


def forms(dim: int) -> list[tuple[str, dict, dict]]:
    """The forms measured: (name, its fields here, the same form's fields at Wan-14B 720p). A call's fit frames
    hold 384-448 tokens here and 32,400 there, so a budget is the same share of them in both places."""
    there_tokens = WAN14B["fit"] * WAN14B["tokens"]
    all_tokens, eighth = {"fit_tokens": there_tokens}, {"fit_tokens": there_tokens // 8}
    return [("128-channel maps, every fit token, fp32 products", {}, all_tokens),
            (f"full map ({dim} x {dim})", {"map_channels": dim}, {"map_channels": WAN14B["dim"], **all_tokens}),
            ("64-channel maps", {"map_channels": 64}, {"map_channels": 64, **all_tokens}),
            ("32-channel maps", {"map_channels": 32}, {"map_channels": 32, **all_tokens}),
            ("fit on 1/2 of the tokens", {"fit_tokens": 224}, {"fit_tokens": there_tokens // 2}),
            ("fit on 1/4 of the tokens", {"fit_tokens": 112}, {"fit_tokens": there_tokens // 4}),
            ("fit on 1/8 of the tokens", {"fit_tokens": 56}, eighth),
            ("bf16 products", {"fit_dtype": "bfloat16"}, {"fit_dtype": "bfloat16", **all_tokens}),
            ("bf16 products, fit on 1/8 of the tokens", {"fit_dtype": "bfloat16", "fit_tokens": 56},
             {"fit_dtype": "bfloat16", **eighth})]


def correction_form(fields: dict):
    from comfyui_fis.fis_core import CorrectionForm
    values = {**fields, **({"fit_dtype": getattr(torch, fields["fit_dtype"])} if "fit_dtype" in fields else {})}
    return CorrectionForm(**values)


def wan14b_share(fields: dict) -> float:
    """The correction's FLOPs at Wan-14B 720p in the form of ``fields``, as a share of one sparse block's."""
    from comfyui_fis.fis_core import correction_flops
    w = WAN14B
    flops = correction_flops(w["fit"], w["frames"] - w["computed"], w["tokens"], w["dim"], correction_form(fields))
    return flops / block_flops(w["computed"] * w["tokens"], w["dim"], w["ffn_dim"], w["text"])


def study(models_dir: Path, prompt_count: int, log=print) -> dict:
    runner = Runner(FEW_STEPS, prompts(prompt_count), models_dir)
    dim = runner.model.model.diffusion_model.dim
    rows = []
    for name, fields, there in forms(dim) + [("linear restore (no correction)", None, None)]:
        widgets = {"interpolation": "linear"} if fields is None else {"correction": correction_form(fields)}
        row = runner.measure(Setting(name, "fis", widgets))
        if there is not None:
            row["wan14b_720p"] = {"form": there, "correction_share": wan14b_share(there)}
        rows.append(row)
        log(f"{runner.num_blocks} blocks, {name}: saved {100 * row['compute_saved']:.1f}%, PSNR {row['psnr']:.2f} dB")
    return {"models": str(models_dir), "blocks": runner.num_blocks, "dim": dim, "settings": rows,
            "another_seed": runner.another_seed()}


def table(results: list[dict]) -> str:
    lines = ["| model | correction form | compute saved | PSNR (dB) | worst frame (dB) | SSIM | temporal error | "
             "correction at Wan-14B 720p |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        for row in result["settings"]:
            share = row["wan14b_720p"]["correction_share"] if "wan14b_720p" in row else None
            lines.append(f"| {result['blocks']} blocks | {row['name']} | {100 * row['compute_saved']:.1f}% | "
                         f"{fidelity_cells(row)} | {'-' if share is None else f'{100 * share:.2f}% of a sparse block'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(MODELS_DIR), help="comma list of checkpoint folders (quality.train --out)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--out", type=Path, default=DOCS / "correction_forms.json")
    args = parser.parse_args(argv)
    log = host.boot_study()
    results = [study(Path(folder), args.prompts, log) for folder in args.models.split(",")]
    args.out.write_text(json.dumps({"prompts": args.prompts, "steps": FEW_STEPS, "date": time.strftime("%Y-%m-%d"),
                                    "results": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
