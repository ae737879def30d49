"""The one way the suite compares a computed loss with its reference value.

Every failure reads as a sentence (what was called, what torch gave, what was expected,
by how much the bound was missed) followed by a snippet that reproduces it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pytest
import torch

from adapters import Unsupported

from . import ledger, registry, reproducer
from .cases import Case, CaseBatch, to_torch
from .dtypes import Dtype
from .implementations import LossImpl, flushes_subnormals, gradient_algorithm, label, sums_in_any_order
from .minimise import minimised
from .tolerance.tracked import (
    Tracked,
    arithmetic_now,
    first_rule,
    flushing_subnormals,
    summing_in_any_order,
    summing_on_another_device,
)

_T = TypeVar("_T")


class ParityError(AssertionError):
    """An implementation disagreed with the reference beyond the tolerance model's bound."""


class RejectionMismatch(AssertionError):
    """Torch and the reference did not reject an input in the same way."""


def _left_out(unsupported: Unsupported, impl: LossImpl) -> str:
    """What an adapter's ``Unsupported`` means for a check: a whole check it lacks (a dtype, the backward pass) is
    skipped with the reason, which the matrix reads as UNSUPPORTED; a case with an argument it lacks is left out,
    the reason counted in the report."""
    if unsupported.whole:
        pytest.skip(f"UNSUPPORTED by {label(impl)}: {unsupported.reason}{ledger.WHOLE_CHECK}")
    return f"{ledger.UNSUPPORTED_BY}{label(impl)}: {unsupported.reason}"


def _called(
    call: Callable[[], _T], impl: LossImpl, what: Callable[[], str], repro: Callable[[], str], where: str
) -> _T | str:
    """``call()``'s result; or, where the implementation lacks an argument of the case, the reason it is left out
    (``_left_out``). Any other exception fails the check: ``where`` says in what, and the reproducer follows."""
    __tracebackhide__ = True
    try:
        return call()
    except Unsupported as unsupported:
        return _left_out(unsupported, impl)
    except Exception as error:
        raise ParityError(
            f"{what()}: {label(impl)} raised {type(error).__name__}({str(error)!r}) {where}"
            f"\n\nReproduce with:\n\n{repro()}\n"
        ) from error


def _where(index: tuple[Any, ...]) -> str:
    return f" at index {[int(i) for i in index]}" if index else ""


def assert_close(
    got: torch.Tensor,
    want: np.ndarray,
    bound: np.ndarray,
    *,
    what: str,
    dtype: Dtype,
    repro: str | Callable[[], str],
    who: str = "torch",
) -> None:
    """``got`` equals ``want`` within ``bound`` element-wise: same shape and dtype, the same
    NaN positions, the same infinities, finite values within the bound. Records the worst error.
    ``repro`` is the reproducer, or what writes it (only a failure needs one).
    """
    __tracebackhide__ = True

    def fail(sentence: str) -> None:
        snippet = repro if isinstance(repro, str) else repro()
        raise ParityError(f"{what}: {sentence}\n\nReproduce with:\n\n{snippet}\n")

    if tuple(got.shape) != want.shape:
        fail(f"{who} returned shape {list(got.shape)}, but the reference gives {list(want.shape)}")
    if got.dtype != dtype.torch:
        fail(f"{who} returned dtype {got.dtype}, but the inputs were {dtype.torch}")
    g = got.detach().to("cpu", torch.float64).numpy()
    bound = np.broadcast_to(bound, want.shape)
    # A NaN on one side only, or an infinity the other side does not match: the first such element, in C order.
    mismatched = (np.isnan(want) != np.isnan(g)) | ((np.isinf(want) | np.isinf(g)) & (g != want))
    if np.any(mismatched):
        index = np.unravel_index(int(np.argmax(mismatched)), want.shape)
        fail(f"{who} gave {float(g[index])!r}{_where(index)} where the reference gives {float(want[index])!r}")
    finite = np.isfinite(want)
    error = np.where(finite, np.abs(g - np.where(finite, want, 0.0)), 0.0)
    if not error.size:  # an empty result: its shape and dtype were still compared
        ledger.record_comparison(0.0, 0.0, 0.0, 0.0, dtype.smallest_subnormal)
        return
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratios = np.where(bound > 0, error / bound, np.where(error > 0, np.inf, 0.0))
    worst = np.unravel_index(int(np.argmax(ratios)), want.shape)
    if error[worst] > bound[worst]:
        fail(
            f"{who} gave {float(g[worst])!r}{_where(worst)} where the reference gives {float(want[worst])!r}; "
            f"the error {error[worst]:.3g} exceeds the tolerance model's bound {bound[worst]:.3g} "
            f"by a factor {ratios[worst]:.3g}"
        )
    expected = float(want[worst])
    ledger.record_comparison(
        float(error[worst]), float(bound[worst]), float(ratios[worst]), expected, dtype.ulp(expected)
    )


