"""Gradients: torch's autograd against the reference's analytic derivatives, in every dtype; torch's own
gradcheck and gradgradcheck in float64; finiteness at extreme inputs; where torch's gradient is not the
derivative of its loss, a named divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from verification import divergences, ledger, registry, strategies
from verification.cases import Case, laid_out, to_torch
from verification.compare import check_gradient_parity
from verification.dtypes import FLOAT64, PARITY_DTYPES, Dtype
from verification.implementations import FORMS, known_gradient_divergence, torch_impl
from verification.properties import (
    CASES_PER_EXAMPLE,
    batch_gradients_match_reference,
    exclude_if_known_gradient_divergence,
    output_shape,
)
from verification.registry import ParityVariant

# Each parity variant's gradient property, as the registry derives it (BCE draws only where p(1 - p) >= 1e-12).
GRADIENT_VARIANTS = registry.gradient_variants()


# The module forms build the same autograd graph as the functional ones once their arguments reach the
# functional call, and that plumbing is what the forward parity properties check in both forms: the
# gradient properties run torch in functional form (an --impl runs in the one form it has).
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("variant", GRADIENT_VARIANTS, ids=lambda v: f"{v.loss}-{v.name}")
@given(data=st.data())
def test_gradient_matches_reference(data, variant, dtype, device, implementation_in_its_form):
    """Autograd's gradient equals the reference's analytic gradient within the tolerance model (claims: the variant)."""
    impl, form = implementation_in_its_form(variant.loss)
    batch = data.draw(variant.batches(dtype, CASES_PER_EXAMPLE), label="cases")
    shape = (len(batch), *output_shape(batch.case(0)))  # one shape and reduction: one output shape for every case
    grad_outputs = data.draw(strategies.grad_outputs(dtype, shape), label="grad_outputs")
    batch_gradients_match_reference(batch, grad_outputs, impl, form=form, dtype=dtype, device=device)


# A few large examples per property, as for the values (tests/test_parity.py says why).
LARGE_BUDGET = settings(max_examples=max(2, settings.default.max_examples // 50))


@LARGE_BUDGET
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("variant", registry.large_gradient_variants(), ids=lambda v: f"{v.loss}-{v.name}")
@given(data=st.data())
def test_large_input_gradient_matches_reference(data, variant, dtype, device, implementation_in_its_form):
    """On inputs of up to millions of elements, at the sizes where torch's kernels change path, autograd's gradient
    equals the reference's analytic gradient within the tolerance model."""
    impl, form = implementation_in_its_form(variant.loss)
    batch = data.draw(variant.batches(dtype, 1), label="case")
    shape = (1, *output_shape(batch.case(0)))
    grad_outputs = data.draw(strategies.grad_outputs(dtype, shape), label="grad_outputs")
    batch_gradients_match_reference(batch, grad_outputs, impl, form=form, dtype=dtype, device=device)


# Every kept target weighs 0, so the mean's w[y] / W is 0 / 0. The derivative at the target is then undefined (NaN
# in torch and in the reference), but off the target it is 0 whatever W is: each position's loss reads its input
# at the target alone, so a reference that multiplied w[y] / W into every class would be wrong there.
# (One position, so that the model's total weight is an exact 0: a sum of two exact zeros may carry eta.)
ZERO_TOTAL_WEIGHT = Case("nll_loss", np.zeros(3), np.array(0), {"weight": np.array([0.0, 1.0, 1.0])})


@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
def test_nll_gradient_is_0_off_the_target_where_the_total_weight_is_0(dtype, device, implementation_in_its_form):
    """NLL's gradient for a 'mean' over a total weight of 0, with grad_output 0 (as the soak drew it): NaN at the
    target, exactly 0 at every other class. (A non-zero grad_output makes torch's grad_output / W infinite, and
    the tolerance model then leaves 0 * inf without a bound.)"""
    impl, form = implementation_in_its_form("nll_loss")
    divergence = known_gradient_divergence(impl, divergences.none, dtype)(ZERO_TOTAL_WEIGHT)
    if divergence:  # an --impl adapter's own named divergence
        pytest.skip(divergence)
    check_gradient_parity(ZERO_TOTAL_WEIGHT, np.asarray(0.0), impl, form=form, dtype=dtype, device=device)


