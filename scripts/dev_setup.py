"""Set up this Python for the pack's tests: pytest, the requirements of the ComfyUI host that the tests will use
(found as the tests find it: $COMFYUI_PATH, the ComfyUI this pack sits in, ~/ComfyUI), the ``gguf`` package where
the host has the ComfyUI-GGUF pack, ``ray`` where it has Raylight, and the tools of the browser test: Playwright (PyPI) and Chromium (the Debian
package chromium, installed as root).

It installs packages only; it never downloads or installs ComfyUI itself, nor Playwright's own browsers. Where
torch is already installed (a ComfyUI environment), pip keeps it. What is already there is not installed again.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

from host_path import PACK_ROOT, find_comfyui

#: Commands the web tests run -> the Debian package that provides them.
SYSTEM_PACKAGES = {"chromium": "chromium"}
#: Python modules of the browser test -> the PyPI package.
BROWSER_TEST_PACKAGES = {"playwright": "playwright"}
#: Node packs in the host's custom_nodes that composition tests load -> the Python modules they need.
COMPOSITION_PACKS = {"ComfyUI-GGUF": {"gguf": "gguf"}, "raylight": {"ray": "ray"}}


def run(command: list[str], **kwargs):
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)


def pip_install(*arguments: str):
    run([sys.executable, "-m", "pip", "install", "--quiet", *arguments])


def install_system_packages():
    missing = [package for command, package in SYSTEM_PACKAGES.items() if shutil.which(command) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(f"Missing {', '.join(missing)}: install them (Debian: apt-get install {' '.join(missing)}); "
              "without them the web tests skip.")
        return
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=environment)
    run(["apt-get", "install", "-y", "-q", *missing], env=environment)


def main():
    pip_install("-r", str(PACK_ROOT / "requirements-dev.txt"))
    missing = [package for module, package in BROWSER_TEST_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        pip_install(*missing)
    install_system_packages()
    host = find_comfyui()
    if host is None:
        print("No ComfyUI host found: host tests will be skipped. Set COMFYUI_PATH or put ComfyUI in ~/ComfyUI.")
        return
    print(f"ComfyUI host: {host}")
    pip_install("-r", str(host / "requirements.txt"))
    for pack, modules in COMPOSITION_PACKS.items():
        missing = [package for module, package in modules.items() if importlib.util.find_spec(module) is None]
        if (host / "custom_nodes" / pack).is_dir() and missing:
            pip_install(*missing)


if __name__ == "__main__":
    main()
