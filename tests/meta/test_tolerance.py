"""The tolerance model's structure: what its bounds must grow with, where no finite bound exists, and which rule
says so."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import UnsatisfiedAssumption

import reference
import verification.tolerance
from verification import compare, ledger, registry, strategies
from verification.cases import Case, CaseBatch, to_torch
from verification.compare import (
    ParityError,
    assert_close,
    check_gradient_parity,
    check_parity,
    exclude_if_unbounded,
)
from verification.dtypes import FLOAT16, FLOAT32, FLOAT64, PARITY_DTYPES, Dtype
from verification.implementations import LOSSES, torch_impl
from verification.properties import output_shape
from verification.tolerance import identities
from verification.tolerance.summation import TENSOR_SUM
from verification.tolerance.tracked import (
    DIVISOR_NEAR_ZERO,
    EXP_OVERFLOW,
    LOG_NEAR_ZERO,
    NAN_TERM,
    NONFINITE_OPERAND,
    OVERFLOW,
    PARTIAL_SUM_OVERFLOW,
    POWER_BASE_NEAR_ZERO,
    RULES,
    TOO_MANY_TERMS,
    Tracked,
    first_rule,
    merge_rules,
    on_another_device_now,
    summing_on_another_device,
)


def test_cross_entropy_bound_grows_with_the_largest_logit():
    """Log-softmax cancels at the scale of max|logit|, so the bound scales with it, not with the loss value."""
    target = np.array([0])
    small = registry.error_bound("cross_entropy", FLOAT32, np.array([[1.0, 0.0, -1.0]]), target)
    large = registry.error_bound("cross_entropy", FLOAT32, np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0]]), target)
    assert large > 100 * small


def test_bce_with_logits_bound_grows_with_the_logit():
    """(1 - y) x - log sigmoid(x) cancels at the scale of |x| (x = -17, y = 0 is 4e-8 but errs by ulp(17))."""
    at = [
        registry.error_bound("binary_cross_entropy_with_logits", FLOAT32, np.array([x]), np.array([0.0]))
        for x in (-1.0, -17.0, -1e3)
    ]
    assert at[0] < at[1] < at[2]
    assert at[1] > 17 * FLOAT32.unit_roundoff


def test_ignored_targets_must_be_exactly_zero():
    """An ignored position's loss is exactly 0 in any dtype: its bound is 0."""
    bound = registry.error_bound(
        "nll_loss", FLOAT32, np.array([[0.5, -2.0], [3.0, 1.0]]), np.array([1, -100]), reduction="none"
    )
    assert bound[1] == 0 and bound[0] > 0


def test_a_mean_over_a_cancelling_total_weight_has_no_finite_bound():
    """Weights 1 and -1 sum to 0 exactly here, but rounding could make them sum to anything small: no bound."""
    bound = registry.error_bound(
        "nll_loss", FLOAT64, np.array([[0.5, -2.0], [3.0, 1.0]]), np.array([0, 1]), weight=np.array([1.0, -1.0])
    )
    assert np.isinf(bound)


def test_a_result_near_the_overflow_threshold_has_no_finite_bound():
    """A float32 sum of 3e38 and 3e38 rounds to inf, so no finite bound describes it; in float64 it is ordinary."""
    logits, target = np.array([[-3e38, 0.0], [-3e38, 0.0]]), np.array([0, 0])
    in_float32 = registry.error_bound("nll_loss", FLOAT32, logits, target, reduction="sum")
    in_float64 = registry.error_bound("nll_loss", FLOAT64, logits, target, reduction="sum")
    assert np.isinf(in_float32) and np.isfinite(in_float64)


def test_the_bound_covers_the_reference_s_own_subnormal_rounding():
    """Found by the thorough profile: 0.5 x 5e-324 underflows to 0 in the float64 reference itself, so the
    model's absolute floor must count the reference's subnormal rounding as well as torch's."""
    logits = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 58.0, 0.0]])
    probabilities = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5e-324]])
    case = Case("cross_entropy", logits, probabilities, {"weight": np.array([1.0, 1.0, 0.5])})
    check_parity(case, torch_impl("cross_entropy", "functional"), form="functional", dtype=FLOAT64, device="cpu")


