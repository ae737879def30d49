"""The sigmoid focal loss (torchvision.ops.sigmoid_focal_loss; torch has none): its strategy, the tolerance model's
replays of torchvision's forward and backward, and its registry entry (``INFO``), whose gaps say what it lacks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import reference
from reference import gradients

from ..cases import CaseBatch
from ..dtypes import Dtype
from ..elements import among, mixture
from ..loss_info import Divergence, LossInfo
from ..strategies import LOGITS, PROBABILITIES, binary_shapes, float_arrays, floats, reduction_kwargs, single_cases
from ..tolerance.backward import upstream
from ..tolerance.forward import reduce
from ..tolerance.tracked import F64, Tracked, case_ndim, case_size
from .binary_cross_entropy_with_logits import replay as bce_with_logits_replay

# 0 (BCE itself), 2 (the paper's choice), 1, 5, and 0.5: a fractional gamma below 1, where the
# modulating factor's derivative is unbounded at a saturated correct prediction.
FOCAL_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


# torchvision's "no weighting" (-1), its default 0.25, and both ends of [0, 1].
FOCAL_ALPHAS = (-1.0, 0.0, 0.25, 0.5, 1.0)


def focal_gammas(dtype: Dtype) -> st.SearchStrategy[float]:
    """Exponents exact in the dtype: torch may round a Python exponent to the tensor's dtype before pow."""
    return st.one_of(st.sampled_from(FOCAL_GAMMAS), floats(dtype, 0, 5)).map(lambda g: float(dtype.snap(np.float64(g))))


FOCAL_LABELS = mixture(among(0.0, 1.0), PROBABILITIES)


