"""The tolerance model's structure: what its bounds must grow with, and where no finite bound exists."""

import numpy as np

from tests.common import tolerance
from tests.common.cases import Case
from tests.common.compare import check_parity
from tests.common.dtypes import FLOAT32, FLOAT64
from tests.common.implementations import torch_impl


def test_cross_entropy_bound_grows_with_the_largest_logit():
    """Log-softmax cancels at the scale of max|logit|, so the bound scales with it, not with the loss value."""
    target = np.array([0])
    small = tolerance.error_bound("cross_entropy", FLOAT32, np.array([[1.0, 0.0, -1.0]]), target)
    large = tolerance.error_bound("cross_entropy", FLOAT32, np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0]]), target)
    assert large > 100 * small


def test_bce_with_logits_bound_grows_with_the_logit():
    """(1 - y) x - log sigmoid(x) cancels at the scale of |x| (x = -17, y = 0 is 4e-8 but errs by ulp(17))."""
    at = [
        tolerance.error_bound("binary_cross_entropy_with_logits", FLOAT32, np.array([x]), np.array([0.0]))
        for x in (-1.0, -17.0, -1e3)
    ]
    assert at[0] < at[1] < at[2]
    assert at[1] > 17 * FLOAT32.unit_roundoff


def test_ignored_targets_must_be_exactly_zero():
    """An ignored position's loss is exactly 0 in any dtype: its bound is 0."""
    bound = tolerance.error_bound(
        "nll_loss", FLOAT32, np.array([[0.5, -2.0], [3.0, 1.0]]), np.array([1, -100]), reduction="none"
    )
    assert bound[1] == 0 and bound[0] > 0


def test_a_mean_over_a_cancelling_total_weight_has_no_finite_bound():
    """Weights 1 and -1 sum to 0 exactly here, but rounding could make them sum to anything small: no bound."""
    bound = tolerance.error_bound(
        "nll_loss", FLOAT64, np.array([[0.5, -2.0], [3.0, 1.0]]), np.array([0, 1]), weight=np.array([1.0, -1.0])
    )
    assert np.isinf(bound)


def test_a_result_near_the_overflow_threshold_has_no_finite_bound():
    """A float32 sum of 3e38 and 3e38 rounds to inf, so no finite bound describes it; in float64 it is ordinary."""
    logits, target = np.array([[-3e38, 0.0], [-3e38, 0.0]]), np.array([0, 0])
    in_float32 = tolerance.error_bound("nll_loss", FLOAT32, logits, target, reduction="sum")
    in_float64 = tolerance.error_bound("nll_loss", FLOAT64, logits, target, reduction="sum")
    assert np.isinf(in_float32) and np.isfinite(in_float64)


def test_the_bound_covers_the_reference_s_own_subnormal_rounding():
    """Found by the thorough profile: 0.5 x 5e-324 underflows to 0 in the float64 reference itself, so the
    model's absolute floor must count the reference's subnormal rounding as well as torch's."""
    logits = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 58.0, 0.0]])
    probabilities = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5e-324]])
    case = Case("cross_entropy", logits, probabilities, {"weight": np.array([1.0, 1.0, 0.5])})
    check_parity(case, torch_impl("cross_entropy", "functional"), form="functional", dtype=FLOAT64, device="cpu")