# --- where no finite bound holds: the rule that made it so ----------------------------------------------------------

# One case per rule (two for divisor_near_zero, which has two sources), each with the replay whose bound it makes
# infinite and the reference's value, as check_parity and check_gradient_parity pass them to exclude_if_unbounded.
WEIGHTS_THAT_CANCEL = {"weight": np.array([1.0, -1.0])}
UNBOUNDED_CASES = [
    # A float16 'mean' NLL whose class weights 1 and -1 cancel.
    pytest.param(
        DIVISOR_NEAR_ZERO,
        lambda: (
            registry.replay(
                "nll_loss", FLOAT16, np.array([[0.5, -2.0], [3.0, 1.0]]), np.array([0, 1]), **WEIGHTS_THAT_CANCEL
            ),
            reference.nll_loss(np.array([[0.5, -2.0], [3.0, 1.0]]), np.array([0, 1]), **WEIGHTS_THAT_CANCEL),
        ),
        id="divisor_near_zero-nll_mean",
    ),
    # Float16 BCE's gradient at p = 0, over max(p (1 - p), 1e-12).
    pytest.param(
        DIVISOR_NEAR_ZERO,
        lambda: (
            registry.gradient_replay(
                "binary_cross_entropy", FLOAT16, np.array([0.0]), np.array([0.0]), np.array([1.0]), reduction="none"
            ),
            registry.reference_gradient("binary_cross_entropy")(
                np.array([0.0]), np.array([0.0]), reduction="none", grad_output=np.array([1.0])
            ),
        ),
        id="divisor_near_zero-bce_gradient",
    ),
    # The log of a float32 softmax probability e^-1e4 that underflowed to 0.
    pytest.param(
        LOG_NEAR_ZERO,
        lambda: (
            identities.softmax_log_nll(FLOAT32, np.array([[0.0, -1e4]]), np.array([1]), reduction="none"),
            reference.cross_entropy(np.array([[0.0, -1e4]]), np.array([1]), reduction="none"),
        ),
        id="log_near_zero",
    ),
    # The focal gradient's (1 - p_t)^(gamma - 1) for gamma 0.5 at a saturated x = 20.
    pytest.param(
        POWER_BASE_NEAR_ZERO,
        lambda: (
            registry.gradient_replay(
                "sigmoid_focal_loss", FLOAT32, np.array([20.0]), np.array([1.0]), np.array([1.0]), gamma=0.5
            ),
            registry.reference_gradient("sigmoid_focal_loss")(
                np.array([20.0]), np.array([1.0]), gamma=0.5, grad_output=np.array([1.0])
            ),
        ),
        id="power_base_near_zero",
    ),
    # A KL log target of 710, e^710 past float64's range.
    pytest.param(
        EXP_OVERFLOW,
        lambda: (
            registry.replay("kl_div", FLOAT32, np.array([0.0]), np.array([710.0]), reduction="none", log_target=True),
            reference.kl_div(np.array([0.0]), np.array([710.0]), reduction="none", log_target=True),
        ),
        id="exp_overflow",
    ),
    # A float16 sum of 60000, 60000 and -60000 (the total, 60000, is finite).
    pytest.param(
        PARTIAL_SUM_OVERFLOW,
        lambda: (
            registry.replay(
                "nll_loss", FLOAT16, np.array([[-6e4, 0.0], [-6e4, 0.0], [6e4, 0.0]]), np.zeros(3, int), reduction="sum"
            ),
            reference.nll_loss(np.array([[-6e4, 0.0], [-6e4, 0.0], [6e4, 0.0]]), np.zeros(3, int), reduction="sum"),
        ),
        id="partial_sum_overflow",
    ),
    # Float16 BCEWithLogits at the largest float16 logit, 65504.
    pytest.param(
        OVERFLOW,
        lambda: (
            registry.replay(
                "binary_cross_entropy_with_logits", FLOAT16, np.array([65504.0]), np.array([0.0]), reduction="none"
            ),
            reference.binary_cross_entropy_with_logits(np.array([65504.0]), np.array([0.0]), reduction="none"),
        ),
        id="overflow",
    ),
    # A 'mean' KL with a negative target, whose log is NaN.
    pytest.param(
        NAN_TERM,
        lambda: (
            registry.replay("kl_div", FLOAT32, np.array([0.5, -1.0]), np.array([-0.5, 0.25]), reduction="mean"),
            reference.kl_div(np.array([0.5, -1.0]), np.array([-0.5, 0.25]), reduction="mean"),
        ),
        id="nan_term",
    ),
    # A 'mean' cross-entropy with label smoothing over a total weight of exactly 0: the smoothing term is exactly
    # inf, times a rounded constant.
    pytest.param(
        NONFINITE_OPERAND,
        lambda: (
            registry.replay(
                "cross_entropy",
                FLOAT32,
                np.array([1.0, 2.0]),
                np.array(0),
                weight=np.array([0.0, 1.0]),
                label_smoothing=0.5,
            ),
            reference.cross_entropy(
                np.array([1.0, 2.0]), np.array(0), weight=np.array([0.0, 1.0]), label_smoothing=0.5
            ),
        ),
        id="nonfinite_operand",
    ),
    # 3000 float16 ones summed in any order in float16 (an adapter's SUMS_IN_ANY_ORDER): gamma_2999 bounds nothing.
    pytest.param(
        TOO_MANY_TERMS,
        lambda: (Tracked.exact(np.ones((3000, 1)), FLOAT16).sum(), np.array([3000.0])),
        id="too_many_terms",
    ),
]


