"""Whether the fused correction (``fis_core.correction_kernel``) runs on this GPU and agrees with the torch path:
``bench/gpu_session.sh`` turns it off for its speed rows unless this exits 0, so that a kernel that fails to build
on a new GPU or Triton costs the round its fused rows, not all of them.

    python bench/fused_check.py      # prints the relative difference of the maps; exit 1 above 5e-2 or on an error
    TRITON_INTERPRET=1 python bench/fused_check.py cpu    # checks the script here, in Triton's interpreter
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from host_path import import_pack  # noqa: E402


def maps(fused: bool, x, y, fit, weight, frame_index):
    from comfyui_fis.fis_core import correction, correction_kernel
    correction_kernel.ENABLED = fused
    return correction.fit_maps(x, y, fit, weight, frame_index)


def main(device: str = "cuda") -> int:
    import_pack()
    generator = torch.Generator(device).manual_seed(0)
    frames, tokens, channels = 9, 512, 512
    frame_index = torch.arange(0, frames, 2, device=device)
    x = torch.randn(2, frames, tokens, channels, device=device, dtype=torch.bfloat16, generator=generator)
    y = (x[:, frame_index] * 1.1 + 0.1 * torch.randn(2, len(frame_index), tokens, channels, device=device,
                                                        dtype=torch.bfloat16, generator=generator))
    fit = torch.tensor([[1, 0, 2], [2, 1, 3], [3, 2, 4]], device=device)
    weight = torch.full((3,), 0.5, device=device)
    reference = maps(False, x, y, fit, weight, frame_index)
    fused = maps(True, x, y, fit, weight, frame_index)
    difference = ((fused - reference).norm() / reference.norm()).item()
    print(f"fused correction: maps differ from the torch path's by {difference:.2e} (relative)")
    return 0 if difference <= 5e-2 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