def assert_identical(got: tuple[str, Any], want: tuple[str, Any], *, what: str, repro: str) -> None:
    """Two outcomes of one computation, each ("value", array) or ("raises", the exception's class name), are the
    same: the same class raised, or the same shape and every bit of every value (any NaN matches any NaN; the sign
    of a zero is not compared, as no loss value depends on it). For a fast path against the plain computation
    it replaces, where the only right error is none. Counts one checked example."""
    __tracebackhide__ = True
    same = got[0] == want[0]
    if same and got[0] == "value":
        a, b = got[1], want[1]
        same = a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and np.array_equal(np.isnan(a), np.isnan(b))
    if not same:
        raise ParityError(
            f"{what}: got {got[1]!r} where the plain computation gives {want[1]!r}\n\nReproduce with:\n\n{repro}\n"
        )
    ledger.record_example()


def exclude_if_unbounded(bound: np.ndarray, want: np.ndarray, unbounded_by: np.ndarray) -> None:
    """An infinite bound: rounding alone could move the result anywhere, to inf or (through inf * 0 or inf - inf)
    to NaN, whatever the reference's value, finite or not.

    ``want`` is the reference's (mathematical) value, never torch's: torch itself may return inf there.
    ``unbounded_by`` is the replay's ``Tracked.unbounded_by`` (for a bound composed of several, their
    ``merge_rules``): the example is excluded under the reason of the rule that made an element's bound infinite,
    the lowest-numbered rule (``tolerance.tracked.RULES``) among the infinite elements where they differ.
    """
    reason = unbounded(bound, want, unbounded_by)
    if reason:
        ledger.exclude(reason)


def unbounded(bound: np.ndarray, want: np.ndarray, unbounded_by: np.ndarray) -> str | None:
    """The exclusion reason ``exclude_if_unbounded`` gives, or None where the bound is finite."""
    rule = first_rule(bound, unbounded_by) if np.asarray(want).size else None
    return None if rule is None else rule.exclusion


def _reference(loss: str) -> Callable[..., Any]:
    value = registry.info(loss).reference
    assert value is not None, f"{loss} has no reference"
    return value


def _no_divergence(case: Case) -> None:
    return None


def check_parity(case: Case, impl: LossImpl, *, form: str, dtype: Dtype, device: str) -> None:
    """``impl`` computes ``case`` as the reference does, within the tolerance model's bound (``check_parity_batch``
    on a batch of one: an example without a finite bound is dropped under its rule's reason)."""
    __tracebackhide__ = True
    check_parity_batch(CaseBatch.of(case), impl, form=form, dtype=dtype, device=device, divergence=_no_divergence)


def check_gradient_parity(
    case: Case, grad_output: np.ndarray, impl: LossImpl, *, form: str, dtype: Dtype, device: str
) -> None:
    """``impl``'s autograd gradient of ``case`` (with upstream ``grad_output``) equals the reference's analytic
    gradient, within the tolerance model's bound for torch's backward formula (``check_gradient_parity_batch`` on a
    batch of one)."""
    __tracebackhide__ = True
    grad_outputs = np.asarray(grad_output, dtype=np.float64)[np.newaxis]
    check_gradient_parity_batch(
        CaseBatch.of(case), grad_outputs, impl, form=form, dtype=dtype, device=device, divergence=_no_divergence
    )


@dataclass(frozen=True)
class _Outcome:
    """One case's result, to be compared with the reference: what the check says on failure is written then."""

    case: Case
    got: torch.Tensor
    want: np.ndarray
    bound: np.ndarray
    what: Callable[[], str]
    repro: Callable[[], str]


@dataclass(frozen=True)
class _Forward:
    """One case's loss, computed from an input that requires its gradient, awaiting the backward pass."""

    case: Case
    input: torch.Tensor
    loss: torch.Tensor
    upstream: torch.Tensor
    want: np.ndarray
    bound: np.ndarray
    what: Callable[[], str]
    repro: Callable[[], str]


