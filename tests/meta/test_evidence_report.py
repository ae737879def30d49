"""The evidence report: schema, failures with counterexamples, incomplete runs, determinism."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jsonschema
import pytest

from tests.meta.in_process import run_suite
from verification.dtypes import PARITY_DTYPES

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "reporting" / "report.schema.json").read_text())

CONFTEST = 'pytest_plugins = ["reporting.plugin", "tests.common.evidence_hooks"]\n'

PROPERTIES = '''
from hypothesis import given, settings
from torch.nn import functional as F

from verification import registry
from verification.dtypes import FLOAT64
from verification.properties import loss_matches_reference


def off_by_a_millionth(input, target, **kwargs):
    return F.nll_loss(input, target, **kwargs) * (1 + 1e-6)


@settings(max_examples=30, derandomize=True, database=None)
@given(case=registry.info("nll_loss").cases(FLOAT64))
def test_planted_bug(case):
    """A planted bug that scales NLL by 1 + 1e-6 disagrees with the reference."""
    loss_matches_reference(case, off_by_a_millionth, form="functional", dtype=FLOAT64, device="cpu")


@settings(max_examples=10, derandomize=True, database=None)
@given(case=registry.info("nll_loss").cases(FLOAT64))
def test_torch(case):
    """F.nll_loss agrees with the reference."""
    loss_matches_reference(case, F.nll_loss, form="functional", dtype=FLOAT64, device="cpu")
'''


@pytest.fixture
def suite_dir(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(CONFTEST)
    return pytester


def _report(pytester, *args, in_process=True):
    """Run the small suite and read its report: in this process (torch and the suite already imported), or in a
    fresh one where the run must be a process of its own (a signal it sends itself, xdist workers)."""
    run = pytester.runpytest_inprocess if in_process else pytester.runpytest_subprocess
    result = run("-p", "no:cacheprovider", "--evidence", "out", *args)
    out = pytester.path / "out"
    return result, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_a_failing_property_shows_up_as_failed_with_its_counterexample_in_both_files(suite_dir):
    """report.json matches its schema; the planted failure is marked failed, with its sentence and reproducer,
    in report.json and in report.md; the passing property reports what it compared."""
    suite_dir.makepyfile(test_demo=PROPERTIES)
    result, report, markdown = _report(suite_dir)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    jsonschema.validate(report, SCHEMA)
    assert report["verdict"].startswith("FAILED: 1 of 2") and report["complete"]
    checks = {check["id"].rsplit("::", 1)[-1]: check for check in report["checks"]}
    failed, passed = checks["test_planted_bug"], checks["test_torch"]
    assert failed["outcome"] == "failed"
    assert "exceeds the tolerance model's bound" in failed["failure"] and "Reproduce with:" in failed["failure"]
    assert failed["claim"] == "A planted bug that scales NLL by 1 + 1e-6 disagrees with the reference."
    assert passed["outcome"] == "passed" and passed["examples_compared"] > 0
    assert passed["worst"]["error_over_bound"] <= 1
    assert "**Verdict: FAILED: 1 of 2 checks failed**" in markdown
    assert f"torch's CPU kernels built for {report['environment']['cpu_capability']}" in markdown
    assert "## Failures and counterexamples" in markdown and "reference.nll_loss(x, t, **np_kwargs)" in markdown


def test_the_report_names_the_instruction_set_torch_s_cpu_kernels_were_built_for():
    """torch dispatches its CPU kernels to one build per instruction set (vector width, exp and log differ), which
    ATEN_CPU_CAPABILITY lowers: a run under ATEN_CPU_CAPABILITY=default reports DEFAULT, whatever the machine has."""
    read = "from reporting import fingerprint; print(fingerprint.environment('cpu')['cpu_capability'])"
    environment = os.environ | {"ATEN_CPU_CAPABILITY": "default"}
    printed = subprocess.run([sys.executable, "-c", read], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert printed.stdout.strip() == "DEFAULT", printed.stderr


def test_an_interrupted_run_leaves_a_report_marked_incomplete(suite_dir):
    """A run stopped by Ctrl-C writes a report whose verdict says INCOMPLETE and whose `complete` is false."""
    suite_dir.makepyfile(test_demo="def test_interrupted():\n    raise KeyboardInterrupt\n")
    (suite_dir.path / "out").mkdir()
    (suite_dir.path / "out" / "report.json").write_text('{"verdict": "VERIFIED: a stale report"}')
    # In this process, the Ctrl-C kept inside the run it stops (pytester re-raises it by default).
    suite_dir.inline_run("-p", "no:cacheprovider", "--evidence", "out", no_reraise_ctrlc=True)
    report = json.loads((suite_dir.path / "out" / "report.json").read_text())
    markdown = (suite_dir.path / "out" / "report.md").read_text()
    jsonschema.validate(report, SCHEMA)
    assert report["verdict"].startswith("INCOMPLETE") and report["complete"] is False
    assert "INCOMPLETE" in markdown


STOPPED_BY_A_TIME_LIMIT = """
import os, signal, time

