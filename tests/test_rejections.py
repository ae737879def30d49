"""Error parity: every input torch rejects, the reference rejects too, with the same exception class.

Each loss's defects (one thing wrong with an otherwise valid call, and the exception class torch 2.13 was
measured to raise for it) are declared by its registry entry; their strategies are in verification/rejections.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verification import registry
from verification.compare import check_same_rejection
from verification.implementations import FORMS, label, rejection_divergence
from verification.rejections import DTYPE

DEFECTS = registry.all_rejections()


# Rejection is a yes/no fact about one defect, settled in fewer examples than a value comparison: a fifth of the
# active profile's budget (the profile is loaded before test modules are imported).
@settings(max_examples=max(20, settings.default.max_examples // 5))
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("defect", DEFECTS, ids=str)
@given(data=st.data())
def test_torch_and_reference_reject_the_same_inputs(data, defect, form, device, implementation):
    """For a call with one defect, torch and the reference both raise, with the same exception class."""
    impl = implementation(defect.loss, form)
    divergence = rejection_divergence(impl, defect)
    if divergence:  # an --impl adapter's own named divergence
        pytest.skip(f"named divergence of {label(impl)}: {divergence}")
    case = data.draw(defect.cases(), label="case")
    raised = check_same_rejection(case, impl, form=form, dtype=DTYPE, device=device)
    if raised is not None:  # None: the implementation lacks an argument of the case (counted, the reason named)
        expected = defect.expected.__name__
        assert raised is defect.expected, f"{defect}: both raised {raised.__name__}, expected {expected}"


@settings(max_examples=max(20, settings.default.max_examples // 5))
@pytest.mark.parametrize("defect", [d for d in DEFECTS if registry.info(d.loss).reference_gradient], ids=str)
@given(data=st.data())
def test_the_reference_gradient_rejects_what_the_reference_loss_rejects(data, defect):
    """The reference's gradient of a call with one defect raises the loss's own exception, message included:
    a gradient that skipped one of the loss's checks would compute a derivative where torch raises."""
    case = data.draw(defect.cases(), label="case")
    loss, gradient = registry.info(defect.loss).reference, registry.reference_gradient(defect.loss)
    with pytest.raises(Exception) as by_the_loss:
        loss(case.input, case.target, **case.kwargs)
    with pytest.raises(Exception) as by_the_gradient:
        gradient(case.input, case.target, **case.kwargs, grad_output=1.0)
    assert (type(by_the_gradient.value), str(by_the_gradient.value)) == (
        type(by_the_loss.value),
        str(by_the_loss.value),
    ), f"{case.describe()}: the loss raised {by_the_loss.value!r}, its gradient {by_the_gradient.value!r}"
