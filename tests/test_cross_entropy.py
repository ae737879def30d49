"""CrossEntropyLoss and F.cross_entropy against the reference."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference
from tests.common.dtypes import PARITY_DTYPES
from tests.common.implementations import FORMS, torch_impl
from tests.common.properties import loss_matches_reference, variants_of


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("variant", variants_of("cross_entropy"), ids=str)
@given(data=st.data())
def test_cross_entropy_matches_reference(data, variant, dtype, form, device):
    """CrossEntropyLoss equals the reference within the tolerance model (each variant's claim: properties.py)."""
    case = data.draw(variant.cases(dtype), label="case")
    loss_matches_reference(case, torch_impl("cross_entropy", form), form=form, dtype=dtype, device=device)


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


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=["unbatched", "batched"])
def test_uint8_target_with_weight_smoothing_and_mean_is_rejected_by_torch(form, shape):
    """Named divergence (no upstream issue found): torch 2.13 accepts uint8 class-index targets, but raises
    "gather(): Expected dtype int32/int64 for index" when they meet class weights, label_smoothing > 0 and
    reduction 'mean'; the reference computes the documented value, which torch gives for the same int64 target."""
    x = np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)
    t = np.array(1, dtype=np.uint8) if len(shape) == 1 else np.array([0, 2], dtype=np.uint8)
    weight = np.array([0.5, 1.0, 2.0])
    kwargs = {"label_smoothing": 0.25, "weight": torch.as_tensor(weight)}
    with pytest.raises(RuntimeError, match="gather"):
        torch_impl("cross_entropy", form)(torch.as_tensor(x), torch.as_tensor(t), **kwargs)
    as_int64 = torch_impl("cross_entropy", form)(torch.as_tensor(x), torch.as_tensor(t.astype(np.int64)), **kwargs)
    ours = reference.cross_entropy(x, t, weight=weight, label_smoothing=0.25)
    assert ours == pytest.approx(as_int64.item(), rel=1e-14)
