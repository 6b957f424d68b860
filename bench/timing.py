"""How the benchmarks time: CUDA events on the GPU, the wall clock on the CPU (their ``--tiny`` smoke modes), with
warm-up calls and the median of the timed ones."""
from __future__ import annotations

import statistics
import time

import torch


class Clock:
    """Times on the GPU with CUDA events, on the CPU with the wall clock."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start, end) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end)
        return (end - start) * 1000.0

    def median_ms(self, fn, reps: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            start = self.mark()
            fn()
            times.append(self.elapsed_ms(start, self.mark()))
        return statistics.median(times)

    def block_ms(self, fn, blocks) -> list[float]:
        """Time of each block (all its calls summed) during one call of ``fn``."""
        marks = {i: [] for i in range(len(blocks))}
        handles = []
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(lambda m, a, i=i: marks[i].append(self.mark())))
            handles.append(block.register_forward_hook(lambda m, a, o, i=i: marks[i].append(self.mark())))
        try:
            fn()
        finally:
            for handle in handles:
                handle.remove()
        return [sum(self.elapsed_ms(s, e) for s, e in zip(m[0::2], m[1::2])) for m in marks.values()]
