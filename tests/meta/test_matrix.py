"""The implementations matrix (reporting/matrix.py): how an implementation's evidence report becomes its cells, and
what matrix.md says of each, from reports written here with every kind of outcome."""

import pathlib
import types

import pytest

from reporting import matrix

REPRODUCER = "import torch\nprint(torch.nn.functional.nll_loss(x, t))"
FAILURE = (
    "ParityError: nll_loss(input [1, 3], target [1]) in functional form, float32 on cpu: adapters.x:nll_loss gave 1.0 "
    f"where the reference gives 2.0\n\nReproduce with:\n\n{REPRODUCER}\n\nthe rest of the traceback"
)


def _check(loss, kind, dtype, outcome, **more):
    return {
        "id": f"{loss}-{kind}-{dtype}-{outcome}",
        "loss": loss,
        "kind": kind,
        "dtype": dtype,
        "outcome": outcome,
    } | more


def _report(checks, **more):
    environment = {
        "torch": "2.13.0",
        "device": "cpu",
        "device_name": "a CPU",
        "python": "3.11",
        "cpu_capability": "AVX2",
    }
    return {"verdict": "FAILED", "environment": environment, "checks": checks, "matrix_run_seconds": 1.0} | more


CHECKS = [
    # a failed check makes its cell FAILED, whatever else passed
    _check("nll_loss", "parity", "float32", "failed", failure=FAILURE),
    _check("nll_loss", "parity", "float32", "passed", examples_compared=100),
    # passed checks, one with a named divergence's skip beside it and cases excluded under named rules
    _check("nll_loss", "parity", "float64", "passed", examples_compared=90, examples_excluded={"a rule (test_a)": 3}),
    _check("nll_loss", "parity", "float64", "skipped", skip_reason="named divergence of x: y"),
    # every check skipped as unsupported
    _check("nll_loss", "gradient", "float32", "skipped", skip_reason="UNSUPPORTED by x: no backward pass"),
    # every check left out under a named divergence
    _check("nll_loss", "rejection", "float32", "skipped", skip_reason="named divergence of x: accepts int32"),
    # some checks left out under a named divergence, the others unsupported: the divergence, the reasons listed
    _check("cross_entropy", "rejection", "float32", "skipped", skip_reason="named divergence of x: int32"),
    _check("cross_entropy", "rejection", "float32", "skipped", skip_reason="UNSUPPORTED by x: no smoothing"),
    _check("cross_entropy", "rejection", "float32", "skipped", skip_reason="UNSUPPORTED by x: no smoothing"),
    _check("cross_entropy", "rejection", "float32", "skipped", skip_reason="UNSUPPORTED by x: no 1-D input"),
    # one check lacked as a whole (the backward pass), the other's every case left out first under a named
    # divergence: the implementation lacks that one too, so the cell is UNSUPPORTED, the divergence listed
    _check("kl_div", "gradient", "float32", "skipped", skip_reason="UNSUPPORTED by x: no backward (the whole check)"),
    _check("kl_div", "gradient", "float32", "skipped", skip_reason="named divergence of x: log targets"),
    # skipped for another reason only: never a pass
    _check("kl_div", "parity", "float32", "skipped", skip_reason="the module form: the adapter is a function"),
]


def _cells():
    return {(c["loss"], c["check"], c["dtype"]): c for c in matrix.cells("x", _report(CHECKS))}


def test_each_cell_takes_the_verdict_of_its_checks():
    cells = _cells()
    assert cells["nll_loss", "values", "float32"]["verdict"] == "FAILED"
    assert cells["nll_loss", "values", "float64"]["verdict"] == "VERIFIED"
    assert cells["nll_loss", "values", "float64"]["named_divergences"] == ["named divergence of x: y"]
    assert cells["nll_loss", "values", "float64"]["excluded"] == {"a rule (test_a)": 3}
    assert cells["nll_loss", "gradients", "float32"] == cells["nll_loss", "gradients", "float32"] | {
        "verdict": "UNSUPPORTED",
        "reason": "x: no backward pass",
    }
    # rejections make one cell per loss, of any dtype
    assert cells["nll_loss", "rejections", "any"]["verdict"] == "NAMED DIVERGENCE"
    assert cells["cross_entropy", "rejections", "any"] == cells["cross_entropy", "rejections", "any"] | {
        "verdict": "NAMED DIVERGENCE",
        "reason": "named divergence of x: int32",
        "unsupported": ["x: no 1-D input", "x: no smoothing"],
    }
    assert cells["kl_div", "gradients", "float32"] == cells["kl_div", "gradients", "float32"] | {
        "verdict": "UNSUPPORTED",
        "reason": "x: no backward (the whole check)",
        "named_divergences": ["named divergence of x: log targets"],
    }
    assert cells["kl_div", "values", "float32"]["verdict"] == "NOT RUN"
    assert "module form" in cells["kl_div", "values", "float32"]["reason"]