def _first_failing(outcomes: list[_Outcome], *, dtype: Dtype, who: str) -> _Outcome | None:
    """``assert_close``'s verdict on every outcome of a batch (one output shape), in one vectorised pass: the first
    outcome it would fail, or None, each outcome's worst error then recorded as ``assert_close`` records it."""
    for outcome in outcomes:
        if tuple(outcome.got.shape) != outcome.want.shape or outcome.got.dtype != dtype.torch:
            return outcome
    if not outcomes:
        return None
    n, shape = len(outcomes), outcomes[0].want.shape
    got = torch.stack([outcome.got.detach() for outcome in outcomes]).to("cpu", torch.float64).numpy().reshape(n, -1)
    want = np.stack([outcome.want for outcome in outcomes]).reshape(n, -1)
    bound = np.stack([np.broadcast_to(outcome.bound, shape) for outcome in outcomes]).reshape(n, -1)
    if not want.shape[1]:  # empty results: their shapes and dtypes were compared
        for outcome in outcomes:
            ledger.record_comparison(0.0, 0.0, 0.0, 0.0, dtype.smallest_subnormal, outcome.case.input.size)
        return None
    finite = np.isfinite(want)
    error = np.where(finite, np.abs(got - np.where(finite, want, 0.0)), 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratios = np.where(bound > 0, error / bound, np.where(error > 0, np.inf, 0.0))
    mismatched = (np.isnan(want) != np.isnan(got)) | ((np.isinf(want) | np.isinf(got)) & (got != want))
    failing = np.any(mismatched | (error > bound), axis=1)
    if np.any(failing):
        return outcomes[int(np.argmax(failing))]
    rows = np.arange(n)
    worst = np.argmax(ratios, axis=1)
    sizes = [outcome.case.input.size for outcome in outcomes]
    for e, b, r, w, size in zip(
        error[rows, worst], bound[rows, worst], ratios[rows, worst], want[rows, worst], sizes, strict=True
    ):
        ledger.record_comparison(float(e), float(b), float(r), float(w), dtype.ulp(float(w)), size)
    return None


def _fail(outcome: _Outcome, *, dtype: Dtype, who: str) -> None:
    """Raise ``assert_close``'s failure for an outcome it fails."""
    __tracebackhide__ = True
    assert_close(
        outcome.got, outcome.want, outcome.bound, what=outcome.what(), dtype=dtype, repro=outcome.repro, who=who
    )
    raise AssertionError("the batched comparison and assert_close disagree")  # assert_close must have raised


Check = Callable[[Case, Tracked], "_Outcome | str"]


CheckAll = Callable[[list[Case], list[Tracked]], "list[_Outcome | str]"]


def _run_batch(
    cases: list[Case],
    replayed: Tracked,
    check: Check,
    bound_of: Callable[[Case], Tracked],
    *,
    dtype: Dtype,
    who: str,
    check_all: CheckAll | None = None,
) -> None:
    """Each case of a batch through ``check`` (an outcome, or the reason it is excluded), or all of them through
    ``check_all`` where one call serves them together, the outcomes compared in one pass; a failing case minimised
    (``minimise.py``), rerun alone through ``check`` (its bound from ``bound_of``, the replay this check uses, of one
    case) before it is reported."""
    __tracebackhide__ = True
    bounds = [replayed.case(k) for k in range(len(cases))]
    results = check_all(cases, bounds) if check_all else [check(c, b) for c, b in zip(cases, bounds, strict=True)]
    excluded, outcomes = [], []
    for result in results:
        if isinstance(result, str):
            excluded.append(result)
        else:
            outcomes.append(result)
    failing = _first_failing(outcomes, dtype=dtype, who=who)
    if failing is not None:
        _fail(_smallest_failing(failing, check, bound_of, dtype=dtype, who=who), dtype=dtype, who=who)
    ledger.exclude_cases(excluded, of=len(cases))


def _smallest_failing(
    failing: _Outcome, check: Check, bound_of: Callable[[Case], Tracked], *, dtype: Dtype, who: str
) -> _Outcome:
    """The failing outcome of the smallest case ``minimise.minimised`` reaches from ``failing``'s that fails alike
    (a value beyond its bound, or a NaN or infinity the reference does not give, or a wrong shape or dtype)."""
    kind = _failure_kind(failing, dtype)
    found: dict[int, _Outcome] = {}

    def fails(case: Case) -> bool:
        try:
            with ledger.measuring_nothing():
                result = check(case, bound_of(case))
                if isinstance(result, str) or _first_failing([result], dtype=dtype, who=who) is None:
                    return False
        except Exception:
            return False
        if _failure_kind(result, dtype) != kind:
            return False
        found[id(case)] = result
        return True

    smallest = minimised(failing.case, fails)
    return found.get(id(smallest), failing)


def _failure_kind(outcome: _Outcome, dtype: Dtype) -> str:
    if tuple(outcome.got.shape) != outcome.want.shape:
        return "shape"
    if outcome.got.dtype != dtype.torch:
        return "dtype"
    return "value"


def check_parity_batch(
    batch: CaseBatch,
    impl: LossImpl,
    *,
    form: str,
    dtype: Dtype,
    device: str,
    divergence: Callable[[Case], str | None],
) -> None:
    """``check_parity`` on every case of ``batch``, their bounds from one replay and their errors compared in one
    pass. A case under a known divergence (``divergence`` names it) or without a finite bound is excluded on its own,
    its reason counted; the example is dropped only where every case was excluded. A failing case is reported
    minimised."""
    __tracebackhide__ = True
    reference = _reference(batch.loss)

    def check(case: Case, bound: Tracked) -> _Outcome | str:
        want = np.asarray(reference(case.input, case.target, **case.kwargs))
        reason = divergence(case) or unbounded(bound.error, want, bound.unbounded_by)
        if reason:
            return reason
        input, target, kwargs = to_torch(case, dtype, device)
        what = functools.partial(lambda c: f"{c.describe()} in {form} form, {dtype} on {device}", case)
        repro = functools.partial(reproducer.snippet, case, dtype, device, form, label(impl))
        got = _called(lambda: impl(input, target, **kwargs), impl, what, repro, "on a call the reference computes")
        if isinstance(got, str):
            return got
        return _Outcome(case, got, want, bound.error, what, repro)

    def bound_of(case: Case) -> Tracked:
        return registry.replay_batch(case.loss, dtype, CaseBatch.of(case)).case(0)

    cases = [batch.case(k) for k in range(len(batch))]
    with _arithmetic(impl, dtype, device):
        _run_batch(cases, _replayed(batch, dtype), check, bound_of, dtype=dtype, who=label(impl))


@contextlib.contextmanager
def _arithmetic(impl: LossImpl, dtype: Dtype, device: str) -> Iterator[None]:
    """Within: replays bound the arithmetic the implementation declares (flush-to-zero, sums in any order) on
    ``device`` (another device than the CPU: each sum in any order of its additions)."""
    with (
        flushing_subnormals(flushes_subnormals(impl, dtype)),
        summing_in_any_order(sums_in_any_order(impl)),
        summing_on_another_device(torch.device(device).type != "cpu"),
    ):
        yield


# The last batch replayed, and its replay: a large input is checked in both forms on one drawn batch, and its replay
# (most of a large example's cost) is the same for both. The batch itself is held, so that its identity stays its own.
_last_replay: tuple[CaseBatch, Dtype, tuple[bool, ...], Tracked] | None = None


def _replayed(batch: CaseBatch, dtype: Dtype) -> Tracked:
    global _last_replay
    flushing = arithmetic_now()  # the arithmetic the replay bounds
    if _last_replay is not None:
        last_batch, last_dtype, last_flushing, last = _last_replay
        if last_batch is batch and last_dtype == dtype and last_flushing == flushing:
            return last
    replayed = registry.replay_batch(batch.loss, dtype, batch)
    _last_replay = (batch, dtype, flushing, replayed)
    return replayed


def check_gradient_parity_batch(
    batch: CaseBatch,
    grad_outputs: np.ndarray,
    impl: LossImpl,
    *,
    form: str,
    dtype: Dtype,
    device: str,
    divergence: Callable[[Case], str | None],
) -> None:
    """``check_gradient_parity`` on every case of ``batch``, with upstream ``grad_outputs[k]`` for case k, their
    bounds from one replay and their errors compared in one pass; exclusions as in ``check_parity_batch``. A failing
    case is reported minimised where its upstream gradient carries over (all ones, or one value for a reduction)."""
    __tracebackhide__ = True
    gradient = registry.reference_gradient(batch.loss)
    cases = [batch.case(k) for k in range(len(batch))]
    upstream = {id(case): grad_outputs[k] for k, case in enumerate(cases)}  # by identity: a smaller case has none
    ones = bool(np.all(grad_outputs == 1))
    single = np.ndim(grad_outputs) == 1

    def grad_output_of(case: Case) -> np.ndarray | None:
        if id(case) in upstream:
            return upstream[id(case)]
        if single:  # a reduction's one value, whatever the case's shape
            return grad_outputs[0]
        shape = np.shape(_reference(case.loss)(case.input, case.target, **case.kwargs))
        return np.ones(shape) if ones else None

    def forward(case: Case, bound: Tracked) -> _Forward | str:
        """The case's loss computed for differentiation, or the reason the case is excluded."""
        reason = divergence(case)
        if reason:
            return reason
        grad_output = grad_output_of(case)
        if grad_output is None:
            return "no upstream gradient carries over to this smaller case"
        want = np.asarray(gradient(case.input, case.target, **case.kwargs, grad_output=grad_output))
        reason = unbounded(bound.error, want, bound.unbounded_by)
        if reason:
            return reason
        input, target, kwargs = to_torch(case, dtype, device)
        input.requires_grad_(True)
        repro = functools.partial(reproducer.gradient_snippet, case, grad_output, dtype, device, form, label(impl))
        what = functools.partial(lambda c: f"the gradient of {c.describe()} in {form} form, {dtype} on {device}", case)
        loss = _called(lambda: impl(input, target, **kwargs), impl, what, repro, "computing the loss to differentiate")
        if isinstance(loss, str):
            return loss
        upstream = torch.as_tensor(grad_output).to(device=device, dtype=dtype.torch)
        return _Forward(case, input, loss, upstream, want, bound.error, what, repro)

    def outcome(done: _Forward) -> _Outcome:
        if done.input.grad is None:
            raise ParityError(
                f"{done.what()}: {label(impl)} left no gradient on the input\n\nReproduce with:\n\n{done.repro()}\n"
            )
        return _Outcome(done.case, done.input.grad, done.want, done.bound, done.what, done.repro)

    def check(case: Case, bound: Tracked) -> _Outcome | str:
        """One case alone: its forward and its own backward pass."""
        done = forward(case, bound)
        if isinstance(done, str):
            return done
        backward = functools.partial(done.loss.backward, done.upstream)
        left_out = _called(backward, impl, done.what, done.repro, "in the backward pass")
        return left_out if isinstance(left_out, str) else outcome(done)

    def check_all(cases: list[Case], bounds: list[Tracked]) -> list[_Outcome | str]:
        """Every case's forward, then one backward pass through all their graphs, as a training step takes it: each
        input's gradient flows through its own case's graph alone (the inputs are separate leaves), so each is what
        its own backward pass computes, by the same kernels, without autograd's per-call cost (about 100 us). If
        that backward pass raises, each case runs alone, so that a failure names its own case."""
        done = [forward(case, bound) for case, bound in zip(cases, bounds, strict=True)]
        pending = [d for d in done if not isinstance(d, str)]
        if pending:
            try:
                torch.autograd.backward([d.loss for d in pending], [d.upstream for d in pending])
            except Exception:
                return [check(case, bound) for case, bound in zip(cases, bounds, strict=True)]
        return [d if isinstance(d, str) else outcome(d) for d in done]

    def bound_of(case: Case) -> Tracked:
        grad_output = grad_output_of(case)
        if grad_output is None:
            raise ValueError("no upstream gradient carries over to this smaller case")  # not a failure alike
        return registry.gradient_replay_batch(
            case.loss, dtype, CaseBatch.of(case), np.asarray(grad_output)[np.newaxis], algorithm
        ).case(0)

    algorithm = gradient_algorithm(impl, batch.loss)
    with _arithmetic(impl, dtype, device):
        replayed = registry.gradient_replay_batch(batch.loss, dtype, batch, grad_outputs, algorithm)
        _run_batch(cases, replayed, check, bound_of, dtype=dtype, who=label(impl), check_all=check_all)


def check_same_rejection(
    case: Case, impl: LossImpl, *, form: str, dtype: Dtype, device: str
) -> type[BaseException] | None:
    """Torch and the reference both reject ``case``, with the same exception class: that class, one checked example
    counted; None where the implementation lacks an argument of the case (left out, the reason counted)."""
    __tracebackhide__ = True

    def outcome(call: Callable[[], Any]) -> BaseException | None:
        try:
            call()
        except Exception as error:
            return error
        return None

    input, target, kwargs = to_torch(case, dtype, device)
    theirs = outcome(lambda: impl(input, target, **kwargs))
    if isinstance(theirs, Unsupported):
        ledger.exclude_cases([_left_out(theirs, impl)], of=1)
        return None
    ours = outcome(lambda: _reference(case.loss)(case.input, case.target, **case.kwargs))
    repro = reproducer.snippet(case, dtype, device, form, label(impl))
    what = f"{case.describe()} in {form} form, {dtype} on {device}"
    if theirs is None or ours is None or type(theirs) is not type(ours) or not str(ours):
        raise RejectionMismatch(
            f"{what}: {label(impl)} {_outcome_words(theirs)}, the reference {_outcome_words(ours)}"
            f"\n\nReproduce with:\n\n{repro}\n"
        )
    ledger.record_example()
    return type(theirs)


def _outcome_words(error: BaseException | None) -> str:
    if error is None:
        return "accepted it"
    return f"raised {type(error).__name__}({str(error)!r})"
