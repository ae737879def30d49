"""Focal loss, the article's promised next step: ``reference/focal.py`` against torchvision's
``sigmoid_focal_loss`` when torchvision is installed, and against torch's own BCEWithLogits always.

Without a usable torchvision (the optional 'focal' extra; PyPI's build does not load beside the CPU
wheel of torch 2.13.0) the torchvision checks are skipped with the reason in the run's summary, and the
properties that tie the reference to torch's BCEWithLogits still run:

* gamma = 0 with alpha = -1 is BCEWithLogits, in value and in gradient;
* for labels 0 and 1, FL = (1 - p_t)^gamma BCE with p_t = e^-BCE: the modulating factor, rebuilt from
  torch's BCE, scales it to the reference's focal loss;
* FL <= BCE for every alpha in [0, 1] (or -1) and gamma >= 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

import reference
from verification import ledger, registry, strategies
from verification.cases import Case, to_torch
from verification.compare import (
    ParityError,
    assert_close,
    check_gradient_parity,
    check_parity,
    check_same_rejection,
    exclude_if_unbounded,
)
from verification.dtypes import FLOAT64, PARITY_DTYPES, Dtype
from verification.implementations import torchvision_focal_loss
from verification.reproducer import expressions_snippet
from verification.tolerance import identities

LOSS = "sigmoid_focal_loss"
dtypes = pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


def _torchvision():
    impl, why_not = torchvision_focal_loss()
    if impl is None:
        pytest.skip(why_not)
    return impl


def _reduction(case: Case) -> str:
    return str(case.kwargs.get("reduction", "none"))  # torchvision's default


def _torch_miss_probability_is_zero(case: Case, dtype: Dtype, device: str) -> bool:
    """Whether 1 - p_t, computed as torchvision does, is exactly 0 somewhere: the divergence's trigger."""
    x, y, _ = to_torch(case, dtype, device)
    p = torch.sigmoid(x)
    return bool(torch.any(1 - (p * y + (1 - p) * (1 - y)) == 0))


# --- torchvision against the reference --------------------------------------------------------


@dtypes
@given(data=st.data())
def test_torchvision_focal_loss_matches_reference(data, dtype, device):
    """torchvision's sigmoid_focal_loss equals the reference for any shape, logits up to |1e4|, targets in [0, 1],
    alpha in [0, 1] or -1, gamma in [0, 5] and every reduction."""
    impl = _torchvision()
    case = data.draw(registry.info("sigmoid_focal_loss").cases(dtype), label="case")
    check_parity(case, impl, form="functional", dtype=dtype, device=device)


@dtypes
@given(data=st.data())
def test_torchvision_focal_loss_gradient_matches_reference(data, dtype, device):
    """torchvision's autograd gradient equals the reference's analytic gradient of the focal loss, except at a
    saturated correct prediction with 0 < gamma < 1 (a named divergence, below)."""
    impl = _torchvision()
    case = data.draw(registry.info("sigmoid_focal_loss").cases(dtype), label="case")
    gamma = case.kwargs.get("gamma", 2.0)
    if 0 < gamma < 1 and _torch_miss_probability_is_zero(case, dtype, device):
        ledger.exclude(
            "torchvision's gradient is NaN where 1 - p_t rounds to 0 and 0 < gamma < 1 "
            "(test_torchvision_focal_gradient_is_nan_at_a_saturated_correct_prediction_for_gamma_below_1)"
        )
    shape = np.shape(reference.sigmoid_focal_loss(case.input, case.target, **case.kwargs))
    grad_output = data.draw(strategies.grad_outputs(dtype, shape), label="grad_output")
    check_gradient_parity(case, grad_output, impl, form="functional", dtype=dtype, device=device)


