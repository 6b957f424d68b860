"""The state of one sampling run, set up when the run starts and released when it ends.

A patched model keeps, for the run in progress, the corrected interpolation's fit sums (about 200 MB on Wan-14B) and
the index plans of its frame subsets (:class:`~...fis_core.shape_cache.ShapeCache`). Its ``OUTER_SAMPLE`` wrapper makes
a new :class:`SamplingRun` when a run starts and drops it in a ``finally`` when the run ends, as ComfyUI's EasyCache
does (``comfy_extras/nodes_easycache.py``): nothing of a run stays on the GPU after it, even when the run fails or is
interrupted. A model call outside any sampling run (a benchmark calling ``apply_model``) gets a run that lasts until
the next run starts.
"""
from __future__ import annotations

from contextlib import contextmanager

from ...fis_core import FitSums
from ...fis_core.shape_cache import ShapeCache


class SamplingRun:
    """What one sampling run keeps: each sparse block's fit sums, and what depends on shapes alone."""

    def __init__(self):
        self.fit_sums = FitSums()
        self.shapes = ShapeCache()


class RunScope:
    """An owner of per-run state (a FIS runtime, a calibration): :attr:`run` is the run in progress, of
    :attr:`run_type`; :meth:`sampling_run` around the sampler sets it up and tears it down."""

    run_type = SamplingRun
    _run: SamplingRun | None = None

    @property
    def run(self) -> SamplingRun:
        """The run in progress (outside one, a run made now, which lasts until the next run starts)."""
        if self._run is None:
            self._run = self.run_type()
        return self._run

    @contextmanager
    def sampling_run(self):
        """A new run for the sampler inside the block, released when it returns or raises."""
        self._run = self.run_type()
        try:
            yield self._run
        finally:
            self._run = None
