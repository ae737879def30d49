"""Exhaustive sweeps where the input space is small enough to try every value: every finite float16 and bfloat16
number as a BCEWithLogits logit, and every float16 and bfloat16 probability in [0, 1] for BCE.

Each sweep compares torch with the reference element by element within the tolerance model's bound, and records
the largest error in units in the last place (ulps) of the dtype and the input where it occurs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import reference
from verification import ledger, registry
from verification.compare import ParityError
from verification.dtypes import BFLOAT16, FLOAT16, Dtype
from verification.tolerance.tracked import RULES, Tracked

SWEPT_DTYPES = (FLOAT16, BFLOAT16)


def every_finite_value(dtype: Dtype) -> np.ndarray:
    """All 2^16 bit patterns of a 16-bit dtype, keeping the finite ones (both zeros included), as float64."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype.torch).to(torch.float64).numpy()
    return np.sort(values[np.isfinite(values)])


def _sweep(
    dtype: Dtype,
    inputs: np.ndarray,
    got: torch.Tensor,
    want: np.ndarray,
    replayed: Tracked,
    what: str,
    repro: str,
) -> None:
    """Every input within its bound (``replayed.error``); record the largest error in ulps and where it occurs.

    Inputs whose bound is infinite are not compared: each is counted in the run's summary under the reason of the
    rule that made its bound so (``replayed.unbounded_by``).
    """
    bound = replayed.error
    if got.dtype != dtype.torch:
        raise ParityError(f"{what}: torch returned {got.dtype}, but the inputs were {dtype.torch}")
    g = got.to(torch.float64).numpy()
    bounded = np.isfinite(bound) | ~np.isfinite(want)
    record = ledger.RECORDS[ledger.current_test()]
    codes, counts = np.unique(replayed.unbounded_by[~bounded], return_counts=True)
    for code, count in zip(codes, counts, strict=True):
        record.excluded[RULES[int(code)].exclusion] += int(count)
    finite = np.isfinite(want)
    mismatched = bounded & (
        (np.isnan(g) != np.isnan(want)) | (np.isinf(want) & (g != want)) | (finite & ~np.isfinite(g))
    )
    if np.any(mismatched):
        bad = int(np.argmax(mismatched))
        raise ParityError(
            f"{what}: at input {inputs[bad]!r} torch gave {g[bad]!r} where the reference gives {want[bad]!r}"
            f"\n\nReproduce with:\n\n{repro}\n"
        )
    compared = bounded & finite
    error = np.where(compared, np.abs(g - np.where(finite, want, 0.0)), 0.0)
    over = compared & (error > bound)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(compared & (bound > 0), error / bound, np.where(compared & (error > 0), np.inf, 0.0))
    if np.any(over):
        worst = int(np.argmax(ratio))
        raise ParityError(
            f"{what}: at input {inputs[worst]!r} torch gave {g[worst]!r} where the reference gives {want[worst]!r}; "
            f"the error {error[worst]:.3g} exceeds the tolerance model's bound {bound[worst]:.3g} "
            f"({int(np.sum(over))} of {inputs.size} inputs over their bound)\n\nReproduce with:\n\n{repro}\n"
        )
    in_ulps = np.where(compared, error / dtype.ulps(np.where(finite, want, 0.0)), 0.0)
    worst_ulps, worst = int(np.argmax(in_ulps)), int(np.argmax(ratio))
    # Every bounded input was compared; record_comparison counts the worst one and keeps its error and bound.
    record.compared += int(np.count_nonzero(bounded)) - 1
    ledger.record_comparison(
        float(error[worst]), float(bound[worst]), float(ratio[worst]), float(want[worst]), dtype.ulp(float(want[worst]))
    )
    ledger.record_measurement(
        "largest_error_in_ulps",
        {
            "ulps": float(in_ulps[worst_ulps]),
            "at_input": float(inputs[worst_ulps]),
            "torch": float(g[worst_ulps]),
            "reference": float(want[worst_ulps]),
            "inputs_swept": int(inputs.size),
            "inputs_compared": int(np.count_nonzero(bounded)),
        },
    )