def test_every_rule_has_a_case_that_triggers_it():
    """UNBOUNDED_CASES covers every rule of the table."""
    assert {param.values[0] for param in UNBOUNDED_CASES} == set(RULES)


@pytest.mark.parametrize(("code", "unbounded"), UNBOUNDED_CASES)
@settings(max_examples=1)
@given(nothing=st.none())
def test_each_rule_names_the_exclusion_of_a_case_it_makes_unbounded(nothing, code, unbounded):
    """For a case that triggers each rule, every infinite element of the replay's bound records that rule, and
    exclude_if_unbounded drops the example counted in the ledger under "no finite bound: " and that rule's reason,
    and under no other reason."""
    replayed, want = unbounded()
    infinite = np.isinf(replayed.error)
    assert np.any(infinite)
    assert set(np.unique(replayed.unbounded_by[infinite])) == {code}
    with pytest.raises(UnsatisfiedAssumption):
        exclude_if_unbounded(replayed.error, np.asarray(want), replayed.unbounded_by)
    assert set(ledger.RECORDS[ledger.current_test()].excluded) == {RULES[code].exclusion}
    assert RULES[code].exclusion == f"no finite bound: {RULES[code].reason}"


@settings(max_examples=1)
@given(nothing=st.none())
def test_check_parity_and_check_gradient_parity_exclude_under_the_rule_s_reason(nothing):
    """check_parity and check_gradient_parity exclude a float16 'mean' NLL whose class weights cancel under
    divisor_near_zero's reason: both divide by the total weight, 1 + (-1), which rounding could move anywhere."""
    case = Case("nll_loss", np.array([[0.5, -2.0], [3.0, 1.0]]), np.array([0, 1]), WEIGHTS_THAT_CANCEL)
    impl = torch_impl("nll_loss", "functional")
    with pytest.raises(UnsatisfiedAssumption):
        check_parity(case, impl, form="functional", dtype=FLOAT16, device="cpu")
    with pytest.raises(UnsatisfiedAssumption):
        check_gradient_parity(case, np.asarray(1.0), impl, form="functional", dtype=FLOAT16, device="cpu")
    excluded = ledger.RECORDS[ledger.current_test()].excluded
    assert dict(excluded) == {RULES[DIVISOR_NEAR_ZERO].exclusion: 2}