# --- torch's own consistency checks, in float64 ---------------------------------------------------

# gradcheck perturbs every input element: a handful of small cases per loss is its budget.
GRADCHECK_BUDGET = settings(max_examples=max(10, settings.default.max_examples // 10))

# gradcheck's tolerances, and what they can judge. A central difference (f(x + eps) - f(x - eps)) / 2 eps carries
# torch's rounding error in f divided by eps, where f is the loss for gradcheck and its gradient for gradgradcheck
# (whose random grad_outputs lie in [-1, 1]). Where the tolerance model's bound on that rounding error, over eps,
# exceeds the absolute tolerance, an element whose true derivative is about 0 fails on rounding noise alone: for
# example a 'mean' over weights that nearly cancel, making the loss 1e214, or a tiny total weight dividing
# log-sum-exp(x) - x_t, which cancels from 18 to 3e-8.
GRADCHECK_EPS, GRADCHECK_ATOL, GRADCHECK_RTOL = 1e-6, 1e-5, 1e-3


def _smooth_case(variant: ParityVariant, dtype: Dtype) -> st.SearchStrategy[Case]:
    """Cases where the loss is smooth around the input and of moderate size: logits within |20| (finite differences
    of a saturated sigmoid or softmax mean nothing), probabilities inside [0.01, 0.99] (away from the clamp), KL log
    targets at most 5."""

    def moderate(case: Case) -> Case:
        if case.loss == "binary_cross_entropy":
            return Case(case.loss, np.clip(case.input, 0.01, 0.99), case.target, case.kwargs)
        target = case.target
        if case.loss == "kl_div" and case.kwargs.get("log_target"):
            # e^13 already makes the loss so large that a finite difference at eps = 1e-6 loses the slope.
            target = np.clip(target, -20.0, 5.0)
        return Case(case.loss, np.clip(case.input, -20.0, 20.0), target, case.kwargs)

    return variant.cases(dtype).map(moderate)


@GRADCHECK_BUDGET
@pytest.mark.parametrize("variant", registry.parity_variants(), ids=lambda v: f"{v.loss}-{v.name}")
@given(data=st.data())
def test_torch_gradients_pass_gradcheck_and_gradgradcheck(data, variant, device):
    """torch.autograd.gradcheck and gradgradcheck pass in float64: torch's analytic first and second derivatives
    agree with its own finite differences."""
    case = data.draw(_smooth_case(variant, FLOAT64), label="case")
    exclude_if_known_gradient_divergence(case)
    try:
        want = registry.info(case.loss).reference(case.input, case.target, **case.kwargs)
    except Exception:
        ledger.exclude("the reference rejects the call (error parity is checked in test_rejections.py)")
    if not np.all(np.isfinite(want)) or np.size(want) == 0 or case.input.size == 0:
        ledger.exclude("a NaN, infinite or empty result has no derivative to check")
    rounding = max(
        np.max(registry.error_bound(case.loss, FLOAT64, case.input, case.target, **case.kwargs)),
        np.max(
            registry.gradient_error_bound(
                case.loss, FLOAT64, case.input, case.target, np.ones(np.shape(want)), **case.kwargs
            )
        ),
    )
    if not rounding / GRADCHECK_EPS <= GRADCHECK_ATOL:
        ledger.exclude(
            f"torch's rounding error in the loss or its gradient, over eps = {GRADCHECK_EPS:g}, may exceed "
            f"gradcheck's absolute tolerance {GRADCHECK_ATOL:g}: a finite difference there measures rounding"
        )
    input, target, kwargs = to_torch(case, FLOAT64, device)
    input.requires_grad_(True)
    loss = torch_impl(case.loss, "functional")

    def f(x: torch.Tensor) -> torch.Tensor:
        return loss(x, target, **kwargs)

    tolerances = dict(eps=GRADCHECK_EPS, atol=GRADCHECK_ATOL, rtol=GRADCHECK_RTOL)
    # gradgradcheck draws random grad_outputs from torch's global generator: seeded from the example, so that a
    # failure reproduces whatever ran before it in the process.
    seed = data.draw(st.integers(0, 2**32 - 1), label="torch seed for gradgradcheck's grad_outputs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        assert torch.autograd.gradcheck(f, (input,), **tolerances), case.describe()
        assert torch.autograd.gradgradcheck(f, (input,), **tolerances), case.describe()
    ledger.record_example()


# --- finiteness at extreme inputs -----------------------------------------------------------------


def _extreme_values(dtype: Dtype) -> list[float]:
    return [0.0, 1e4, -1e4, dtype.largest, -dtype.largest, dtype.largest / 2, -dtype.largest / 2, 88.72, -88.72]


@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("loss", ["binary_cross_entropy_with_logits", "cross_entropy"])
@given(data=st.data())
def test_gradients_of_logit_losses_are_finite_at_any_finite_logit(data, loss, dtype, device):
    """BCEWithLogits and CrossEntropy take logits anywhere in the dtype's finite range, up to its largest value,
    and their gradients stay finite there (as the reference's do: without weights no element exceeds 1 in size)."""
    shape = data.draw(st.sampled_from([(3,), (2, 3)]), label="shape")
    x = np.array(data.draw(st.lists(st.sampled_from(_extreme_values(dtype)), min_size=6, max_size=6)), dtype=float)
    x = dtype.snap(x[: int(np.prod(shape))].reshape(shape))
    reduction = data.draw(st.sampled_from(strategies.REDUCTIONS), label="reduction")
    if loss == "cross_entropy":
        t = np.zeros(shape[:1] if len(shape) == 2 else (), dtype=np.int64)
    else:
        t = data.draw(strategies.float_arrays(dtype, shape, strategies.PROBABILITIES), label="t")
    case = Case(loss, x, t, {"reduction": reduction})
    want = registry.reference_gradient(loss)(x, t, reduction=reduction)
    assert np.all(np.isfinite(want)), "the reference's gradient is finite"
    input, target, kwargs = to_torch(case, dtype, device)
    input.requires_grad_(True)
    torch_impl(loss, "functional")(input, target, **kwargs).sum().backward()
    grad = input.grad.to("cpu", torch.float64).numpy()
    assert np.all(np.isfinite(grad)), f"{case.describe()} with x = {x.tolist()} in {dtype}: torch's gradient {grad}"
    ledger.record_example()


# --- where torch's gradient is not the derivative ------------------------------------------------


@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
def test_bce_gradient_is_capped_where_p_times_1_minus_p_is_below_1e_12(dtype, device):
    """Named divergence (aten's binary_cross_entropy_backward, EPSILON = 1e-12): BCELoss's gradient is
    w (p - y) / max(p (1 - p), eps) with eps = 1e-12 held as a float32 constant and rounded to the dtype, so where
    p (1 - p) < eps it is capped, and at p = 0 or 1 it is not the derivative of the clamped loss (1 or -1 where
    y = p, 0 where the clamp holds): float64, float32 and bfloat16 give 0 and -+1e12 there; in float16 eps rounds
    to 0 and the gradient is NaN (y = p) or -+inf. Elsewhere it is the derivative."""
    eps = float(dtype.snap(np.array(float(np.float32(1e-12)))))
    tiny = float(dtype.snap(np.array(1e-13))) if dtype.smallest_subnormal < 1e-13 else 0.0
    p = np.array([0.0, 1.0, 0.0, 1.0, tiny, 0.5])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 0.25])
    xt = torch.as_tensor(p, dtype=dtype.torch, device=device).requires_grad_(True)
    target = torch.as_tensor(y, dtype=dtype.torch, device=device)
    torch.nn.functional.binary_cross_entropy(xt, target, reduction="sum").backward()
    got = xt.grad.to("cpu", torch.float64).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        capped = (p - y) / np.maximum(p * (1 - p), eps)
    want = reference.gradients.binary_cross_entropy_grad(p, y, reduction="sum")
    np.testing.assert_array_equal(want[:4], [1.0, -1.0, 0.0, 0.0], err_msg="the derivative of the clamped loss")
    np.testing.assert_allclose(got[:4], capped[:4], rtol=4 * dtype.unit_roundoff, err_msg="torch's capped gradient")
    assert not np.allclose(got[:4], want[:4]), "at p = 0 and p = 1 torch's gradient is not the derivative"
    if tiny:
        np.testing.assert_allclose(got[4], capped[4], rtol=8 * dtype.unit_roundoff)
        assert abs(want[4] - got[4]) > 0.5 * abs(want[4]), "below the cap torch's gradient is far from the derivative"
    np.testing.assert_allclose(got[5], want[5], rtol=8 * dtype.unit_roundoff)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("memory", ["transposed", "channels last"])
def test_nll_backward_of_a_4d_input_with_permuted_strides_raises(memory, form, device):
    """Named divergence (pytorch#175084): NLLLoss computes a 4-D input whose strides are permuted (a transposed
    buffer, or torch's channels-last format) but its backward raises 'grad_input must be contiguous', while the
    same values laid out contiguously have the reference's gradient; a 3-D input with permuted strides and a
    cross-entropy over the same 4-D input do too."""
    x = -np.arange(1.0, 13.0).reshape(2, 3, 1, 2) / 4
    t = np.array([[[0, 2]], [[1, 0]]])
    impl = torch_impl("nll_loss", form)
    base = torch.as_tensor(x, device=device)
    permuted = (
        laid_out(base, "transposed") if memory == "transposed" else base.contiguous(memory_format=torch.channels_last)
    )
    assert not permuted.is_contiguous()
    permuted.requires_grad_(True)
    value = impl(permuted, torch.as_tensor(t, device=device))
    assert value.item() == pytest.approx(float(reference.nll_loss(x, t)), rel=1e-15)
    with pytest.raises(RuntimeError, match="grad_input must be contiguous"):
        value.backward()
    contiguous = base.clone().requires_grad_(True)
    impl(contiguous, torch.as_tensor(t, device=device)).backward()
    want = registry.reference_gradient("nll_loss")(x, t)
    np.testing.assert_allclose(contiguous.grad.cpu().numpy(), want, rtol=1e-15, atol=1e-16)
    three_d = laid_out(torch.as_tensor(x.reshape(2, 3, 2), device=device), "transposed").requires_grad_(True)
    impl(three_d, torch.as_tensor(t.reshape(2, 2), device=device)).backward()
    np.testing.assert_allclose(three_d.grad.cpu().numpy(), want.reshape(2, 3, 2), rtol=1e-15, atol=1e-16)
    crossed = laid_out(torch.as_tensor(x, device=device), "transposed").requires_grad_(True)
    torch_impl("cross_entropy", form)(crossed, torch.as_tensor(t, device=device)).backward()
    assert crossed.grad is not None


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("loss", ["nll_loss", "cross_entropy"])
def test_unbatched_input_with_target_of_shape_1_has_no_backward(loss, form, device):
    """Named divergence (related: pytorch#157420): NLLLoss and CrossEntropyLoss compute an unbatched input (C,) with
    a class-index target of shape (1,), but the backward pass raises 'size mismatch'; the same call with a target of
    shape () has the reference's gradient."""
    x = np.array([0.5, -1.0, 2.0])
    impl = torch_impl(loss, form)
    xt = torch.as_tensor(x, device=device).requires_grad_(True)
    value = impl(xt, torch.tensor([1], device=device))
    assert value.item() == pytest.approx(float(getattr(reference, loss)(x, np.array([1]))), rel=1e-15)
    with pytest.raises(RuntimeError, match="size mismatch"):
        value.backward()
    impl(xt, torch.tensor(1, device=device)).backward()
    np.testing.assert_allclose(
        xt.grad.cpu().numpy(), registry.reference_gradient(loss)(x, np.array(1)), rtol=1e-15, atol=1e-16
    )
