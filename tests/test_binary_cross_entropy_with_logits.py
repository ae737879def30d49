"""BCEWithLogitsLoss and F.binary_cross_entropy_with_logits against the reference."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.common import strategies
from tests.common.compare import check_parity
from tests.common.dtypes import PARITY_DTYPES
from tests.common.implementations import FORMS, torch_impl


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@given(data=st.data())
def test_binary_cross_entropy_with_logits_matches_reference(data, form, dtype, device):
    """BCEWithLogitsLoss equals the reference within the tolerance model, with weight and right-aligned pos_weight."""
    case = data.draw(strategies.binary_cross_entropy_with_logits_cases(dtype), label="case")
    check_parity(case, torch_impl("binary_cross_entropy_with_logits", form), form=form, dtype=dtype, device=device)
