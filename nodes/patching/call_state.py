"""What FIS and FPS know of the model call in progress, and the one place that writes and reads it.

Each node's ``APPLY_MODEL`` wrapper publishes its state for one model call in a :class:`CallState`; the code it
patched into the model (FIS's block patches, FPS's attention override) reads it back. ComfyUI's
``TorchCompileModel`` drops every compile guard on ``transformer_options`` but guards module globals, so the
state is a plain attribute of a module-level object: a compiled model recompiles when it changes instead of
reusing a graph traced with another (a ``contextvars.ContextVar`` read would break the graph instead).

Inside a sparse block FIS tells the attentions which frames it computes, through ``transformer_options``
(:func:`sparse_block_options`): per block, not per call, and read by FPS and the lab.
"""
from __future__ import annotations

from contextlib import contextmanager

#: transformer_options key, inside a sparse block, of the latent frames it computes
FIS_FRAMES = "fis_frames"


class CallState:
    """The state one owner (a patched model's runtime or override) set for the model call in progress."""

    def __init__(self):
        self.owner = None
        self.value = None

    @contextmanager
    def of_call(self, owner, value):
        """``value`` is ``owner``'s state for the model call inside the block; a nested call's restores the outer one."""
        outer = self.owner, self.value
        self.owner, self.value = owner, value
        try:
            yield
        finally:
            self.owner, self.value = outer

    def get(self, owner):
        """The state ``owner`` set for the call in progress; None where another owner's call is in progress (or none)."""
        return self.value if self.owner is owner else None


class SharedByClones:
    """State that a patched model's ``model_options`` entries (block patches, attention override) share with its
    wrappers by identity. Newer ComfyUI copies only the dicts and lists of ``model_options`` when it clones a model
    (every node after FIS does); older ComfyUI deep-copies them, which would give the entries a copy apart from
    the wrappers. A deep copy is therefore the object itself."""

    def __deepcopy__(self, memo):
        return self


#: FIS's :class:`~.fis.FisCall` (None where FIS is off for the call); its owner, the patched model's runtime.
FIS_CALL = CallState()
#: FPS's :class:`~.fps.FpsCall`; its owner, the patched model's attention override.
FPS_CALL = CallState()


def sparse_block_options(options: dict, computed: tuple[int, ...]) -> dict:
    """transformer_options for a sparse block that computes the latent frames ``computed`` (what else a family's host
    puts there per frame, its adapter cuts)."""
    return {**options, FIS_FRAMES: computed}


def computed_frames(options: dict) -> tuple[int, ...] | None:
    """The latent frames the sparse block running with ``options`` computes; None outside sparse blocks."""
    return options.get(FIS_FRAMES)

