"""The article's identities, confirmed where they hold and mapped where they break.

Each identity is checked between two torch computations of the same exact quantity, so the
bound is the sum of both computations' tolerance-model bounds (plus, for compositions, the
sensitivity to the intermediate rounding). Where an identity breaks, the break is asserted
as it is, so that a change in torch's behaviour fails loudly.
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
from verification.compare import assert_close, exclude_if_unbounded
from verification.dtypes import PARITY_DTYPES, Dtype
from verification.properties import exclude_if_known_divergence
from verification.reproducer import expressions_snippet
from verification.tolerance import identities
from verification.tolerance.tracked import merge_rules

dtypes = pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


# --- BCEWithLogits == Sigmoid + BCE ----------------------------------------------------------


def unsaturated_logit_range(dtype: Dtype) -> tuple[float, float]:
    """Logits where sigmoid(x) is a normal number below 1 in ``dtype`` and BCE's -100 clamp is idle.

    Lower end: sigmoid(x) ~ e^x must stay normal (x > log(smallest normal)) and log sigmoid(x) ~ x
    must stay above the clamp at -100. Upper end: 1 - sigmoid(x) ~ e^-x must stay above 4u, so
    sigmoid(x) rounds below 1 with room for its own rounding error.
    """
    low = max(math.log(dtype.smallest_normal), reference.LOG_CLAMP) + 1.0
    high = math.log(1.0 / (4.0 * dtype.unit_roundoff))
    return low, high


def saturated_logit_threshold(dtype: Dtype) -> float:
    """Above this, 1 - sigmoid(x) < u / 4: sigmoid(x) rounds to exactly 1."""
    return math.log(4.0 / dtype.unit_roundoff)


@dtypes
@given(data=st.data())
def test_bce_with_logits_equals_sigmoid_then_bce_where_sigmoid_does_not_saturate(data, dtype, device):
    """Where sigmoid(x) does not saturate, BCE(sigmoid(x), y) equals BCEWithLogits(x, y) within both losses'
    bounds plus the rounding of sigmoid amplified by e^x."""
    low, high = unsaturated_logit_range(dtype)
    shape = data.draw(strategies.binary_shapes(), label="shape")
    x = data.draw(strategies.float_arrays(dtype, shape, strategies.within(low, high)), label="x")
    y = data.draw(strategies.float_arrays(dtype, shape, strategies.PROBABILITIES), label="y")
    case = Case("binary_cross_entropy_with_logits", x, y, {"reduction": "none"})
    xt, yt, _ = to_torch(case, dtype, device)

    p = torch.sigmoid(xt)
    composed = F.binary_cross_entropy(p, yt, reduction="none")
    with_logits = F.binary_cross_entropy_with_logits(xt, yt, reduction="none")
    bound = (
        registry.error_bound("binary_cross_entropy_with_logits", dtype, x, y, reduction="none")
        + registry.error_bound("binary_cross_entropy", dtype, _as_numpy(p), y, reduction="none")
        + identities.sigmoid_then_bce_sensitivity(dtype, x, y)
    )
    assert_close(
        composed,
        _as_numpy(with_logits),
        bound,
        dtype=dtype,
        what=f"BCE(sigmoid(x), y) against BCEWithLogits(x, y), {dtype} on {device}",
        repro=expressions_snippet(
            case,
            dtype,
            device,
            "F.binary_cross_entropy(torch.sigmoid(input), target, reduction='none')",
            "F.binary_cross_entropy_with_logits(input, target, reduction='none')",
        ),
    )


@dtypes
@given(data=st.data())
def test_sigmoid_then_bce_breaks_where_sigmoid_saturates(data, dtype, device):
    """Named divergence: where sigmoid(x) rounds to 1 (or 0), BCE(sigmoid(x), y) is pinned by the -100 clamp to
    100 w (1 - y) (or 100 w y) while BCEWithLogits keeps growing with |x|: the identity breaks by exactly that gap."""
    threshold = saturated_logit_threshold(dtype)
    underflow = math.log(dtype.smallest_subnormal) - 1.0
    side = data.draw(st.sampled_from(["rounds to 1", "rounds to 0"]), label="side")
    elements = strategies.within(threshold, 1e4) if side == "rounds to 1" else strategies.within(-1e4, underflow)
    shape = data.draw(strategies.binary_shapes(), label="shape")
    x = data.draw(strategies.float_arrays(dtype, shape, elements), label="x")
    y = data.draw(strategies.float_arrays(dtype, shape, strategies.PROBABILITIES), label="y")
    case = Case("binary_cross_entropy_with_logits", x, y, {"reduction": "none"})
    xt, yt, _ = to_torch(case, dtype, device)
    repro = expressions_snippet(
        case,
        dtype,
        device,
        "torch.sigmoid(input)",
        "F.binary_cross_entropy(torch.sigmoid(input), target, reduction='none')",
        "F.binary_cross_entropy_with_logits(input, target, reduction='none')",
    )

    p = torch.sigmoid(xt)
    saturated_value = 1.0 if side == "rounds to 1" else 0.0
    assert torch.all(p == saturated_value), f"sigmoid(x) did not saturate to {saturated_value}:\n{repro}"
    pinned = np.full(shape, saturated_value)
    composed = F.binary_cross_entropy(p, yt, reduction="none")
    assert_close(
        composed,
        reference.binary_cross_entropy(pinned, y, reduction="none"),
        registry.error_bound("binary_cross_entropy", dtype, pinned, y, reduction="none"),
        dtype=dtype,
        what=f"BCE(sigmoid(x), y) at saturated x against the clamped value, {dtype} on {device}",
        repro=repro,
    )
    gap = reference.binary_cross_entropy_with_logits(x, y, reduction="none") - reference.binary_cross_entropy(
        pinned, y, reduction="none"
    )
    gap_bound = registry.error_bound(
        "binary_cross_entropy_with_logits", dtype, x, y, reduction="none"
    ) + registry.error_bound("binary_cross_entropy", dtype, pinned, y, reduction="none")
    with_logits = F.binary_cross_entropy_with_logits(xt, yt, reduction="none")
    assert_close(
        with_logits - composed,
        gap,
        gap_bound,
        dtype=dtype,
        what=f"the identity's gap BCEWithLogits(x, y) - BCE(sigmoid(x), y) at saturated x, {dtype} on {device}",
        repro=repro,
    )


def logit_map_grid(dtype: Dtype) -> np.ndarray:
    """Logits from -800 to 800, dense where float32 and float64 saturate, snapped to the dtype."""
    grid = np.concatenate([np.linspace(-800, 800, 401), np.linspace(-120, 120, 481), np.linspace(-40, 40, 321)])
    return np.unique(dtype.snap(grid))


@dtypes
@pytest.mark.parametrize("y", [0.0, 1.0], ids=["y=0", "y=1"])
def test_sigmoid_then_bce_mapped_across_the_logit_range(y, dtype, device):
    """On a fixed grid of logits from -800 to 800, BCE(sigmoid(x), y) is always exactly BCE of the rounded sigmoid,
    and equals BCEWithLogits(x, y) within the identity's bound wherever sigmoid does not saturate; the gap is
    recorded for the report's map of where the identity holds and where saturation and the -100 clamp break it."""
    x = logit_map_grid(dtype)
    target = np.full_like(x, y)
    case = Case("binary_cross_entropy_with_logits", x, target, {"reduction": "none"})
    xt, yt, _ = to_torch(case, dtype, device)
    p = torch.sigmoid(xt)
    composed = F.binary_cross_entropy(p, yt, reduction="none")
    with_logits = F.binary_cross_entropy_with_logits(xt, yt, reduction="none")
    repro = expressions_snippet(
        case,
        dtype,
        device,
        "F.binary_cross_entropy(torch.sigmoid(input), target, reduction='none')",
        "F.binary_cross_entropy_with_logits(input, target, reduction='none')",
    )
    rounded = _as_numpy(p)
    assert_close(
        composed,
        reference.binary_cross_entropy(rounded, target, reduction="none"),
        registry.error_bound("binary_cross_entropy", dtype, rounded, target, reduction="none"),
        dtype=dtype,
        what=f"BCE of the rounded sigmoid on the logit grid, {dtype} on {device}",
        repro=repro,
    )
    low, high = unsaturated_logit_range(dtype)
    inside = (x >= low) & (x <= high)
    identity_bound = (
        registry.error_bound("binary_cross_entropy_with_logits", dtype, x, target, reduction="none")
        + registry.error_bound("binary_cross_entropy", dtype, rounded, target, reduction="none")
        + identities.sigmoid_then_bce_sensitivity(dtype, x, target)
    )
    gap = np.abs(_as_numpy(composed) - _as_numpy(with_logits))
    assert_close(
        composed[torch.as_tensor(inside)],
        _as_numpy(with_logits)[inside],
        identity_bound[inside],
        dtype=dtype,
        what=f"BCE(sigmoid(x), y) against BCEWithLogits(x, y) on the unsaturated grid, {dtype} on {device}",
        repro=repro,
    )
    # Relative to the loss, floored at the smallest normal: an absolute gap of 1e-300 where the loss is
    # 1e-300 says nothing, the relative one says the identity still holds there.
    scale = np.maximum(np.abs(_as_numpy(with_logits)), dtype.smallest_normal)
    ledger.record_series(
        f"sigmoid_bce_gap/{dtype}/y={y:g}",
        x=x.tolist(),
        relative_gap=(gap / scale).tolist(),
        relative_bound=np.where(inside, identity_bound / scale, np.nan).tolist(),
        domain=[low, high],
    )


