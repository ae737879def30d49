"""An implementation under test whose float32 arithmetic flushes subnormal results to zero, as XLA's on the CPU does,
and declares it (``FLUSHES_SUBNORMALS``, as an adapter does): tests/meta/test_exhaustive_engine.py runs the
exhaustive engine on it, with and without the declaration."""

from __future__ import annotations

import torch
from torch.nn import functional as F

FLUSHES_SUBNORMALS = ("float32",)


def bce_flushing(input: torch.Tensor, target: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """torch's BCE with every subnormal result flushed to zero."""
    loss = F.binary_cross_entropy(input, target, **kwargs)  # type: ignore[arg-type]
    return torch.where(loss.abs() < torch.finfo(loss.dtype).tiny, torch.zeros_like(loss), loss)
