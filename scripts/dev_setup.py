"""Set up this Python for the pack's tests: pytest, and the requirements of the ComfyUI host that the
tests will use (found as the tests find it: $COMFYUI_PATH, the ComfyUI this pack sits in, ~/ComfyUI).

It installs packages only; it never downloads or installs ComfyUI itself. Where torch is already
installed (a ComfyUI environment), pip keeps it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from host_path import PACK_ROOT, find_comfyui  # noqa: E402


def pip_install(*arguments: str):
    command = [sys.executable, "-m", "pip", "install", "--quiet", *arguments]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main():
    pip_install("-r", str(PACK_ROOT / "requirements-dev.txt"))
    host = find_comfyui()
    if host is None:
        print("No ComfyUI host found: host tests will be skipped. Set COMFYUI_PATH or put ComfyUI in ~/ComfyUI.")
        return
    print(f"ComfyUI host: {host}")
    pip_install("-r", str(host / "requirements.txt"))


if __name__ == "__main__":
    main()
