"""Input checks shared by the reference losses.

Each check raises the exception class torch raises for the same defect (the builtin
``ValueError``, ``RuntimeError``, ``IndexError`` or ``NotImplementedError``), with a message
that says what is wrong. The classes are part of the semantics under test; the wording is ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

REDUCTIONS = ("none", "mean", "sum")

# torch accepts only int64 (Long) and uint8 (Byte) class-index targets.
INDEX_TARGET_DTYPES = (np.dtype(np.int64), np.dtype(np.uint8))


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def as_array(value: Any) -> NDArray[Any]:
    """Accept any array-like while keeping its dtype (dtype checks depend on it)."""
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def check_floating(name: str, array: NDArray[Any], op: str) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        raise NotImplementedError(f'"{op}" is not implemented for {name} of dtype {array.dtype}')


def check_same_dtype(what: str, array: NDArray[Any], expected: NDArray[Any]) -> None:
    if array.dtype != expected.dtype:
        raise RuntimeError(f"{what} has dtype {array.dtype} but the input has dtype {expected.dtype}")


def check_index_target_dtype(target: NDArray[Any]) -> None:
    if target.dtype not in INDEX_TARGET_DTYPES:
        raise RuntimeError(f"expected target dtype to be int64 (Long) or uint8 (Byte), but got {target.dtype}")


def check_broadcasts_without_enlarging(name: str, shape: tuple[int, ...], to: tuple[int, ...]) -> None:
    """``name`` must broadcast (right-aligned) to ``to`` and must not make the result larger."""
    try:
        combined = np.broadcast_shapes(shape, to)
    except ValueError:
        raise RuntimeError(
            f"{name} of shape {list(shape)} cannot be broadcast to the target shape {list(to)}"
        ) from None
    if combined != tuple(to):
        raise RuntimeError(
            f"{name} of shape {list(shape)} would enlarge the output from {list(to)} to {list(combined)}"
        )


def check_in_unit_interval(name: str, array: NDArray[np.float64]) -> None:
    # Written as a negation so that NaN fails the check, as it does in torch.
    if array.size and not np.all((array >= 0) & (array <= 1)):
        raise RuntimeError(f"all elements of {name} should be between 0 and 1")
