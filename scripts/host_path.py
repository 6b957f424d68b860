"""Where the ComfyUI host is, and this pack imported as ComfyUI imports it: the one place the tests, the lab
(``quality/``, ``bench/``) and the scripts here find both.

The host is ``$COMFYUI_PATH``, else the ComfyUI this pack sits in (``custom_nodes/<pack>``), else ``~/ComfyUI``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
#: The name the pack is imported under (its folder name, ``ComfyUI-FIS``, is no Python name).
PACKAGE = "comfyui_fis"


def find_comfyui() -> Path | None:
    """The ComfyUI checkout to use, or None."""
    for candidate in (os.environ.get("COMFYUI_PATH"), PACK_ROOT.parent.parent, Path.home() / "ComfyUI"):
        if candidate and (Path(candidate) / "comfy" / "model_patcher.py").is_file():
            return Path(candidate).resolve()
    return None


def import_pack():
    """The pack as the package ``comfyui_fis``, loaded once from its ``__init__.py`` as ComfyUI's
    ``load_custom_node`` loads it (cheap: the nodes are imported when first asked for)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, PACK_ROOT / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def boot_cpu(comfyui: Path) -> Path:
    """Import the host at ``comfyui`` on the CPU (as ``main.py --cpu`` would) and return its root."""
    if str(comfyui) not in sys.path:
        sys.path.insert(0, str(comfyui))
    # the host's utils package first, as main.py has it: older hosts' nodes.py puts comfy/ first on sys.path, and its
    # utils.py would shadow the package that server.py (imported by some of the host's nodes) needs
    import utils  # noqa: F401
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    # PyTorch's SDPA attention, as ComfyUI uses on NVIDIA GPUs. The CPU default (sub-quadratic) asks
    # psutil for free memory inside every attention call, which torch.compile cannot trace.
    comfy.cli_args.args.use_pytorch_cross_attention = True
    import comfy.model_management  # noqa: F401  (picks the CPU device now)
    return comfyui