"""Test set-up: imports this pack as the package ``comfyui_fis`` and finds a real ComfyUI host (both with
``scripts/host_path.py``, as the lab does).

The host is ``$COMFYUI_PATH``, else the ComfyUI this pack sits in (``custom_nodes/<pack>``), else
``~/ComfyUI``. Core tests need no host; host tests skip, loudly, when none is found.
"""
from __future__ import annotations

import os

import pytest

from host_path import boot_cpu, find_comfyui, import_pack

import_pack()
COMFYUI = find_comfyui()
NO_HOST_REASON = ("NO COMFYUI HOST FOUND: host tests did not run. Set COMFYUI_PATH to a ComfyUI checkout, "
                  "install this pack in ComfyUI/custom_nodes, or put ComfyUI in ~/ComfyUI (see README).")


def boot_host():
    """Import the host on the CPU (as `main.py --cpu` would) and return its root."""
    if COMFYUI is None:
        if os.environ.get("FIS_REQUIRE_HOST"):
            pytest.fail(NO_HOST_REASON, pytrace=False)
        pytest.skip(NO_HOST_REASON)
    return boot_cpu(COMFYUI)


@pytest.fixture(scope="session")
def host():
    """A booted ComfyUI host; skips the test when there is none."""
    return boot_host()


def pytest_report_header(config):
    return f"ComfyUI host: {COMFYUI}" if COMFYUI else f"ComfyUI host: none. {NO_HOST_REASON}"


def pytest_terminal_summary(terminalreporter):
    if COMFYUI is None:
        terminalreporter.write_line(NO_HOST_REASON, red=True, bold=True)
