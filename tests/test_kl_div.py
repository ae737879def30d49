"""KLDivLoss and F.kl_div against the reference."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.common.dtypes import PARITY_DTYPES
from tests.common.implementations import FORMS
from tests.common.properties import loss_matches_reference, variants_of


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("variant", variants_of("kl_div"), ids=str)
@given(data=st.data())
def test_kl_div_matches_reference(data, variant, dtype, form, device, implementation):
    """KLDivLoss equals the reference within the tolerance model (each variant's claim: properties.py)."""
    case = data.draw(variant.cases(dtype), label="case")
    loss_matches_reference(case, implementation("kl_div", form), form=form, dtype=dtype, device=device)
