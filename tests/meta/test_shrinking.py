"""How a failure is shrunk and reported: the element count read from a failure, the suite's minimiser, and a shrunk
counterexample's reproducer run from the repository's root. That each planted bug's shrunk counterexample is no
larger than before is asserted where the bug is caught (tests/meta/test_planted_bugs.py), in the same run."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib

import numpy as np

from tests.meta.hunting import PLANTED_BUGS, checks, elements_named
from verification.cases import Case
from verification.compare import ParityError
from verification.minimise import elements, minimised

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_element_count_is_read_from_every_array_the_failure_names():
    """The size read from a failure's first sentence counts every array it names, and a 0-d array as one element."""
    assert elements_named("nll_loss(input [2, 3], target [2], weight=<float64 [3]>) in functional form, x on cpu") == 11
    assert elements_named("binary_cross_entropy(input [], target []) in functional form, float64 on cpu") == 2
    assert elements_named("the gradient of kl_div(input [0, 4], target [4]) in functional form, float16 on cpu") == 4


def test_a_shrunk_counterexample_s_reproducer_runs_from_the_repository_root():
    """The reproducer of a shrunk planted-bug failure, run as printed from the repository's root, imports the planted
    implementation and prints its value and the reference's."""
    bug = next(bug for bug in PLANTED_BUGS if bug.area == "value")
    failure = None
    for check in checks("value", bug, "cpu", shrink=True):
        try:
            check()
        except ParityError as error:
            failure = str(error)
            break
    assert failure is not None, f"no value property caught {bug.loss}.{bug.name}"
    snippet = failure.split("Reproduce with:", 1)[1].split("Failing test case", 1)[0]
    printed = io.StringIO()
    previous = pathlib.Path.cwd()
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(printed):
            exec(compile(snippet, "<reproducer>", "exec"), {})
    finally:
        os.chdir(previous)
    lines = printed.getvalue().splitlines()
    assert any(line.startswith("reference") for line in lines), printed.getvalue()
    assert len(lines) >= 2, printed.getvalue()


BATCHED_NLL = Case(
    "nll_loss", np.arange(24.0).reshape(2, 3, 4), np.zeros((2, 4), dtype=np.int64), {"weight": np.ones(3)}
)


def test_the_minimiser_keeps_only_reductions_that_still_fail():
    """Where every case fails, the minimiser reaches an empty batch; where only cases of 3 or more input elements fail,
    it stops at the smallest such case it can reach, never at one that passes."""
    assert minimised(BATCHED_NLL, lambda case: True).input.shape == (0, 3, 4)
    smallest = minimised(BATCHED_NLL, lambda case: case.input.size >= 3)
    assert smallest.input.shape == (1, 3, 1) and smallest.target.shape == (1, 1)
    assert elements(smallest) < elements(BATCHED_NLL)
    assert minimised(BATCHED_NLL, lambda case: False) is BATCHED_NLL
