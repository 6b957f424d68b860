"""Where the ComfyUI host is: ``$COMFYUI_PATH``, else the ComfyUI this pack sits in
(``custom_nodes/<pack>``), else ``~/ComfyUI``. Shared by the tests and ``scripts/dev_setup.py``."""
from __future__ import annotations

import os
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]


def find_comfyui() -> Path | None:
    """The ComfyUI checkout to use, or None."""
    for candidate in (os.environ.get("COMFYUI_PATH"), PACK_ROOT.parent.parent, Path.home() / "ComfyUI"):
        if candidate and (Path(candidate) / "comfy" / "model_patcher.py").is_file():
            return Path(candidate).resolve()
    return None
