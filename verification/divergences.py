"""Calls where torch 2.13 departs from the documented semantics, as rules the registry gives each loss. Each
rule has a named-divergence test that asserts torch's actual behaviour, so it fails loudly once torch changes;
then the matching rule here must go too. A rule returns the divergence's name (the reason an example is
excluded from parity) or None."""

from __future__ import annotations

from .cases import Case


def none(case: Case) -> str | None:
    """A loss with no divergence that excludes parity examples."""
    return None


def unbatched_target_of_shape_1_backward(case: Case) -> str | None:
    """NLL and cross-entropy: an unbatched input with a (1,) target computes, but its backward raises."""
    if case.input.ndim == 1 and case.target.shape == (1,):
        return (
            "torch 2.13 computes unbatched input (C,) with a (1,) target but its backward raises 'size mismatch' "
            "(test_unbatched_input_with_target_of_shape_1_has_no_backward)"
        )
    return None
