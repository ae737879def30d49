"""CrossEntropyLoss and F.cross_entropy against the reference."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference
from tests.common import ledger, strategies
from tests.common.compare import check_parity
from tests.common.dtypes import PARITY_DTYPES
from tests.common.implementations import FORMS, torch_impl


def _is_unbatched_with_target_of_shape_1_and_smoothing(case):
    return case.input.ndim == 1 and case.target.shape == (1,) and case.kwargs.get("label_smoothing", 0.0) > 0


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("target_kind", ["index", "probability"])
@given(data=st.data())
def test_cross_entropy_matches_reference(data, target_kind, form, dtype, device):
    """CrossEntropyLoss equals the reference within the tolerance model, for index and probability targets,
    every layout, weight, ignore_index, label_smoothing and reduction."""
    case = data.draw(strategies.cross_entropy_cases(dtype, target_kind), label="case")
    if _is_unbatched_with_target_of_shape_1_and_smoothing(case):
        ledger.exclude("torch 2.13 rejects unbatched input with a (1,) target under label_smoothing (named divergence)")
    check_parity(case, torch_impl("cross_entropy", form), form=form, dtype=dtype, device=device)


@pytest.mark.parametrize("form", FORMS)
def test_unbatched_input_with_target_of_shape_1_and_smoothing_is_rejected_by_torch(form):
    """Named divergence: torch 2.13 raises a broadcast RuntimeError for input (C,), target (1,) and
    label_smoothing > 0, which the documented semantics define (the reference computes it as target ())."""
    x = np.array([0.5, -1.0, 2.0])
    t = np.array([1])
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        torch_impl("cross_entropy", form)(torch.as_tensor(x), torch.as_tensor(t), label_smoothing=0.25)
    # The reference gives the value the same call has with target of shape ().
    with_scalar_target = torch.nn.functional.cross_entropy(
        torch.as_tensor(x), torch.as_tensor(t[0]), label_smoothing=0.25
    ).item()
    assert reference.cross_entropy(x, t, label_smoothing=0.25) == pytest.approx(with_scalar_target, rel=1e-15)