@st.composite
def sigmoid_focal_loss_batches(
    draw: st.DrawFn,
    dtype: Dtype,
    size: int = 1,
    alpha: float | None = None,
    gamma: float | None = None,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> CaseBatch:
    """``size`` cases of one shape and arguments. Logits as for BCEWithLogits; targets in [0, 1], often exactly 0 or 1
    (the labels torchvision documents); alpha and gamma drawn or, when given, fixed (and always passed)."""
    shape = draw(binary_shapes() if shapes is None else shapes, label="shape")
    logits = draw(float_arrays(dtype, (size, *shape), LOGITS), label="input")
    target = draw(float_arrays(dtype, (size, *shape), FOCAL_LABELS), label="target")
    kwargs = draw(reduction_kwargs(), label="kwargs")
    if alpha is not None:
        kwargs["alpha"] = alpha
    elif draw(st.booleans(), label="with alpha"):
        kwargs["alpha"] = draw(st.one_of(st.sampled_from(FOCAL_ALPHAS), st.floats(0, 1)), label="alpha")
    if gamma is not None:
        kwargs["gamma"] = gamma
    elif draw(st.booleans(), label="with gamma"):
        kwargs["gamma"] = draw(focal_gammas(dtype), label="gamma")
    return CaseBatch("sigmoid_focal_loss", logits, target, kwargs)


sigmoid_focal_loss_cases = single_cases(sigmoid_focal_loss_batches)


@dataclass(frozen=True)
class _FocalParts:
    """torchvision's intermediate tensors, tracked: its backward reuses them."""

    x: Tracked
    y: Tracked
    p: Tracked
    ce: Tracked
    miss: Tracked  # 1 - p_t
    modulating: Tracked  # (1 - p_t) ** gamma
    alpha_t: Tracked | None
    loss: Tracked  # per element, before the reduction


def _in_unit_interval(target: F64) -> F64:
    """Per case: whether every target lies in [0, 1]."""
    return np.all((target >= 0) & (target <= 1), axis=tuple(range(case_ndim(target))))


def _focal_parts(dtype: Dtype, input: F64, target: F64, alpha: float, gamma: float) -> _FocalParts:
    """torchvision.ops.sigmoid_focal_loss's order: p = sigmoid(x); ce = BCEWithLogits(x, y, 'none');
    p_t = p y + (1 - p)(1 - y); loss = ce (1 - p_t)^gamma; then alpha_t = alpha y + (1 - alpha)(1 - y) times it."""
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    p = x.sigmoid()
    ce = bce_with_logits_replay(dtype, input, target, reduction="none")
    miss = 1.0 - (p * y + (1.0 - p) * (1.0 - y))
    # For targets in [0, 1] and p in [0, 1], p y + (1 - p)(1 - y) cannot round above 1 (rounding is monotone and
    # y + fl(1 - y) exceeds 1 by at most half an ulp, which rounds back to 1): torch's 1 - p_t is never negative.
    in_unit_interval = _in_unit_interval(target)
    modulating = miss.power(gamma, base_nonnegative=in_unit_interval)
    loss = ce * modulating
    alpha_t = None
    if alpha >= 0:  # Python floats, rounded to the dtype when they meet the tensors
        alpha_t = y * x.constant(alpha) + (1.0 - y) * x.constant(1.0 - alpha)
        loss = alpha_t * loss
    return _FocalParts(x, y, p, ce, miss, modulating, alpha_t, loss)


def replay(
    dtype: Dtype, input: F64, target: F64, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tracked:
    return reduce(_focal_parts(dtype, input, target, alpha, gamma).loss, reduction, None)


def gradient_replay(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tracked:
    """Autograd back through torchvision's graph: g (/ numel) [* alpha_t]; then to ce, g m, and to the modulating
    factor, g ce, through pow's backward g (gamma q^(gamma - 1)) (exactly 0 for gamma = 0), through 1 - p_t and
    p_t = p y + (1 - p)(1 - y) to g_p = g_pt y - g_pt (1 - y), through sigmoid's backward g_p (1 - p) p; the
    BCEWithLogits branch adds (sigmoid(x) - y) g_ce."""
    parts = _focal_parts(dtype, input, target, alpha, gamma)
    x, y, p = parts.x, parts.y, parts.p
    g = upstream(dtype, grad_output, reduction, float(case_size(target))).broadcast_to(np.shape(target))
    if parts.alpha_t is not None:
        g = g * parts.alpha_t
    through_ce = (x.sigmoid() - y) * (g * parts.modulating)
    if gamma == 0:
        return through_ce
    in_unit_interval = _in_unit_interval(target)
    g_pt = -((g * parts.ce) * (parts.miss.power(gamma - 1.0, base_nonnegative=in_unit_interval) * gamma))
    g_p = g_pt * y - g_pt * (1.0 - y)
    return (g_p * (1.0 - p)) * p + through_ce


FOCAL_TESTS = "tests/test_focal_loss.py"


INFO = LossInfo(
    name="sigmoid_focal_loss",
    functional=None,
    module=None,
    reference=reference.sigmoid_focal_loss,
    reference_gradient=gradients.sigmoid_focal_loss_grad,
    forward_replay=replay,
    gradient_replay=gradient_replay,
    oracle=None,
    oracle_gradient=None,
    cases=sigmoid_focal_loss_cases,
    variants=(),
    rejections=(),
    planted_bugs=(),
    divergences=(
        Divergence(
            "test_torchvision_focal_gradient_is_nan_at_a_saturated_correct_prediction_for_gamma_below_1",
            FOCAL_TESTS,
            "torchvision's focal-loss gradient is NaN at a saturated correct prediction (1 - p_t rounds to 0) for "
            "0 < gamma < 1, where the true gradient is finite (torchvision 0.29.1, every dtype)",
        ),
        Divergence(
            "test_torchvision_focal_loss_is_0_at_a_saturated_correct_prediction",
            FOCAL_TESTS,
            "torchvision's focal loss is exactly 0 at a saturated correct prediction for gamma > 0, where the loss "
            "is a normal number (float64, float32, bfloat16); within the bound, with no correct digit",
        ),
    ),
    gaps={
        "large_inputs": "as for its variants: there is no torch focal loss to check",
        "functional": "torch has none; tests/test_focal_loss.py checks torchvision's where a torchvision built for "
        "this torch is installed",
        "module": "neither torch nor torchvision has a focal-loss module",
        "oracle": "no mpmath oracle yet; the reference is checked against torch's BCEWithLogits identities",
        "oracle_gradient": "no mpmath oracle yet; the gradient is checked against BCEWithLogits' at gamma = 0",
        "variants": "no torch focal loss to check; tests/test_focal_loss.py holds torchvision's parity properties",
        "rejections": "its ValueErrors are checked in tests/test_focal_loss.py, against torchvision where installed",
        "planted_bugs": "no torch focal loss to replace through --impl; tests/test_focal_loss.py plants three bugs "
        "in a focal loss built from torch and catches each",
    },
)
