"""BCELoss and F.binary_cross_entropy against the reference."""

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
def test_binary_cross_entropy_matches_reference(data, form, dtype, device):
    """BCELoss equals the reference within the tolerance model, the -100 log clamp at p = 0 and p = 1 included."""
    case = data.draw(strategies.binary_cross_entropy_cases(dtype), label="case")
    check_parity(case, torch_impl("binary_cross_entropy", form), form=form, dtype=dtype, device=device)