# --- CrossEntropy == LogSoftmax + NLL == Softmax -> log -> NLL --------------------------------


def _index_case_without_smoothing(data, dtype: Dtype) -> Case:
    case = data.draw(registry.info("cross_entropy").cases(dtype, "index"), label="case")
    kwargs = {k: v for k, v in case.kwargs.items() if k != "label_smoothing"}
    return Case("cross_entropy", case.input, case.target, kwargs)


def _class_dim(x: np.ndarray) -> int:
    return 0 if x.ndim == 1 else 1


@dtypes
@given(data=st.data())
def test_cross_entropy_equals_nll_of_log_softmax(data, dtype, device):
    """CrossEntropyLoss(x, y) equals NLLLoss(LogSoftmax(x), y) within twice the cross-entropy bound, for every
    weight, ignore_index and reduction."""
    case = _index_case_without_smoothing(data, dtype)
    x, t, kwargs = to_torch(case, dtype, device)
    replayed = registry.replay("cross_entropy", dtype, case.input, case.target, **case.kwargs)
    bound = 2 * replayed.error
    composed = F.nll_loss(torch.log_softmax(x, _class_dim(case.input)), t, **kwargs)
    want = _as_numpy(F.cross_entropy(x, t, **kwargs))
    exclude_if_unbounded(bound, reference.cross_entropy(case.input, case.target, **case.kwargs), replayed.unbounded_by)
    assert_close(
        composed,
        want,
        bound,
        dtype=dtype,
        what=f"NLL(LogSoftmax(x)) against CrossEntropy(x) for {case.describe()}, {dtype} on {device}",
        repro=expressions_snippet(
            case,
            dtype,
            device,
            f"F.nll_loss(torch.log_softmax(input, {_class_dim(case.input)}), target, **kwargs)",
            "F.cross_entropy(input, target, **kwargs)",
        ),
    )