def test_an_operation_on_an_unbounded_operand_keeps_the_operand_s_rule():
    """The rule is the root cause: a 'mean' KL over a term whose e^710 overflows float64 stays exp_overflow through
    the sum and the division (not partial_sum_overflow, overflow or divisor_near_zero), and so does e^710 times an
    exact 0 (log target 710 against input 710; 0 * inf is NaN in torch)."""
    mean = registry.replay(
        "kl_div", FLOAT16, np.array([0.0, 1.0]), np.array([710.0, 1.0]), reduction="mean", log_target=True
    )
    times_zero = registry.replay(
        "kl_div", FLOAT16, np.array([710.0]), np.array([710.0]), reduction="none", log_target=True
    )
    for replayed in (mean, times_zero):
        assert np.all(np.isinf(replayed.error)) and np.all(replayed.unbounded_by == EXP_OVERFLOW)


def test_where_elements_are_unbounded_under_several_rules_the_lowest_code_is_reported():
    """A float16 KL (log targets, reduction 'none') whose first element's e^710 overflows and whose second's
    e^11 (11 + 65504) passes float16's largest value reports exp_overflow, the lower of the two codes; merging the
    rules of two bounds keeps the lowest code per element, and a finite element has none."""
    replayed = registry.replay(
        "kl_div",
        FLOAT16,
        np.array([0.0, -65504.0, 0.0]),
        np.array([710.0, 11.0, 1.0]),
        reduction="none",
        log_target=True,
    )
    assert list(replayed.unbounded_by) == [EXP_OVERFLOW, OVERFLOW, 0]
    assert first_rule(replayed.error, replayed.unbounded_by) is RULES[EXP_OVERFLOW]
    merged = merge_rules(np.array([OVERFLOW, 0, EXP_OVERFLOW, 0]), np.array([DIVISOR_NEAR_ZERO, NAN_TERM, 0, 0]))
    assert list(merged) == [DIVISOR_NEAR_ZERO, NAN_TERM, EXP_OVERFLOW, 0]
    assert first_rule(np.array([1.0, 2.0]), np.array([0, 0])) is None


def test_the_tolerance_docstring_names_every_rule():
    """The tolerance package's docstring, which every evidence report quotes, names each rule."""
    doc = verification.tolerance.__doc__ or ""
    assert [rule.name for rule in RULES.values() if f"``{rule.name}``" not in doc] == []


@pytest.mark.parametrize(
    "entry",
    [entry for entry in registry.LOSSES if entry.present("cases") and entry.present("gradient_replay")],
    ids=str,
)
@given(data=st.data())
def test_a_rule_is_recorded_exactly_where_a_bound_is_not_finite(data, entry):
    """For every loss's cases in every dtype, forward and gradient, an element's bound is infinite (or NaN) exactly
    where the replay records a rule: no unbounded element goes unexplained, and no bounded one carries a rule."""
    dtype = data.draw(st.sampled_from(PARITY_DTYPES), label="dtype")
    case = data.draw(entry.cases(dtype), label="case")
    replayed = registry.replay(case.loss, dtype, case.input, case.target, **case.kwargs)
    grad_output = data.draw(strategies.grad_outputs(dtype, np.shape(replayed.value)), label="grad_output")
    gradient = registry.gradient_replay(case.loss, dtype, case.input, case.target, grad_output, **case.kwargs)
    for tracked in (replayed, gradient):
        unexplained = ~np.isfinite(tracked.error) != (tracked.unbounded_by != 0)
        assert not np.any(unexplained), case.describe()
        assert set(np.unique(tracked.unbounded_by)) <= {0, *RULES}
    ledger.record_example()