def test_a_failed_cell_carries_the_sentence_and_the_reproducer():
    cell = _cells()["nll_loss", "values", "float32"]
    assert cell["counterexample"].startswith("nll_loss(input [1, 3], target [1]) in functional form")
    assert cell["reproducer"] == REPRODUCER
    built = matrix.build({"x": _report(CHECKS)})
    text = matrix.render(built)
    assert "torch 2.13.0, cpu (a CPU, torch's CPU kernels built for AVX2), Python 3.11." in text
    assert "| nll_loss | values | float32 | FAILED |" in text
    assert "| nll_loss | values | float64 | VERIFIED (2 named) |" in text
    assert f"```python\n{REPRODUCER}\n```" in text
    assert "- x: nll_loss gradients, float32: x: no backward pass" in text
    assert "- x: cross_entropy rejections, any: named divergence of x: int32; unsupported: x: no 1-D input" in text
    assert (
        "- x: kl_div gradients, float32: x: no backward (the whole check); cases left out first under: named "
        "divergence of x: log targets" in text
    )


def test_the_runs_name_versions_and_a_flushing_arithmetic():
    under_test = [
        {"spec": "x", "versions": {"jax": "0.1"}, "flushes_subnormals": ["float32"], "sums_in_any_order": True}
    ]
    text = matrix.render(matrix.build({"x": _report(CHECKS, implementations_under_test=under_test)}))
    assert "jax 0.1; bounds for flush-to-zero arithmetic in float32; sums bounded for any order in the storage" in text


def test_an_adapter_has_cells_only_for_its_losses_and_the_properties_aimed_at_it(monkeypatch):
    """An adapter with NLL and cross-entropy only (as the ONNX operators adapter, whose packages CI lacks: its LOSSES
    stand in here): in its run the other losses were torch's, and a gradcheck of torch is no property of the adapter;
    neither makes a cell of that column."""
    import adapters

    monkeypatch.setattr(adapters, "load", lambda name: types.SimpleNamespace(LOSSES=("nll_loss", "cross_entropy")))
    PARITY = "tests/test_parity.py::test_loss_matches_reference"
    checks = [
        _check("nll_loss", "parity", "float32", "passed", id=PARITY + "[x]"),
        _check("binary_cross_entropy", "parity", "float32", "passed", id=PARITY + "[y]"),
        _check("nll_loss", "gradient", "float64", "passed", id="tests/test_gradients.py::test_torch_gradients_pass[z]"),
    ]
    made = {(c["loss"], c["check"], c["dtype"]) for c in matrix.cells("onnxruntime-operators", _report(checks))}
    assert made == {("nll_loss", "values", "float32")}


@pytest.mark.parametrize("failing", [False, True], ids=["verified", "failed"])
def test_the_run_exits_non_zero_when_a_cell_failed(monkeypatch, tmp_path, failing, capsys):
    """`python -m reporting.matrix` (what `nox -s matrix` runs) writes the matrix whatever the verdicts, and exits 1,
    naming each FAILED cell, when one failed: a job gating on it stops; 0 otherwise."""
    checks = [_check("nll_loss", "parity", "float64", "passed", examples_compared=4)]
    if failing:
        checks.append(_check("nll_loss", "parity", "float32", "failed", failure=FAILURE))
    monkeypatch.setattr(matrix, "run_implementation", lambda name, out, pytest_args: _report(checks))
    assert matrix.main(["--implementations", "eager", "--out", str(tmp_path)]) == int(failing)
    assert (tmp_path / "matrix.json").exists() and (tmp_path / "matrix.md").exists()
    printed = capsys.readouterr().out
    assert ("FAILED: eager: nll_loss values, float32: nll_loss(input [1, 3]" in printed) == failing


# --- merging runs: shards, or implementations and dtypes run apart -----------------------------------


def _run_report(
    checks, *, shard=None, tests_sha256="tests", torch="2.13.0", capability="AVX2", complete=True, seconds=10.0
):
    """An evidence report as reporting/plugin.py writes it, with the fields a merge compares."""
    environment = dict(torch=torch, torch_git="abc", python="3.11", numpy="2", hypothesis="6", pytest="9")
    environment |= dict(device="cpu", device_name="a CPU", cuda=None, cudnn=None, cpu="a CPU", os="Linux")
    environment |= dict(cpu_capability=capability)
    suite = dict(version="0.1.0", git_commit="c0ffee", git_dirty=False, reference_sha256="r", verification_sha256="v")
    run = dict(hypothesis_profile="ci", hypothesis_seed=None, derandomized=True, exit_status=0, shard=shard)
    run["reproduce"] = f"pytest --shard {shard}" if shard else "pytest -k something"
    return {
        "verdict": "as its run said",
        "complete": complete,
        "environment": environment,
        "suite": suite | {"tests_sha256": tests_sha256},
        "run": run,
        "checks": checks,
        "timing": {"started_utc": "2026-12-03T10:00", "finished_utc": "2026-12-03T10:01", "wall_seconds": seconds},
        "implementations_under_test": [],
    }