def no_underflow_logit_bound(dtype: Dtype) -> float:
    """Logits in [-R, R] keep every softmax probability >= e^(-2R) / C above the smallest normal."""
    return (-math.log(dtype.smallest_normal) - 1.0 - math.log(strategies.MAX_CLASSES)) / 2.0


@dtypes
@given(data=st.data())
def test_cross_entropy_equals_softmax_then_log_then_nll_where_softmax_does_not_underflow(data, dtype, device):
    """The article's three steps, Softmax -> log -> NLLLoss, equal CrossEntropyLoss within both bounds wherever every
    softmax probability stays a normal number."""
    bound_r = no_underflow_logit_bound(dtype)
    case = _index_case_without_smoothing(data, dtype)
    logits = data.draw(
        strategies.float_arrays(dtype, case.input.shape, strategies.within(-bound_r, bound_r)),
        label="logits without underflow",
    )
    case = Case("cross_entropy", logits, case.target, case.kwargs)
    x, t, kwargs = to_torch(case, dtype, device)
    dim = _class_dim(case.input)
    three_steps = F.nll_loss(torch.log(torch.softmax(x, dim)), t, **kwargs)
    want = _as_numpy(F.cross_entropy(x, t, **kwargs))
    fused = registry.replay("cross_entropy", dtype, case.input, case.target, **case.kwargs)
    steps = identities.softmax_log_nll(dtype, case.input, case.target, **case.kwargs)
    bound = fused.error + steps.error
    exclude_if_unbounded(
        bound,
        reference.cross_entropy(case.input, case.target, **case.kwargs),
        merge_rules(fused.unbounded_by, steps.unbounded_by),
    )
    assert_close(
        three_steps,
        want,
        bound,
        dtype=dtype,
        what=f"NLL(log(Softmax(x))) against CrossEntropy(x) for {case.describe()}, {dtype} on {device}",
        repro=expressions_snippet(
            case,
            dtype,
            device,
            f"F.nll_loss(torch.log(torch.softmax(input, {dim})), target, **kwargs)",
            "F.cross_entropy(input, target, **kwargs)",
        ),
    )


