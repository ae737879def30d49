"""Properties shared by the suite and its meta tests, so that a planted bug meets exactly the check the suite
runs against torch."""

from __future__ import annotations

import os

import numpy as np

from . import ledger, registry
from .cases import Case, CaseBatch
from .compare import check_gradient_parity_batch, check_parity, check_parity_batch
from .dtypes import Dtype
from .implementations import LossImpl, known_divergence, known_gradient_divergence
from .registry import ParityVariant

# How many cases a parity or gradient property checks in each hypothesis example: a batch that shares one shape and
# one set of arguments, each case with its own values (``CaseBatch``). Hypothesis's cost of an example, and the
# tolerance model's replay, are paid once for all of them. 1 checks one case per example, as the suite did before.
CASES_PER_EXAMPLE = int(os.environ.get("LOSS_PARITY_CASES_PER_EXAMPLE", "16"))


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


def batch_matches_reference(batch: CaseBatch, impl: LossImpl, *, form: str, dtype: Dtype, device: str) -> None:
    """``impl`` computes every case of ``batch`` as the reference does, within the tolerance model's bounds; a case
    under a named divergence is excluded, counted under its name."""
    __tracebackhide__ = True
    divergence = known_divergence(impl, registry.info(batch.loss).known_divergence, dtype)
    check_parity_batch(batch, impl, form=form, dtype=dtype, device=device, divergence=divergence)


def batch_gradients_match_reference(
    batch: CaseBatch, grad_outputs: np.ndarray, impl: LossImpl, *, form: str, dtype: Dtype, device: str
) -> None:
    """``impl``'s autograd gradient of every case of ``batch`` (case k with upstream ``grad_outputs[k]``) equals the
    reference's analytic gradient within the tolerance model's bounds; a case under a named divergence of the
    backward is excluded, counted under its name."""
    __tracebackhide__ = True
    divergence = known_gradient_divergence(impl, registry.info(batch.loss).known_gradient_divergence, dtype)
    check_gradient_parity_batch(batch, grad_outputs, impl, form=form, dtype=dtype, device=device, divergence=divergence)


def output_shape(case: Case) -> tuple[int, ...]:
    """The shape of the loss's value for ``case``: the shape its grad_output takes."""
    reference = registry.info(case.loss).reference
    assert reference is not None, f"{case.loss} has no reference"
    return tuple(np.shape(reference(case.input, case.target, **case.kwargs)))


def variants_of(loss: str) -> tuple[ParityVariant, ...]:
    return registry.info(loss).variants