@dtypes
@given(data=st.data())
def test_torchvision_focal_gradient_is_nan_at_a_saturated_correct_prediction_for_gamma_below_1(data, dtype, device):
    """Named divergence: where the prediction is correct and saturated (sigmoid(x) rounds to 1 for label 1, or to
    0 for label 0), 1 - p_t is 0 and, for 0 < gamma < 1, pow's backward gamma * 0^(gamma - 1) is inf; times
    sigmoid's derivative, 0, it gives NaN. The focal loss's true derivative there is finite (and tiny), as the
    reference computes."""
    impl = _torchvision()
    label = data.draw(st.sampled_from([0.0, 1.0]), label="label")
    saturated = math.log(4.0 / dtype.unit_roundoff)  # beyond it, 1 - sigmoid(|x|) < u / 4 rounds away
    size = data.draw(strategies.floats(dtype, saturated, 1e4), label="|x|")
    x = dtype.snap(np.array([size if label == 1.0 else -size]))
    gamma = data.draw(strategies.floats(dtype, 0.0625, 0.9375), label="gamma")
    case = Case(LOSS, x, np.array([label]), {"gamma": float(dtype.snap(np.float64(gamma))), "reduction": "sum"})
    input, target, kwargs = to_torch(case, dtype, device)
    input.requires_grad_(True)
    impl(input, target, **kwargs).backward()
    want = registry.reference_gradient(LOSS)(case.input, case.target, **case.kwargs)
    repro = expressions_snippet(
        case,
        dtype,
        device,
        "torch.autograd.grad(__import__('torchvision').ops.sigmoid_focal_loss("
        "input.requires_grad_(), target, **kwargs), input)",
        "__import__('reference.gradients').gradients.sigmoid_focal_loss_grad(x, t, **np_kwargs)",
    )
    assert input.grad is not None and torch.isnan(input.grad).all(), (
        f"torchvision's focal-loss gradient at {case.describe()} is {input.grad}, no longer NaN: the divergence is "
        f"gone, update its record (the reference gives {want})\n\nReproduce with:\n\n{repro}"
    )
    assert np.all(np.isfinite(want)), f"the reference's gradient at {case.describe()} is {want}, not finite"
    ledger.record_example()


@pytest.mark.parametrize("dtype", [d for d in PARITY_DTYPES if d.name != "float16"], ids=str)
@given(data=st.data())
def test_torchvision_focal_loss_is_0_at_a_saturated_correct_prediction(data, dtype, device):
    """Named divergence (within the bound, with no correct digit): where the prediction is correct and saturated,
    1 - p_t rounds to 0 and torchvision's focal loss is exactly 0 for gamma > 0, though the loss, about
    e^-((1 + gamma)|x|), is a normal number of the dtype (float16 is not drawn: its range ends before its sigmoid
    saturates). The tolerance model allows it: the modulating factor's base is within rounding error of 0."""
    impl = _torchvision()
    label = data.draw(st.sampled_from([0.0, 1.0]), label="label")
    gamma = float(dtype.snap(np.float64(data.draw(strategies.floats(dtype, 0.0625, 2.0), label="gamma"))))
    saturated = math.log(4.0 / dtype.unit_roundoff)
    still_normal = -math.log(dtype.smallest_normal) / (1.0 + gamma) - 1.0
    size = data.draw(strategies.floats(dtype, saturated, still_normal), label="|x|")
    x = dtype.snap(np.array([size if label == 1.0 else -size]))
    case = Case(LOSS, x, np.array([label]), {"gamma": gamma, "alpha": -1.0})
    input, target, kwargs = to_torch(case, dtype, device)
    got = impl(input, target, **kwargs)
    want = reference.sigmoid_focal_loss(case.input, case.target, **case.kwargs)
    repro = expressions_snippet(
        case,
        dtype,
        device,
        "__import__('torchvision').ops.sigmoid_focal_loss(input, target, **kwargs)",
        "reference.sigmoid_focal_loss(x, t, **np_kwargs)",
    )
    assert float(got[0]) == 0.0, (
        f"torchvision's focal loss at {case.describe()} is {float(got[0])!r}, no longer 0: the divergence is gone, "
        f"update its record (the reference gives {want})\n\nReproduce with:\n\n{repro}"
    )
    assert want[0] >= dtype.smallest_normal, f"the reference's loss {want} is not a normal {dtype} number"
    ledger.record_example()


