"""An adapter's ``Unsupported``: an argument it lacks leaves the case out with the reason counted; a whole check
it lacks (a dtype, the backward pass) is skipped with the reason the matrix reads as UNSUPPORTED."""

import numpy as np
import pytest
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import Unsupported
from tests.meta.in_process import run_suite
from verification import ledger
from verification.cases import Case, CaseBatch
from verification.compare import check_parity_batch
from verification.divergences import none
from verification.dtypes import FLOAT64

CASE = Case("nll_loss", np.array([[0.5, -1.0, 2.0]]), np.array([2]), {"reduction": "sum"})


def _check(impl):
    check_parity_batch(CaseBatch.of(CASE), impl, form="functional", dtype=FLOAT64, device="cpu", divergence=none)


def test_an_unsupported_argument_leaves_the_case_out_with_its_reason():
    """Of two cases, the one the implementation lacks is left out, counted under its reason; the other is compared."""

    def lacks_positive_targets(input, target, **kwargs):
        if target.item() > 0:
            raise Unsupported("no class index above 0")
        return F.nll_loss(input, target, **kwargs)

    other = Case("nll_loss", CASE.input, np.array([0]), CASE.kwargs)
    batch = CaseBatch(
        "nll_loss", np.stack([CASE.input, other.input]), np.stack([CASE.target, other.target]), CASE.kwargs
    )
    ledger.RECORDS.pop(ledger.current_test(), None)

    @settings(max_examples=1, database=None)
    @given(st.just(batch))
    def check(batch):
        check_parity_batch(
            batch, lacks_positive_targets, form="functional", dtype=FLOAT64, device="cpu", divergence=none
        )

    check()
    record = ledger.RECORDS[ledger.current_test()]
    assert record.excluded == {"unsupported by torch: no class index above 0": 1}
    assert record.compared == 1


def test_a_whole_check_unsupported_is_skipped_with_its_reason():
    def lacks_float64(input, target, **kwargs):
        raise Unsupported("no float64 kernels", whole=True)

    with pytest.raises(pytest.skip.Exception, match="UNSUPPORTED by torch: no float64 kernels"):
        _check(lacks_float64)


def lacks_every_argument(input, target, **kwargs):
    """An implementation that supports no call at all: every case raises ``Unsupported`` for an argument."""
    raise Unsupported("no argument is supported")


def _only_skipped(pytester, path, selection, impl, skipped, reason):
    """Run ``path``'s tests selected by ``selection`` against ``impl`` in this process: exactly ``skipped`` tests,
    each skipped, none passed or failed, and the skip reason ``reason`` (a glob) printed."""
    result = run_suite(
        pytester, path, "-k", selection, "--impl", impl, "--hypothesis-profile=dev", "-p", "no:cacheprovider", "-rs"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == skipped and not outcomes.get("failed") and not outcomes.get("passed"), outcomes
    result.stdout.fnmatch_lines([reason])


LACKS_EVERYTHING = "nll_loss=tests.adapters.test_unsupported:lacks_every_argument"


def test_a_property_whose_every_case_is_unsupported_is_skipped_as_unsupported(pytester):
    """A property whose every case the implementation lacks ends skipped as UNSUPPORTED with the reason (what the
    matrix reads), not in hypothesis's health check for too many dropped examples, and not passed with nothing
    compared."""
    _only_skipped(
        pytester, "tests/test_parity.py", "nll_loss and float64 and functional", LACKS_EVERYTHING, 1,
        "*UNSUPPORTED by tests.adapters.test_unsupported:lacks_every_argument: no argument is supported*",
    )  # fmt: skip


def test_a_rejection_whose_every_case_is_unsupported_is_skipped_as_unsupported(pytester):
    """The rejection property too: a defect whose every case the implementation lacks ends skipped as UNSUPPORTED,
    not in hypothesis's health check."""
    _only_skipped(
        pytester, "tests/test_rejections.py", "nll_loss and functional and (unknown or 0-dimensional)",
        LACKS_EVERYTHING, 2, "*UNSUPPORTED by tests.adapters.test_unsupported:lacks_every_argument*",
    )  # fmt: skip


def test_a_property_whose_every_case_is_a_named_divergence_is_skipped_so(pytester):
    """A property whose every case falls under a named divergence of the implementation under test ends skipped with
    that divergence's name (the matrix's NAMED DIVERGENCE), not in hypothesis's health check."""
    _only_skipped(
        pytester, "tests/test_parity.py", "nll_loss and float64 and functional",
        "nll_loss=tests.adapters.diverging_everywhere:nll_loss", 1,
        "*named divergence of tests.adapters.diverging_everywhere:nll_loss: every case (no test: a meta test's)*",
    )  # fmt: skip
