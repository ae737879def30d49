"""Properties shared by the suite and its meta tests, so that a planted bug meets exactly the check the suite
runs against torch."""

from __future__ import annotations

import numpy as np

from . import ledger, registry
from .cases import Case
from .compare import check_parity
from .dtypes import Dtype
from .implementations import LossImpl
from .registry import ParityVariant


def exclude_if_known_divergence(case: Case) -> None:
    """Drop the example, naming the divergence, if torch is known to depart from the reference on it."""
    reason = registry.info(case.loss).known_divergence(case)
    if reason:
        ledger.exclude(reason)


def exclude_if_known_gradient_divergence(case: Case) -> None:
    """Drop the example, naming the divergence, if torch's backward is known to depart from the reference on it."""
    reason = registry.info(case.loss).known_gradient_divergence(case)
    if reason:
        ledger.exclude(reason)


def loss_matches_reference(case: Case, impl: LossImpl, *, form: str, dtype: Dtype, device: str) -> None:
    """``impl`` computes ``case`` as the reference does, within the tolerance model's bound."""
    __tracebackhide__ = True
    exclude_if_known_divergence(case)
    check_parity(case, impl, form=form, dtype=dtype, device=device)


def output_shape(case: Case) -> tuple[int, ...]:
    """The shape of the loss's value for ``case``: the shape its grad_output takes."""
    reference = registry.info(case.loss).reference
    assert reference is not None, f"{case.loss} has no reference"
    return tuple(np.shape(reference(case.input, case.target, **case.kwargs)))


def variants_of(loss: str) -> tuple[ParityVariant, ...]:
    return registry.info(loss).variants