# --- the reference against torch's BCEWithLogits (always run) -----------------------------------


@dtypes
@given(data=st.data())
def test_focal_loss_with_gamma_0_and_no_alpha_is_bce_with_logits(data, dtype, device):
    """With gamma = 0 and alpha = -1 the reference's focal loss equals torch's BCEWithLogitsLoss, for every shape
    and reduction, within BCEWithLogits' bound."""
    case = data.draw(registry.info("sigmoid_focal_loss").cases(dtype, alpha=-1.0, gamma=0.0), label="case")
    reduction = _reduction(case)
    bce = Case("binary_cross_entropy_with_logits", case.input, case.target, {"reduction": reduction})
    want = np.asarray(reference.sigmoid_focal_loss(case.input, case.target, **case.kwargs))
    replayed = registry.replay(bce.loss, dtype, bce.input, bce.target, **bce.kwargs)
    bound = np.asarray(replayed.error)
    exclude_if_unbounded(bound, want, replayed.unbounded_by)
    x, y, _ = to_torch(case, dtype, device)
    assert_close(
        F.binary_cross_entropy_with_logits(x, y, reduction=reduction),
        want,
        bound,
        dtype=dtype,
        what=f"torch's BCEWithLogits against the reference's focal loss with gamma = 0, alpha = -1, "
        f"{dtype} on {device}",
        repro=expressions_snippet(
            case,
            dtype,
            device,
            f"F.binary_cross_entropy_with_logits(input, target, reduction={reduction!r})",
            "reference.sigmoid_focal_loss(x, t, **np_kwargs)",
        ),
    )


@dtypes
@given(data=st.data())
def test_focal_gradient_with_gamma_0_and_no_alpha_is_bce_with_logits_gradient(data, dtype, device):
    """With gamma = 0 and alpha = -1 the reference's focal-loss gradient equals torch's BCEWithLogits autograd
    gradient, within BCEWithLogits' gradient bound."""
    case = data.draw(registry.info("sigmoid_focal_loss").cases(dtype, alpha=-1.0, gamma=0.0), label="case")
    reduction = _reduction(case)
    shape = np.shape(reference.sigmoid_focal_loss(case.input, case.target, **case.kwargs))
    grad_output = data.draw(strategies.grad_outputs(dtype, shape), label="grad_output")
    want = registry.reference_gradient(LOSS)(case.input, case.target, **case.kwargs, grad_output=grad_output)
    replayed = registry.gradient_replay(
        "binary_cross_entropy_with_logits", dtype, case.input, case.target, grad_output, reduction=reduction
    )
    bound = np.asarray(replayed.error)
    exclude_if_unbounded(bound, want, replayed.unbounded_by)
    x, y, _ = to_torch(case, dtype, device)
    x.requires_grad_(True)
    F.binary_cross_entropy_with_logits(x, y, reduction=reduction).backward(
        torch.as_tensor(grad_output).to(device=device, dtype=dtype.torch)
    )
    assert x.grad is not None
    assert_close(
        x.grad,
        want,
        bound,
        dtype=dtype,
        what=f"torch's BCEWithLogits gradient against the reference's focal-loss gradient with gamma = 0, "
        f"alpha = -1, {dtype} on {device}",
        repro=expressions_snippet(
            case,
            dtype,
            device,
            f"torch.autograd.grad(F.binary_cross_entropy_with_logits(input.requires_grad_(), target, "
            f"reduction={reduction!r}), input, torch.as_tensor({grad_output.tolist()!r}, dtype=dtype))",
            f"__import__('reference.gradients').gradients.sigmoid_focal_loss_grad(x, t, **np_kwargs, "
            f"grad_output=np.array({grad_output.tolist()!r}))",
        ),
    )