LOGIT_SWEEPS = [
    pytest.param(
        target, pos_weight, id=f"y={target}-{'no pos_weight' if pos_weight is None else f'pos_weight={pos_weight}'}"
    )
    for target in (0.0, 1.0, 0.25)
    for pos_weight in (None, 3.0)
]


@pytest.mark.parametrize("dtype", SWEPT_DTYPES, ids=str)
@pytest.mark.parametrize(("target", "pos_weight"), LOGIT_SWEEPS)
def test_bce_with_logits_at_every_finite_logit(
    dtype: Dtype, target: float, pos_weight: float | None, device: str
) -> None:
    """BCEWithLogitsLoss (reduction 'none') equals the reference within the tolerance model at every finite logit of
    the dtype, for targets 0, 1 and 0.25, with and without pos_weight."""
    x = every_finite_value(dtype)
    y = np.full_like(x, target)
    kwargs: dict[str, Any] = {"reduction": "none"} | (
        {} if pos_weight is None else {"pos_weight": np.array([pos_weight])}
    )
    want = reference.binary_cross_entropy_with_logits(x, y, **kwargs)
    replayed = registry.replay("binary_cross_entropy_with_logits", dtype, x, y, **kwargs)

    def as_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype.torch, device=device)

    torch_kwargs: dict[str, Any] = {k: as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got = torch.nn.functional.binary_cross_entropy_with_logits(as_tensor(x), as_tensor(y), **torch_kwargs).cpu()
    repro = (
        f"import torch; x = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(torch.{dtype.name})\n"
        f"x = x[x.isfinite()]; y = torch.full_like(x, {target})\n"
        f"print(torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction='none'"
        f"{'' if pos_weight is None else f', pos_weight=torch.tensor([{pos_weight}], dtype=x.dtype)'}))"
    )
    _sweep(dtype, x, got, want, replayed, f"BCEWithLogits over every finite {dtype} logit, y = {target}", repro)


@pytest.mark.parametrize("dtype", SWEPT_DTYPES, ids=str)
@pytest.mark.parametrize("target", [0.0, 1.0, 0.25])
def test_bce_at_every_probability(dtype: Dtype, target: float, device: str) -> None:
    """BCELoss (reduction 'none') equals the reference within the tolerance model at every probability of the dtype
    in [0, 1], the -100 clamp at 0 and 1 included, for targets 0, 1 and 0.25."""
    values = every_finite_value(dtype)
    p = values[(values >= 0) & (values <= 1)]
    y = np.full_like(p, target)
    want = reference.binary_cross_entropy(p, y, reduction="none")
    replayed = registry.replay("binary_cross_entropy", dtype, p, y, reduction="none")
    got = torch.nn.functional.binary_cross_entropy(
        torch.as_tensor(p, dtype=dtype.torch, device=device),
        torch.as_tensor(y, dtype=dtype.torch, device=device),
        reduction="none",
    ).cpu()
    repro = (
        f"import torch; v = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(torch.{dtype.name})\n"
        f"p = v[(v >= 0) & (v <= 1)]\nprint(torch.nn.functional.binary_cross_entropy(p, torch.full_like(p, {target}), "
        "reduction='none'))"
    )
    _sweep(dtype, p, got, want, replayed, f"BCE over every {dtype} probability in [0, 1], y = {target}", repro)


def test_the_sweeps_cover_every_finite_value() -> None:
    """The sweeps' inputs are all 63,488 finite float16 and 65,280 finite bfloat16 numbers (each distinct), and the
    probability sweeps all 15,361 float16 and 16,257 bfloat16 numbers in [0, 1]."""
    for dtype, finite, unit_interval in ((FLOAT16, 63488, 15361), (BFLOAT16, 65280, 16257)):
        values = every_finite_value(dtype)
        assert values.size == finite and np.unique(values).size == finite - 1, dtype  # +0 and -0 compare equal
        assert np.count_nonzero((values >= 0) & (values <= 1)) == unit_interval + 1, dtype  # and -0 is in [0, 1]
        assert values.max() == dtype.largest and values.min() == -dtype.largest
