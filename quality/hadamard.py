"""Rows of the Sylvester-Hadamard matrix: fixed, exactly reproducible orthogonal +-1 vectors."""
from __future__ import annotations

import torch


def hadamard_rows(rows, size: int) -> torch.Tensor:
    """Rows ``rows`` of the ``size`` x ``size`` Sylvester-Hadamard matrix (``size`` a power of two):
    entry (i, j) is (-1) to the number of bits set in ``i & j``. Returns float32 [len(rows), size]."""
    if size & (size - 1):
        raise ValueError(f"size must be a power of two; got {size}")
    i = torch.as_tensor(rows, dtype=torch.long).view(-1, 1)
    bits = i & torch.arange(size).view(1, -1)
    parity = torch.zeros_like(bits)
    while bool(bits.any()):
        parity ^= bits & 1
        bits = bits >> 1
    return 1.0 - 2.0 * parity.float()
