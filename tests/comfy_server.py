"""The host's real server (``main.py --cpu``) on 127.0.0.1, with this pack in a temporary ``custom_nodes``.

Everything the server writes (user settings, models, output) stays in a temporary base directory; its
database is in memory. Nothing is written into the host checkout.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from host_path import PACK_ROOT

PACK_DIR_NAME = "ComfyUI-FIS"
#: Front-end settings of the test user: no first-run template browser, no minimap, no floating toolbar over a
#: selected node, and a node added from the search box lands where the search was opened.
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Canvas.SelectionToolbox": False,
            "Comfy.NodeSearchBoxImpl.FollowCursor": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """``with ComfyServer(host, base) as server:`` starts the server and stops it on exit; ``server.url``."""

    def __init__(self, host: Path, base: Path, timeout: float = 180.0):
        self.host, self.base, self.timeout = host, base, timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self.process = None

    def __enter__(self) -> "ComfyServer":
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (self.base / "custom_nodes" / PACK_DIR_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
        (self.base / "user" / "default").mkdir(parents=True, exist_ok=True)
        (self.base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(SETTINGS))
        command = [sys.executable, str(self.host / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.host, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _wait_until_up(self):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the ComfyUI server exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.get_json("/object_info/FrameInterleavedSparsity")
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the ComfyUI server did not answer within {self.timeout:.0f} s:\n{self.log()}")

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
