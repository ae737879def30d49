"""Calls where torch 2.13 departs from the documented semantics, as rules the registry gives each loss. Each
rule has a named-divergence test that asserts torch's actual behaviour, so it fails loudly once torch changes;
then the matching rule here must go too. A rule returns the divergence's name (the reason an example is
excluded from parity) or None."""

from __future__ import annotations

from .cases import Case


def none(case: Case) -> str | None:
    """A loss with no divergence that excludes parity examples."""
    return None


def non_contiguous_4d_nll_backward(case: Case) -> str | None:
    """NLL: a 4-D input laid out with permuted strides (transposed, or channels-last) computes, but its backward
    raises, where every other rank and layout has its gradient."""
    permuted = case.memory == "transposed" and sum(size > 1 for size in case.input.shape) > 1
    if case.input.ndim == 4 and permuted:
        return (
            "torch 2.13's NLLLoss backward raises 'grad_input must be contiguous' for a 4-D input with permuted "
            "strides (test_nll_backward_of_a_4d_input_with_permuted_strides_raises)"
        )
    return None


def unbatched_or_non_contiguous_4d_nll_backward(case: Case) -> str | None:
    """Both of NLL's backward divergences."""
    return unbatched_target_of_shape_1_backward(case) or non_contiguous_4d_nll_backward(case)


def unbatched_target_of_shape_1_backward(case: Case) -> str | None:
    """NLL and cross-entropy: an unbatched input with a (1,) target computes, but its backward raises."""
    if case.input.ndim == 1 and case.target.shape == (1,):
        return (
            "torch 2.13 computes unbatched input (C,) with a (1,) target but its backward raises 'size mismatch' "
            "(test_unbatched_input_with_target_of_shape_1_has_no_backward)"
        )
    return None