@dtypes
@given(data=st.data())
def test_focal_loss_is_bce_scaled_by_the_modulating_factor(data, dtype, device):
    """For labels 0 and 1, p_t = e^-BCE, so FL = (1 - e^-BCE)^gamma * BCE: built from torch's BCEWithLogits (with
    expm1) this equals the reference's focal loss (alpha = -1), within the bound of that composition."""
    case = data.draw(registry.info("sigmoid_focal_loss").cases(dtype, alpha=-1.0), label="case")
    labels = data.draw(strategies.float_arrays(dtype, case.input.shape, strategies.among(0.0, 1.0)), label="labels")
    gamma = case.kwargs.get("gamma", 2.0)
    case = Case(LOSS, case.input, labels, {"alpha": -1.0, "gamma": gamma, "reduction": "none"})
    want = np.asarray(reference.sigmoid_focal_loss(case.input, case.target, **case.kwargs))
    composed = identities.focal_from_bce(dtype, case.input, case.target, gamma)
    bound = np.asarray(composed.error)
    exclude_if_unbounded(bound, want, composed.unbounded_by)
    x, y, _ = to_torch(case, dtype, device)
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert_close(
        bce * (-torch.expm1(-bce)) ** gamma,
        want,
        bound,
        dtype=dtype,
        what=f"(-expm1(-BCE))^{gamma} BCE from torch's BCEWithLogits against the reference's focal loss, "
        f"{dtype} on {device}",
        repro=expressions_snippet(
            case,
            dtype,
            device,
            f"(lambda b: b * (-torch.expm1(-b)) ** {gamma!r})(F.binary_cross_entropy_with_logits(input, target, "
            "reduction='none'))",
            "reference.sigmoid_focal_loss(x, t, **np_kwargs)",
        ),
    )


@dtypes
@given(data=st.data())
def test_focal_loss_never_exceeds_bce(data, dtype, device):
    """FL <= BCE for targets in [0, 1], alpha in [0, 1] or -1 and gamma >= 0 (both factors, alpha_t and
    (1 - p_t)^gamma, lie in [0, 1]): the reference's focal loss never exceeds torch's BCEWithLogits beyond its
    bound, nor does torchvision's when installed, beyond both bounds."""
    case = data.draw(registry.info("sigmoid_focal_loss").cases(dtype), label="case")
    case = case.with_kwargs(reduction="none")
    bce = Case("binary_cross_entropy_with_logits", case.input, case.target, {"reduction": "none"})
    bce_bound = np.asarray(registry.error_bound(bce.loss, dtype, bce.input, bce.target, **bce.kwargs))
    focal_bound = np.asarray(registry.error_bound(LOSS, dtype, case.input, case.target, **case.kwargs))
    x, y, _ = to_torch(case, dtype, device)
    torch_bce = _as_numpy(F.binary_cross_entropy_with_logits(x, y, reduction="none"))
    focal = {"the reference": (np.asarray(reference.sigmoid_focal_loss(case.input, case.target, **case.kwargs)), 0)}
    impl, _ = torchvision_focal_loss()
    if impl is not None:
        focal["torchvision"] = (_as_numpy(impl(x, y, **case.kwargs)), focal_bound)
    for who, (value, own_bound) in focal.items():
        with np.errstate(invalid="ignore"):  # inf - inf where both are infinite: compared as equal below
            excess = np.where(value == torch_bce, 0.0, value - torch_bce)
        above = ~(excess <= bce_bound + own_bound)
        if np.any(above):
            i = int(np.argmax(above))
            raise ParityError(
                f"{who}'s focal loss of {case.describe()} is {value.flat[i]!r}, above torch's BCEWithLogits "
                f"{torch_bce.flat[i]!r} by more than the bound, {dtype} on {device}\n\nReproduce with:\n\n"
                + expressions_snippet(
                    case,
                    dtype,
                    device,
                    "reference.sigmoid_focal_loss(x, t, **np_kwargs)",
                    "F.binary_cross_entropy_with_logits(input, target, reduction='none')",
                )
            )
    ledger.record_example()


# --- rejections and power -----------------------------------------------------------------------