@dtypes
@given(data=st.data())
def test_softmax_then_log_then_nll_breaks_where_softmax_underflows(data, dtype, device):
    """Named divergence: when the target's logit lies more than -log(smallest subnormal) below its row's maximum,
    softmax underflows to 0, log gives -inf and the three-step loss is +inf while CrossEntropyLoss stays finite and
    exact."""
    n_classes = data.draw(st.integers(2, strategies.MAX_CLASSES), label="classes")
    batch = data.draw(st.integers(1, strategies.MAX_BATCH), label="batch")
    gap = -math.log(dtype.smallest_subnormal) + 2.0
    logits = data.draw(strategies.float_arrays(dtype, (batch, n_classes), strategies.within(-10, 10)), label="logits")
    target = data.draw(st.lists(st.integers(0, n_classes - 1), min_size=batch, max_size=batch), label="target")
    target = np.array(target, dtype=np.int64)
    rows = np.arange(batch)
    # Push each target's logit far below the largest other logit of its row (a whole number: representable).
    others = np.where(np.arange(n_classes) == target[:, None], -np.inf, logits)
    logits[rows, target] = np.floor(np.max(others, axis=1) - gap)
    case = Case("cross_entropy", dtype.snap(logits), target, {"reduction": "none"})
    x, t, _ = to_torch(case, dtype, device)
    repro = expressions_snippet(
        case,
        dtype,
        device,
        "F.nll_loss(torch.log(torch.softmax(input, 1)), target, reduction='none')",
        "F.cross_entropy(input, target, reduction='none')",
    )
    three_steps = F.nll_loss(torch.log(torch.softmax(x, 1)), t, reduction="none")
    assert torch.all(three_steps == math.inf), f"softmax -> log -> NLL stayed finite after underflow:\n{repro}"
    assert_close(
        F.cross_entropy(x, t, reduction="none"),
        reference.cross_entropy(case.input, target, reduction="none"),
        registry.error_bound("cross_entropy", dtype, case.input, target, reduction="none"),
        dtype=dtype,
        what=f"CrossEntropy where softmax underflows, {dtype} on {device}",
        repro=repro,
    )