def test_a_fails():
    assert 1 + 1 == 3, "a failure found before the time limit"

def test_b_is_stopped():
    os.kill(os.getpid(), signal.SIGTERM)  # what timeout(1) or a CI job's limit sends
    time.sleep(60)

def test_c_never_runs():
    pass
"""


def test_a_run_stopped_by_a_time_limit_still_reports_the_failures_it_found(suite_dir):
    """A run stopped by SIGTERM ends as Ctrl-C does: the failures found so far are printed and written to a report
    marked incomplete; the test it stopped, which has no outcome, is left out."""
    suite_dir.makepyfile(test_demo=STOPPED_BY_A_TIME_LIMIT)
    result, report, _ = _report(suite_dir, "-rf", in_process=False)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    output = result.stdout.str()
    assert "FAILED test_demo.py::test_a_fails" in output  # the summary line (cut to the terminal's width)
    assert "AssertionError: a failure found before the time limit" in output  # the failure, printed in full
    assert report["complete"] is False
    assert {check["id"]: check["outcome"] for check in report["checks"]} == {"test_demo.py::test_a_fails": "failed"}


def test_the_same_seed_on_the_same_machine_gives_the_same_report_apart_from_timing(suite_dir):
    """Two derandomized runs produce identical reports once the timing block is set aside."""
    suite_dir.makepyfile(test_demo=PROPERTIES)
    first = _report(suite_dir, "-k", "test_torch")[1]
    second = _report(suite_dir, "-k", "test_torch")[1]
    first.pop("timing"), second.pop("timing")
    assert first == second


def test_the_identity_map_is_drawn_from_the_run_s_own_measurements(tmp_path, pytester):
    """The grid check of BCE(sigmoid(x)) against BCEWithLogits(x) records its gaps, and the report draws the
    identity map from them (and says so in report.json)."""
    result = run_suite(
        pytester,
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_identities.py",
        "-k",
        "mapped",
        "--evidence",
        str(tmp_path),
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["figures"]["identity_map.png"] == "drawn"
    assert (tmp_path / "identity_map.png").read_bytes().startswith(b"\x89PNG")
    series = [name for check in report["checks"] for name in check.get("series", {})]
    assert sorted(series) == sorted(f"sigmoid_bce_gap/{d}/y={y}" for d in PARITY_DTYPES for y in (0, 1))


def test_a_run_split_over_xdist_workers_reports_every_check_with_its_measurements(suite_dir):
    """Under pytest -n 2 the controller merges what the workers measured: the same checks, the same counts."""
    suite_dir.makepyfile(test_demo=PROPERTIES)
    # The serial run in this process, the parallel one in a process of its own (xdist's workers are), both under
    # the same hypothesis profile (an inner run in this process would otherwise report the outer run's).
    profile = "--hypothesis-profile=default"
    _, serial, _ = _report(suite_dir, profile)
    _, parallel, _ = _report(suite_dir, profile, "-n", "2", in_process=False)
    for report in (serial, parallel):
        report.pop("timing")
        report["run"].pop("pytest_args"), report["run"].pop("reproduce")
        # The torch threads of the process that wrote the report: this one's is set by the outer run (one per xdist
        # worker when the suite itself runs under xdist), the controller's by nothing.
        report["environment"].pop("torch_threads")
    assert parallel == serial