REJECTED = [
    ("an alpha above 1", {"alpha": 1.5}),
    ("a negative alpha other than -1", {"alpha": -0.5}),
    ("an unknown reduction", {"reduction": "batchmean"}),
    ("a target of another shape", {"target shape": (3, 1)}),
]


@pytest.mark.parametrize(("what", "change"), REJECTED, ids=[what for what, _ in REJECTED])
def test_focal_loss_rejections(what, change, device):
    """The reference rejects an alpha outside [0, 1] other than -1, an unknown reduction and a target of another
    shape with ValueError, as torchvision does (compared with torchvision when installed)."""
    shape = change.get("target shape", (3,))
    kwargs = {k: v for k, v in change.items() if k != "target shape"}
    case = Case(LOSS, np.array([0.5, -1.0, 2.0]), np.zeros(shape), kwargs)
    with pytest.raises(ValueError):
        reference.sigmoid_focal_loss(case.input, case.target, **case.kwargs)
    impl, _ = torchvision_focal_loss()
    if impl is not None:
        assert check_same_rejection(case, impl, form="functional", dtype=FLOAT64, device=device) is ValueError
    ledger.record_example()


def _wrong_modulating_factor(x, y, alpha=0.25, gamma=2.0, reduction="none"):
    p = torch.sigmoid(x)  # (1 - p)^gamma: the factor of label 1, applied to label 0 as well
    return _finish(F.binary_cross_entropy_with_logits(x, y, reduction="none") * (1 - p) ** gamma, y, alpha, reduction)


def _swapped_alpha(x, y, alpha=0.25, gamma=2.0, reduction="none"):
    return _torch_focal(x, y, 1 - alpha if alpha >= 0 else alpha, gamma, reduction)


def _mean_over_positives(x, y, alpha=0.25, gamma=2.0, reduction="none"):
    loss = _torch_focal(x, y, alpha, gamma, "sum" if reduction == "mean" else reduction)
    return loss / y.sum().clamp_min(1) if reduction == "mean" else loss  # RetinaNet's normaliser, not torchvision's


def _torch_focal(x, y, alpha, gamma, reduction):
    p = torch.sigmoid(x)
    miss = 1 - (p * y + (1 - p) * (1 - y))
    return _finish(F.binary_cross_entropy_with_logits(x, y, reduction="none") * miss**gamma, y, alpha, reduction)


def _finish(loss, y, alpha, reduction):
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


PLANTED = [_wrong_modulating_factor, _swapped_alpha, _mean_over_positives]


def _torch_focal_with_defaults(x, y, alpha=0.25, gamma=2.0, reduction="none"):
    return _torch_focal(x, y, alpha, gamma, reduction)


# Ordinary logits and labels, under the default arguments, a mean with alpha and an alpha on the other side.
PLANTED_CASES = [
    Case(
        LOSS,
        np.array([[-3.0, -0.5, 0.0, 0.5, 3.0], [2.0, -2.0, 1.0, -1.0, 0.25]]),
        np.array([[0.0, 1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0, 1.0]]),
        kwargs,
    )
    for kwargs in ({"reduction": "none"}, {"reduction": "mean", "alpha": 0.25}, {"gamma": 2.0, "alpha": 0.75})
]


@pytest.mark.parametrize("bug", PLANTED, ids=lambda bug: bug.__name__.strip("_"))
def test_focal_parity_catches_planted_bug(bug, device):
    """The focal parity check fails on a focal loss with a planted bug (a modulating factor that ignores the label,
    alpha applied to the wrong class, a mean over positives), and passes the same code without it."""
    for case in PLANTED_CASES:
        check_parity(case, _torch_focal_with_defaults, form="functional", dtype=FLOAT64, device=device)
    caught = []
    for case in PLANTED_CASES:
        try:
            check_parity(case, bug, form="functional", dtype=FLOAT64, device=device)
        except ParityError:
            caught.append(case.kwargs)
    assert caught, f"the planted bug {bug.__name__} passed the focal parity check on every case"
    ledger.record_example()