# --- Index targets == one-hot probability targets ----------------------------------------------


def _one_hot(case: Case) -> np.ndarray:
    dim = _class_dim(case.input)
    n_classes = case.input.shape[dim]
    target = case.target.astype(np.int64).reshape(case.input.shape[:dim] + case.input.shape[dim + 1 :])
    return np.moveaxis(np.eye(n_classes)[target], -1, dim)


@st.composite
def _agreeing_index_cases(draw, dtype: Dtype) -> Case:
    """Index-target cases where torch says one-hot probabilities agree: nothing ignored, and no class weights
    under 'mean' (where the two paths normalise differently: the named divergence below)."""
    shape = draw(strategies.categorical_shape(min_classes=2), label="shape")
    logits = draw(strategies.float_arrays(dtype, shape, strategies.LOGITS), label="input")
    target = draw(strategies.index_targets(shape, ignore_index=-100, may_ignore=False), label="target")
    kwargs = draw(strategies.reduction_kwargs(), label="kwargs")
    if kwargs.get("reduction", "mean") != "mean":
        kwargs.update(draw(strategies.class_weight_kwargs(dtype, shape[_class_dim(logits)]), label="weight"))
    if draw(st.booleans(), label="with label_smoothing"):
        kwargs["label_smoothing"] = draw(strategies.label_smoothing_values(), label="label_smoothing")
    return Case("cross_entropy", logits, target.astype(np.int64).reshape(target.shape), kwargs)


def _both_target_kinds(case: Case, dtype: Dtype, device: str):
    one_hot = Case("cross_entropy", case.input, _one_hot(case), case.kwargs)
    x, t_index, kwargs = to_torch(case, dtype, device)
    _, t_one_hot, _ = to_torch(one_hot, dtype, device)
    index_replay = registry.replay("cross_entropy", dtype, case.input, case.target, **case.kwargs)
    one_hot_replay = registry.replay("cross_entropy", dtype, one_hot.input, one_hot.target, **one_hot.kwargs)
    bound = index_replay.error + one_hot_replay.error
    exclude_if_unbounded(
        bound,
        reference.cross_entropy(case.input, case.target, **case.kwargs),
        merge_rules(index_replay.unbounded_by, one_hot_replay.unbounded_by),
    )
    repro = expressions_snippet(
        one_hot,
        dtype,
        device,
        "F.cross_entropy(input, target, **kwargs)",
        f"F.cross_entropy(input, torch.as_tensor({case.target.tolist()!r}), **kwargs)",
    )
    return F.cross_entropy(x, t_index, **kwargs), F.cross_entropy(x, t_one_hot, **kwargs), bound, repro


@dtypes
@given(data=st.data())
def test_index_targets_equal_one_hot_probability_targets(data, dtype, device):
    """CrossEntropyLoss with class indices equals it with the one-hot probabilities of those indices, label smoothing
    included, wherever torch documents them as equivalent (no ignored targets; no class weights under 'mean')."""
    case = data.draw(_agreeing_index_cases(dtype), label="case")
    exclude_if_known_divergence(case)
    by_index, by_probability, bound, repro = _both_target_kinds(case, dtype, device)
    assert_close(
        by_probability,
        _as_numpy(by_index),
        bound,
        dtype=dtype,
        what=f"one-hot targets against index targets for {case.describe()}, {dtype} on {device}",
        repro=repro,
    )


