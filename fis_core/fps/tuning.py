"""Which kernel configurations (warps, pipeline stages) the attention kernel's autotuner tries, by GPU generation.

A config whose stages do not fit a GPU's shared memory cannot run there, and tuning it costs time at the first call.
A 128-token tile of Q, K and V with head dim 128 takes 16 KB per operand in FP8 (32 KB in BF16), and each stage
buffers one K and one V tile. Hopper and datacenter Blackwell (about 228 KB per multiprocessor) pipeline 2-4
stages; Ada, consumer Blackwell and the smaller Ampere parts (about 100 KB) fit 2 stages in FP8 and barely 1 in
BF16. Only the Hopper list is measured here (H100/H200, ``bench/attention.py``); the others follow from the
arithmetic above and are not measured.
"""
from __future__ import annotations

#: (warps, stages) per GPU family, by compute capability
LARGE_SHARED_MEMORY = ((8, 2), (8, 3), (8, 4), (4, 3))      # measured: H100 / H200
SMALL_SHARED_MEMORY = ((4, 2), (8, 2), (4, 1), (8, 1))      # not measured: Ada 8.9, Ampere 8.6/8.7, Blackwell 12.x


def kernel_configs(capability: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The (warps, stages) the autotuner tries on a GPU of compute ``capability`` (major, minor)."""
    major, minor = capability
    if major in (9, 10) or (major, minor) == (8, 0):           # Hopper, datacenter Blackwell, A100: ~164-228 KB
        return LARGE_SHARED_MEMORY
    return SMALL_SHARED_MEMORY