# --- tightness: the bound is close to the error torch really makes ---------------------------------------------------

TIGHTNESS_SAMPLE = 20_000  # elements per loss and dtype, drawn once from a fixed seed


def _well_conditioned_sample(loss: str, dtype: Dtype) -> tuple[np.ndarray, np.ndarray, dict]:
    """Ordinary inputs, element-wise (reduction 'none'): logits in [-12, 12], probabilities in [0.001, 0.999],
    targets in [0, 1], class weights in [0.1, 4], 10 classes; for KL, log q in [-8, 0] and p in [0.001, 1]."""
    rng = np.random.default_rng(20261129)
    n, classes = TIGHTNESS_SAMPLE, 10
    if loss == "binary_cross_entropy_with_logits":
        return dtype.snap(rng.uniform(-12, 12, n)), dtype.snap(rng.uniform(0, 1, n)), {"reduction": "none"}
    if loss == "binary_cross_entropy":
        return dtype.snap(rng.uniform(0.001, 0.999, n)), dtype.snap(rng.uniform(0, 1, n)), {"reduction": "none"}
    if loss == "kl_div":
        return dtype.snap(rng.uniform(-8, 0, n)), dtype.snap(rng.uniform(0.001, 1, n)), {"reduction": "none"}
    logits = dtype.snap(rng.uniform(-8, 8, (n // classes, classes)))
    weight = dtype.snap(rng.uniform(0.1, 4, classes))
    return logits, rng.integers(0, classes, n // classes), {"reduction": "none", "weight": weight}


def _measured(loss: str, dtype: Dtype):
    input, target, kwargs = _well_conditioned_sample(loss, dtype)
    want = getattr(reference, loss)(input, target, **kwargs)
    bound = registry.error_bound(loss, dtype, input, target, **kwargs)
    x, t, torch_kwargs = to_torch(Case(loss, input, target, kwargs), dtype, "cpu")
    got = torch_impl(loss, "functional")(x, t, **torch_kwargs)
    return want, bound, got


every_loss_and_dtype = pytest.mark.parametrize(
    ("loss", "dtype"), [(loss, dtype) for loss in LOSSES for dtype in PARITY_DTYPES], ids=lambda v: str(v)
)


@every_loss_and_dtype
def test_the_bound_is_a_few_ulps_on_ordinary_inputs(loss, dtype):
    """On ordinary inputs the median bound is at most 10 ulps of the result (20 in float64, where the reference's own
    rounding counts as much as torch's): each loss is a handful of correctly rounded operations and at most two
    transcendental calls at 4u each, so about 10u relative, and an ulp is between u and 2u relative."""
    want, bound, _ = _measured(loss, dtype)
    in_ulps = bound / dtype.ulps(want)
    limit = 20 if dtype == FLOAT64 else 10
    assert np.median(in_ulps) <= limit, f"median bound {np.median(in_ulps):.3g} ulps"


@every_loss_and_dtype
def test_torch_reaches_a_sizeable_fraction_of_the_bound(loss, dtype):
    """On 20,000 ordinary inputs torch's largest error is at least 1/8 of its bound there: the bound is not padded.

    In float64 the error is measured against the exact value (the mpmath oracle), not the float64 reference, which
    rounds too: NLL's single product is rounded identically by both everywhere, and where torch and NumPy call the
    same libm (a CPU without AVX-512, on which NumPy has no vectorised float64 log) so are BCE's and KL's few
    operations, so that against the reference their error is exactly 0."""
    want, bound, got = _measured(loss, dtype)
    computed = got.double().numpy()
    assert (np.abs(computed - want) / bound).max() <= 1, "torch stays within its bound"
    if dtype == FLOAT64:
        input, target, kwargs = _well_conditioned_sample(loss, dtype)
        error = registry.info(loss).oracle(input, target, **kwargs).error_of(computed)
    else:
        error = np.abs(computed - want)
    ratio = error / bound
    assert ratio.max() <= 1, "torch stays within its bound of the exact value"
    assert ratio.max() >= 1 / 8, f"the largest error is only {ratio.max():.3g} of the bound"


@every_loss_and_dtype
def test_a_result_moved_a_few_ulps_beyond_the_bound_fails(loss, dtype):
    """Moving one element of torch's result 2 ulps beyond its bound (away from the reference) fails the comparison,
    at any of 20 positions: the bound is what the comparison enforces, element by element."""
    want, bound, got = _measured(loss, dtype)
    rng = np.random.default_rng(0)
    for position in rng.choice(want.size, 20, replace=False):
        moved = got.double().numpy().copy()
        direction = 1.0 if moved[position] >= want[position] else -1.0
        moved[position] = want[position] + direction * (bound[position] + 2 * dtype.ulp(float(want[position])))
        moved_in_dtype = torch.as_tensor(moved).to(dtype.torch)
        with pytest.raises(ParityError, match="exceeds the tolerance model's bound"):
            assert_close(moved_in_dtype, want, bound, what="moved", dtype=dtype, repro="")


# --- batches: a replay of K cases bounds each as a replay of that case alone ---------------------------------------

BATCH_EQUIVALENCE_BUDGET = settings(max_examples=max(10, settings.default.max_examples // 5))


def _identical(batched, alone) -> bool:
    return all(
        np.array_equal(getattr(batched, part), getattr(alone, part), equal_nan=True)
        and np.shape(getattr(batched, part)) == np.shape(getattr(alone, part))
        for part in ("value", "error", "unbounded_by")
    )


@BATCH_EQUIVALENCE_BUDGET
@pytest.mark.parametrize("variant", registry.gradient_variants(), ids=lambda v: f"{v.loss}-{v.name}")
@given(data=st.data())
def test_a_batch_replay_bounds_each_case_bit_for_bit_as_its_own_replay(data, variant):
    """The parity properties bound a batch of cases in one replay (the cases along its arrays' last axis): for every
    case, forward and gradient, in every dtype, the value, the bound and the rule codes are those of that case
    replayed alone, to the bit (each sum adds a case's terms in one order whatever the batch)."""
    dtype = data.draw(st.sampled_from(PARITY_DTYPES), label="dtype")
    batch = data.draw(variant.batches(dtype, 4), label="cases")
    shape = (len(batch), *output_shape(batch.case(0)))
    grad_outputs = data.draw(strategies.grad_outputs(dtype, shape), label="grad_outputs")
    forward = registry.replay_batch(batch.loss, dtype, batch)
    backward = registry.gradient_replay_batch(batch.loss, dtype, batch, grad_outputs)
    for k in range(len(batch)):
        case = batch.case(k)
        alone = registry.replay(case.loss, dtype, case.input, case.target, **case.kwargs)
        assert _identical(forward.case(k), alone), f"forward, case {k}: {case.describe()}"
        gradient = registry.gradient_replay(case.loss, dtype, case.input, case.target, grad_outputs[k], **case.kwargs)
        assert _identical(backward.case(k), gradient), f"gradient, case {k}: {case.describe()}"
    ledger.record_example()


def test_the_batch_equivalence_check_sees_a_case_bounded_with_another_cases_values():
    """The comparison above has power: a batch whose cases were swapped is told apart from the cases alone."""
    case = Case("cross_entropy", np.array([[1.0, 0.0, -1.0]]), np.array([0]), {})
    other = Case("cross_entropy", np.array([[9.0, 0.0, -9.0]]), np.array([2]), {})
    batch = CaseBatch("cross_entropy", np.stack([other.input, case.input]), np.stack([other.target, case.target]))
    replayed = registry.replay_batch("cross_entropy", FLOAT32, batch)
    alone = registry.replay(case.loss, FLOAT32, case.input, case.target)
    assert _identical(replayed.case(1), alone)
    assert not _identical(replayed.case(0), alone)


# Sums at large sizes: exact terms (KLDiv with a target of 1 gives -x exactly, NLL gives -x[t]), so that the error
# torch makes is its summation's alone, measured against the exact sum (math.fsum), scaled so that the float16 sum
# stays finite.
LARGE_SUM_SIZES = (2**15 + 1, 2**16 + 3, 2**18, 2**20 + 1)
# The least fraction of its bound torch's largest error over those sizes reaches, per path: where the float32
# result of Tensor.sum is rounded to float16 or bfloat16, that last rounding dominates both the error and the bound;
# elsewhere the bound is the worst case of a tree of about a hundred additions (gamma_h), which a sum of random
# roundings reaches only in part (a few thousandths to a few hundredths, measured on torch 2.13). float64's
# Tensor.sum of these terms rounds to the exact sum's nearest float64 at every size: nothing to observe there.
LARGE_SUM_FLOOR = {("kl_div", "float16"): 1 / 32, ("kl_div", "bfloat16"): 1 / 32, ("kl_div", "float64"): 0.0}


@pytest.mark.parametrize("loss", ["kl_div", "nll_loss"], ids=["Tensor.sum", "NLL's cascade"])
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
def test_torch_s_sums_are_within_their_bounds_and_reach_part_of_them_at_large_sizes(loss, dtype):
    """Sums of 2^15 + 1 to 2^20 + 1 exact terms on torch's two summation paths: torch stays within the bound at each
    size, and its largest error reaches at least the stated fraction of the bound (1/32 where a float16 or
    bfloat16 result is rounded last, 1/1000 elsewhere, none for float64's Tensor.sum, exact here): the bound follows
    the accumulator, not any order."""
    rng = np.random.default_rng(20261203)
    ratios = []
    for n in LARGE_SUM_SIZES:
        x = dtype.snap(rng.uniform(0.5, 1.0, n) * (2048.0 / n))
        if loss == "kl_div":
            input, target = -x, np.ones(n)
        else:
            input, target = -x.reshape(n, 1), np.zeros(n, dtype=np.int64)
        case = Case(loss, input, target, {"reduction": "sum"})
        want = math.fsum(
            x
        )  # the loss of -x is x: exact, rounded once: the float64 reference errs as a float64 torch does
        bound = float(registry.error_bound(loss, dtype, input, target, reduction="sum"))
        x_t, t_t, kwargs = to_torch(case, dtype, "cpu")
        got = float(torch_impl(loss, "functional")(x_t, t_t, **kwargs))
        ratios.append(abs(got - want) / bound)
    ledger.record_measurement("error_over_bound_by_size", dict(zip(map(str, LARGE_SUM_SIZES), ratios, strict=True)))
    assert max(ratios) <= 1, ratios
    assert max(ratios) >= LARGE_SUM_FLOOR.get((loss, str(dtype)), 1 / 1000), ratios


def test_on_another_device_each_sum_is_bounded_for_any_order_of_its_additions():
    """The CPU kernels' trees of additions are not a GPU's: on another device (as the comparison sets for any device
    but the CPU) each path keeps its accumulator, float32 for a float16 Tensor.sum, but takes height n - 1. Its
    bound lies above the CPU path's and below the any-order model's in float16, which bounds nothing past 2048
    terms."""
    terms = Tracked.exact(np.full((10000, 1), 0.5), FLOAT16)
    cpu = float(terms.sum(order=TENSOR_SUM).error[0])
    with summing_on_another_device():
        other = float(terms.sum(order=TENSOR_SUM).error[0])
    in_float16 = float(terms.sum().error[0])
    assert cpu < other < in_float16 == math.inf
    impl = torch_impl("nll_loss", "functional")
    with compare._arithmetic(impl, FLOAT16, "cuda:0"):
        assert on_another_device_now()
    with compare._arithmetic(impl, FLOAT16, "cpu"):
        assert not on_another_device_now()