@dtypes
@given(data=st.data())
def test_weighted_mean_of_index_and_one_hot_targets_differ_by_the_normaliser(data, dtype, device):
    """Named divergence (pytorch#61309, open): with class weights and 'mean', index targets divide by the sum of
    w[y_i] while one-hot probability targets divide by N, so the two differ by exactly that ratio."""
    case = data.draw(_agreeing_index_cases(dtype), label="case")
    n_classes = case.input.shape[_class_dim(case.input)]
    weight = data.draw(strategies.float_arrays(dtype, (n_classes,), strategies.within(0.125, 8)), label="w")
    case = case.with_kwargs(weight=weight, reduction="mean")
    exclude_if_known_divergence(case)
    if case.target.size == 0:
        ledger.exclude("an empty batch has no normaliser to compare (both means are NaN)")
    by_index, by_probability, bound, repro = _both_target_kinds(case, dtype, device)
    total_weight = float(np.sum(weight[case.target.astype(np.int64)]))
    positions = case.target.size
    rescaled = _as_numpy(by_index) * total_weight / positions
    # The rescaled index mean carries the index bound times W / N; (b_index + b_prob) * max(1, W / N) covers
    # b_prob + b_index * W / N whichever side of 1 the ratio is.
    assert_close(
        by_probability,
        rescaled,
        bound * max(1.0, total_weight / positions),
        dtype=dtype,
        what=f"one-hot mean against index mean x sum(w[y]) / N for {case.describe()}, {dtype} on {device}",
        repro=repro,
    )


# --- Two-class CrossEntropy == BCEWithLogits ----------------------------------------------------


@dtypes
@given(data=st.data())
def test_two_class_cross_entropy_equals_bce_with_logits(data, dtype, device):
    """CrossEntropyLoss on logits [0, z] with target y (an index, or probabilities [1 - y, y]) equals
    BCEWithLogitsLoss(z, y), within both bounds."""
    batch = data.draw(st.integers(0, strategies.MAX_BATCH), label="batch")
    z = data.draw(strategies.float_arrays(dtype, (batch,), strategies.LOGITS), label="z")
    as_index = data.draw(st.booleans(), label="index targets")
    if as_index:
        y = data.draw(strategies.hnp.arrays(np.int64, (batch,), elements=st.integers(0, 1)), label="y")
        ce_target = y
    else:
        y = data.draw(strategies.float_arrays(dtype, (batch,), strategies.PROBABILITIES), label="y")
        ce_target = np.stack([dtype.snap(1.0 - y), y], axis=1)
    y_float = y.astype(np.float64)
    if not as_index and np.any(ce_target[:, 0] != 1.0 - y_float):
        ledger.exclude("1 - y is not exactly representable in the dtype, so [1 - y, y] is not the same target")
    kwargs = data.draw(strategies.reduction_kwargs(), label="kwargs")
    logits = np.stack([np.zeros(batch), z], axis=1)
    ce_case = Case("cross_entropy", logits, ce_target, kwargs)
    bce_case = Case("binary_cross_entropy_with_logits", z, y_float, kwargs)
    x, t, torch_kwargs = to_torch(ce_case, dtype, device)
    zt, yt, _ = to_torch(bce_case, dtype, device)
    ce = registry.replay("cross_entropy", dtype, logits, ce_target, **kwargs)
    bce = registry.replay("binary_cross_entropy_with_logits", dtype, z, y_float, **kwargs)
    bound = ce.error + bce.error
    exclude_if_unbounded(
        bound,
        reference.binary_cross_entropy_with_logits(z, y_float, **kwargs),
        merge_rules(ce.unbounded_by, bce.unbounded_by),
    )
    assert_close(
        F.cross_entropy(x, t, **torch_kwargs),
        _as_numpy(F.binary_cross_entropy_with_logits(zt, yt, **torch_kwargs)),
        bound,
        dtype=dtype,
        what=f"two-class CrossEntropy against BCEWithLogits, {dtype} on {device}",
        repro=expressions_snippet(
            ce_case,
            dtype,
            device,
            "F.cross_entropy(input, target, **kwargs)",
            f"F.binary_cross_entropy_with_logits(input[:, 1], "
            f"torch.as_tensor({y_float.tolist()!r}, dtype=dtype), **kwargs)",
        ),
    )
