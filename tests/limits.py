"""Bounds for input that must be refused at once: wall time and traced memory, asserted loosely (never benchmarks)."""
from __future__ import annotations

import re
import resource
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import pytest

#: Address space a call may add before it fails with a MemoryError: code without the bounds then fails in
#: seconds instead of taking the machine's memory.
SPARE_ADDRESS_SPACE = 2 << 30


@contextmanager
def capped_address_space():
    vm_size = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm_size + SPARE_ADDRESS_SPACE
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def refused_at_once(call, error=ValueError, seconds=1.0, megabytes=50) -> str:
    """Run ``call``, which must raise ``error`` within ``seconds`` and ``megabytes`` of traced memory; its message."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with capped_address_space(), pytest.raises(error) as raised:
            call()
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < seconds, f"refused after {elapsed:.1f} s"
    assert peak < megabytes * 2**20, f"refused after a peak of {peak / 2**20:.0f} MB"
    return str(raised.value)
