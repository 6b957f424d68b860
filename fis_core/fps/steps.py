"""Step-aware precision: the parts of the sampling schedule that run exact attention."""
from __future__ import annotations

from ..widget_text import list_parts, quoted

FORM = "percent ranges of the schedule such as '40-60' or '0-20,80-100' (empty: none)"
#: Ranges ``dense_steps`` may list (each model call checks them all).
MAX_RANGES = 64


def parse_percent_ranges(spec: str, widget: str = "dense_steps") -> tuple[tuple[float, float], ...]:
    """``"0-20, 80-100"`` -> ((0.0, 0.2), (0.8, 1.0)); a ValueError names ``widget`` and the valid form."""
    ranges = []
    for part in list_parts(spec):
        if len(ranges) == MAX_RANGES:
            raise ValueError(f"{widget}: more than {MAX_RANGES} ranges; expected {FORM}")
        bounds = part.split("-", 2)
        try:
            start, end = (float(b) for b in bounds) if len(bounds) == 2 else (None, None)
        except ValueError:
            start = end = None
        if start is None or not 0.0 <= start < end <= 100.0:
            raise ValueError(f"{widget}: {quoted(part)} is not a range low-high within 0-100; expected {FORM}")
        ranges.append((start / 100.0, end / 100.0))
    return tuple(ranges)


def in_ranges(sigma: float, ranges, percent_to_sigma) -> bool:
    """Whether ``sigma`` lies in one of ``ranges`` of the schedule, read as ComfyUI's start/end percent
    are: a range (a, b) holds sigma(b) < sigma <= sigma(a)."""
    return any(percent_to_sigma(end) < sigma <= percent_to_sigma(start) for start, end in ranges)