def _write_runs(tmp_path, runs):
    """Each run an --out directory of the matrix tool: {implementation: report} -> the directory."""
    import json

    directories = []
    for k, run in enumerate(runs):
        for name, report in run.items():
            (tmp_path / f"run{k}" / name).mkdir(parents=True)
            (tmp_path / f"run{k}" / name / "report.json").write_text(json.dumps(report))
        directories.append(str(tmp_path / f"run{k}"))
    return directories


FLOAT32 = [_check("nll_loss", "parity", "float32", "passed", examples_compared=5)]
FLOAT64 = [_check("nll_loss", "parity", "float64", "failed", failure=FAILURE)]


def test_runs_made_apart_merge_into_the_matrix_one_run_makes(tmp_path):
    """Two runs of one implementation (one dtype each) and a third implementation's run: the merged matrix has the
    cells the checks of all of them make together, the verdict of all of them (one failed: FAILED), the seconds of
    both, and each run listed with how to reproduce it."""
    directories = _write_runs(
        tmp_path,
        [
            {"x": _run_report(FLOAT32, seconds=10.0)},
            {"x": _run_report(FLOAT64, seconds=20.0), "eager": _run_report(FLOAT32)},
        ],
    )
    out = tmp_path / "merged"
    assert matrix.main(["--merge", *directories, "--out", str(out)]) == 1  # the failed cell
    merged = matrix.merge([tmp_path / "run0", tmp_path / "run1"])
    assert merged["x"]["verdict"] == "FAILED: 1 of 2 checks failed"
    assert merged["x"]["matrix_run_seconds"] == 30.0
    together = matrix.cells("x", _report(FLOAT32 + FLOAT64))
    assert matrix.cells("x", merged["x"]) == together
    text = (out / "matrix.md").read_text()
    assert "part: as its run said (10.0 s, `pytest -k something`)" in text
    assert (out / "x" / "report.json").exists() and "FAILED: 1 of 2" in (out / "x" / "report.md").read_text()


def test_every_shard_of_a_run_merges_and_an_incomplete_run_stays_incomplete(tmp_path):
    """Shards 1/2 and 2/2 merge; one of them ended early, so the merged report is INCOMPLETE, as that run was."""
    shards = [_run_report(FLOAT32, shard="1/2"), _run_report(FLOAT64, shard="2/2", complete=False)]
    merged = matrix.merge([pathlib.Path(d) for d in _write_runs(tmp_path, [{"x": s} for s in shards])])
    assert merged["x"]["verdict"].startswith("INCOMPLETE") and not merged["x"]["complete"]
    assert [part["shard"] for part in merged["x"]["parts"]] == ["1/2", "2/2"]


@pytest.mark.parametrize(
    ("second", "refusal"),
    [
        (_run_report(FLOAT32), "ran in both"),
        (_run_report(FLOAT64, tests_sha256="other tests"), "differ in suite tests_sha256"),
        (_run_report(FLOAT64, torch="2.14.1"), "differ in environment torch"),
        (_run_report(FLOAT64, capability="DEFAULT"), "differ in environment cpu_capability"),
        (_run_report(FLOAT64, shard="2/3"), "some runs are shards and some are not"),
        (_run_report(FLOAT64) | {"implementations_under_test": [{"versions": {"jax": "0.2"}}]}, "other versions"),
    ],
    ids=[
        "the same check twice",
        "another suite",
        "another torch",
        "torch's kernels for another instruction set",
        "a shard beside a whole run",
        "another jax",
    ],
)
def test_runs_that_are_not_one_matrix_are_refused(tmp_path, second, refusal):
    """A check in two runs, runs of different tests, torches or kernel builds, a shard beside a run that is none: no
    matrix, and a sentence saying what differs."""
    directories = _write_runs(tmp_path, [{"x": _run_report(FLOAT32)}, {"x": second}])
    with pytest.raises(matrix.MergeError, match=refusal):
        matrix.merge([pathlib.Path(d) for d in directories])


def test_shards_merge_only_when_every_shard_is_there(tmp_path):
    directories = _write_runs(
        tmp_path, [{"x": _run_report(FLOAT32, shard="1/3")}, {"x": _run_report(FLOAT64, shard="3/3")}]
    )
    with pytest.raises(matrix.MergeError, match=r"not every shard of one run"):
        matrix.merge([pathlib.Path(d) for d in directories])
