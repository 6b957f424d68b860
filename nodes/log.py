"""The pack's log, and the one way it says a thing once (a warning that every model call would repeat)."""
from __future__ import annotations

import logging

import torch

LOG = logging.getLogger("ComfyUI-FIS")


class SayOnce:
    """Says each message once per owner (a patched model, or the server process), as ``"WHO: message"``. Never from
    inside a ``torch.compile`` trace, where a log call breaks the graph: there the message waits for a call outside
    one."""

    def __init__(self, who: str, level: int = logging.WARNING):
        self.who = who
        self.level = level
        self._said: set = set()

    def __call__(self, key, message: str, level: int | None = None):
        if key in self._said or torch.compiler.is_compiling():
            return
        self._said.add(key)
        LOG.log(self.level if level is None else level, "%s: %s", self.who, message)

    def __contains__(self, key) -> bool:
        return key in self._said
