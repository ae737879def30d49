"""The comparison helper tells apart what must be told apart, and its reproducers run."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from verification import ledger
from verification.cases import Case, CaseBatch
from verification.compare import (
    ParityError,
    RejectionMismatch,
    _fail,
    _first_failing,
    _Outcome,
    assert_close,
    check_gradient_parity_batch,
    check_parity,
    check_same_rejection,
)
from verification.dtypes import FLOAT32, FLOAT64
from verification.implementations import torch_impl
from verification.reproducer import snippet


def close(got, want, bound, dtype=FLOAT64):
    assert_close(
        torch.tensor(got, dtype=dtype.torch),
        np.asarray(want, dtype=np.float64),
        np.asarray(bound, dtype=np.float64),
        what="meta",
        dtype=dtype,
        repro="# none",
    )


@pytest.mark.parametrize(
    ("got", "want"),
    [(0.0, np.nan), (np.nan, 0.0), (np.inf, -np.inf), (-np.inf, np.inf), (np.inf, 1e300), (1e300, np.inf)],
)
def test_nan_and_infinities_must_match_exactly(got, want):
    """NaN never matches a number, and an infinity matches only the same infinity, whatever the bound."""
    with pytest.raises(ParityError):
        close([got], [want], [np.inf])


def test_matching_nan_and_infinities_pass():
    """NaN against NaN and inf against inf of the same sign are agreement."""
    close([np.nan, np.inf, -np.inf], [np.nan, np.inf, -np.inf], [0.0, 0.0, 0.0])


def test_the_bound_is_inclusive_and_the_next_float_beyond_it_fails():
    """An error equal to the bound passes; the smallest error above it fails."""
    close([1.5], [1.0], [0.5])
    with pytest.raises(ParityError, match="exceeds the tolerance model's bound"):
        close([np.nextafter(1.5, 2.0)], [1.0], [0.5])


def test_a_zero_bound_demands_bitwise_equality():
    """Where the bound is 0 (an ignored target's exact 0), the smallest difference fails."""
    close([0.0], [0.0], [0.0])
    with pytest.raises(ParityError):
        close([5e-324], [0.0], [0.0])


def test_shape_and_dtype_mismatches_fail():
    """A result of the wrong shape or the wrong dtype fails even when its values agree."""
    with pytest.raises(ParityError, match="shape"):
        close([1.0], np.float64(1.0), 0.0)
    with pytest.raises(ParityError, match="dtype"):
        assert_close(
            torch.tensor([1.0], dtype=torch.float32),
            np.array([1.0]),
            np.array([0.0]),
            what="meta",
            dtype=FLOAT64,
            repro="",
        )


def test_the_failure_message_names_the_element_and_carries_the_reproducer():
    """A failure says where, what torch gave, what was expected and by how much, then how to reproduce."""
    case = Case("nll_loss", np.array([[0.0, -1.0]]), np.array([1]), {"reduction": "none"})

    def off_by_one(input, target, **kwargs):
        return torch.nn.functional.nll_loss(input, target, **kwargs) + 1

    with pytest.raises(ParityError) as caught:
        check_parity(case, off_by_one, form="functional", dtype=FLOAT64, device="cpu")
    message = str(caught.value)
    assert "torch gave 2.0 at index [0] where the reference gives 1.0" in message
    assert "Reproduce with:" in message and "reference.nll_loss(x, t, **np_kwargs)" in message


@pytest.mark.parametrize("form", ["functional", "module"])
def test_reproducer_snippet_runs_and_prints_both_results(form):
    """The printed snippet is valid Python that reruns the call in torch and in the reference."""
    case = Case(
        "cross_entropy",
        np.array([[0.5, -np.inf, 1e4], [1.0, 2.0, 3.0]]),
        np.array([2, 7]),
        {"weight": np.array([0.5, 0.0, 2.0]), "ignore_index": 7, "label_smoothing": 0.1},
    )
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(snippet(case, FLOAT32, "cpu", form), {})
    lines = output.getvalue().splitlines()
    assert lines[0].startswith("torch") and lines[1].startswith("reference"), lines


def test_rejection_parity_fails_when_only_one_side_rejects():
    """If torch accepts a call that the reference rejects (or the reverse), the rejection check fails."""
    case = Case("nll_loss", np.zeros((2, 3)), np.array([0, 3]), {})  # target 3 is out of range
    accepting = torch_impl("nll_loss", "functional")

    def lenient(input, target, **kwargs):
        return accepting(input, target.clamp(max=2), **kwargs)

    assert check_same_rejection(case, accepting, form="functional", dtype=FLOAT64, device="cpu") is IndexError
    with pytest.raises(RejectionMismatch, match="torch accepted it"):
        check_same_rejection(case, lenient, form="functional", dtype=FLOAT64, device="cpu")


# --- a batch's cases compared in one pass: the verdicts and records of assert_close, case by case -----------------

BATCH_OUTCOMES = [  # (got, want, bound): within, a NaN pair, an error equal to the bound, beyond it, an inf mismatch
    ([1.0, 2.0], [1.0, 2.0 + 1e-12], [1e-11, 1e-11]),
    ([np.nan, 3.0], [np.nan, 3.0], [0.0, 0.0]),
    ([1.5, 0.0], [1.0, 0.0], [0.5, 0.0]),
    ([np.nextafter(1.5, 2.0), 0.0], [1.0, 0.0], [0.5, 0.0]),
    ([np.inf, 0.0], [1e300, 0.0], [np.inf, 0.0]),
]


def _compared_in_one_pass(outcomes):
    """What a batch check does with its outcomes: the first failing one, if any, fails as assert_close fails it."""
    failing = _first_failing(outcomes, dtype=FLOAT64, who="torch")
    if failing is not None:
        _fail(failing, dtype=FLOAT64, who="torch")


def _outcomes(rows):
    return [
        _Outcome(
            Case("nll_loss", np.zeros(2), np.asarray(0)),
            torch.tensor(g, dtype=torch.float64),
            np.asarray(w),
            np.asarray(b),
            lambda i=i: f"case {i}",
            lambda: "",
        )
        for i, (g, w, b) in enumerate(rows)
    ]


@pytest.mark.parametrize("failing", [None, 3, 4])
def test_a_batch_compared_in_one_pass_fails_on_its_first_failing_case_as_assert_close_does(failing):
    """The batched comparison passes exactly where assert_close passes every case, records the same worst error for
    each, and fails on the first case that assert_close fails, with its message."""
    rows = [row for i, row in enumerate(BATCH_OUTCOMES) if i < 3 or i == failing]
    ledger.RECORDS.clear()
    if failing is None:
        _compared_in_one_pass(_outcomes(rows))
        batched = dict(vars(ledger.RECORDS.pop(ledger.current_test())))
        # the batch knows its cases, and records the largest input compared; assert_close compares arrays alone
        assert batched.pop("largest_input") == max(outcome.case.input.size for outcome in _outcomes(rows)) > 0
        for got, want, bound in rows:
            close(got, want, bound)
        alone = dict(vars(ledger.RECORDS.pop(ledger.current_test())))
        assert alone.pop("largest_input") == 0
        assert alone == batched
        assert batched["compared"] == len(rows)
        return
    with pytest.raises(ParityError) as batched:
        _compared_in_one_pass(_outcomes(rows))
    assert str(batched.value).startswith(f"case {len(rows) - 1}:")  # the failing row comes last
    with pytest.raises(ParityError) as alone:
        close(*BATCH_OUTCOMES[failing])
    assert str(batched.value).split(":", 1)[1] == str(alone.value).split(":", 1)[1].replace("# none", "")


class _BackwardRaisingAt(torch.autograd.Function):
    """The identity, whose backward raises where its input holds ``TRIGGER``."""

    TRIGGER = 7.0

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clone()

    @staticmethod
    def backward(ctx, grad):
        (input,) = ctx.saved_tensors
        if bool((input == _BackwardRaisingAt.TRIGGER).any()):
            raise RuntimeError("planted: no backward here")
        return grad


def _logits_through_the_planted_backward(input, target, **kwargs):
    return torch.nn.functional.binary_cross_entropy_with_logits(_BackwardRaisingAt.apply(input), target, **kwargs)


def _bce_with_logits_batch(trigger_at: int | None) -> CaseBatch:
    input = np.linspace(-2.0, 2.0, 4 * 3).reshape(4, 3)
    if trigger_at is not None:
        input[trigger_at, 1] = _BackwardRaisingAt.TRIGGER
    return CaseBatch("binary_cross_entropy_with_logits", input, np.full((4, 3), 0.25), {"reduction": "sum"})


def _gradients_of(batch: CaseBatch, impl) -> None:
    check_gradient_parity_batch(
        batch,
        np.array([1.0, 0.5, -2.0, 0.25]),
        impl,
        form="functional",
        dtype=FLOAT64,
        device="cpu",
        divergence=lambda case: None,
    )


def test_one_backward_pass_serves_a_batch_and_a_case_whose_backward_raises_is_named_alone():
    """A batch's gradients come from one backward pass through all its cases; where that pass raises, each case
    runs alone, and the failure names the case whose own backward raises, with its reproducer."""
    backward_calls = []
    engine_backward = torch.autograd.backward

    def counted(*args, **kwargs):
        backward_calls.append(len(args[0]) if isinstance(args[0], list | tuple) else 1)
        return engine_backward(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.autograd, "backward", counted)
        _gradients_of(_bce_with_logits_batch(None), _logits_through_the_planted_backward)
    assert backward_calls == [4], "the batch's four cases were not differentiated in one backward pass"

    with pytest.raises(ParityError, match="in the backward pass") as raised:
        _gradients_of(_bce_with_logits_batch(2), _logits_through_the_planted_backward)
    message = str(raised.value)
    assert "planted: no backward here" in message and "7.0" in message, message
    assert "g = np.array(-2.0," in message, "the reproducer does not carry the raising case's own upstream gradient"
