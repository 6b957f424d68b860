"""One cache policy for what depends on shapes alone (index plans, the rows a fit reads, tile tables), made on the
device once and kept for one sampling run: the run's owner clears it when the run ends, so nothing of a run stays on
the GPU after it."""
from __future__ import annotations


class ShapeCache:
    """Values by key, each made once by ``make``; at ``limit`` entries it starts afresh, so a run whose shapes keep
    changing does not grow it without bound."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self._values: dict = {}

    def get(self, key, make):
        """The value under ``key``, made by ``make()`` the first time."""
        if key not in self._values:
            if len(self._values) >= self.limit:
                self._values.clear()
            self._values[key] = make()
        return self._values[key]

    def clear(self):
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
