"""NLLLoss and F.nll_loss against the reference."""

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
def test_nll_loss_matches_reference(data, form, dtype, device):
    """NLLLoss equals the reference within the tolerance model for every layout, weight, ignore_index and reduction."""
    case = data.draw(strategies.nll_loss_cases(dtype), label="case")
    check_parity(case, torch_impl("nll_loss", form), form=form, dtype=dtype, device=device)
