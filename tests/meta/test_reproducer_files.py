"""A reproducer of a large case loads its large arrays from .npy files, bit for bit, named after their contents;
small arrays stay literals; and the reproducer of a large case runs and prints torch's value and the reference's, as
every loss's gradient reproducer does."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest

from verification import reproducer
from verification.cases import Case
from verification.dtypes import PARITY_DTYPES
from verification.reproducer import LITERAL_LIMIT, array_literal, gradient_snippet, setup_lines, snippet

LOAD = re.compile(r"^np\.load\('(?P<path>[^']+)'\)$")


@pytest.fixture
def counterexamples(tmp_path, monkeypatch):
    directory = tmp_path / "counterexamples"
    monkeypatch.setenv("LOSS_PARITY_COUNTEREXAMPLES", str(directory))
    return directory


def rebuilt(expression: str) -> np.ndarray:
    namespace = {"np": np}
    exec(f"a = {expression}", namespace)
    return namespace["a"]


def special_floats(n: int, payload: bool = True) -> np.ndarray:
    """n float64 values among them NaN (with a second payload where ``payload``: a file keeps it, a literal's np.nan
    does not), +-inf, -0.0, subnormals, and values of every magnitude."""
    rng = np.random.default_rng(0)
    array = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -2.2250738585072e-308, 1 / 3, np.nextafter(1, 2)])
    array[: len(specials)] = specials
    if payload:
        array.view(np.uint64)[len(specials)] = 0x7FF8_0000_0000_0001  # a NaN with a payload of its own
    return array


def test_a_large_float_array_round_trips_bit_for_bit(counterexamples):
    """A float64 array past the limit becomes np.load of a file in the counterexamples directory, and what that
    expression rebuilds has the array's shape, dtype and every bit."""
    array = special_floats(5000).reshape(50, 100)
    expression = array_literal(array)
    match = LOAD.match(expression)
    assert match, expression[:200]
    assert match["path"].startswith(counterexamples.as_posix() + "/")
    again = rebuilt(expression)
    assert again.dtype == np.float64 and again.shape == (50, 100)
    assert np.array_equal(again.view(np.uint64), array.view(np.uint64))
    assert list(counterexamples.iterdir()) == [counterexamples / match["path"].rsplit("/", 1)[1]]


def test_the_setup_lines_load_the_large_arrays(counterexamples):
    """setup_lines' x and t, executed, are the case's arrays, bit for bit."""
    x, t = special_floats(LITERAL_LIMIT + 1), np.arange(LITERAL_LIMIT + 1) % 7
    lines = setup_lines(Case("nll_loss", x.reshape(-1, 1), t, {}), PARITY_DTYPES[0], "cpu")
    x_line = next(line for line in lines if line.startswith("x = "))
    t_line = next(line for line in lines if line.startswith("t = "))
    assert np.array_equal(rebuilt(x_line[4:]).view(np.uint64), x.reshape(-1, 1).view(np.uint64))
    assert np.array_equal(rebuilt(t_line[4:]), t) and rebuilt(t_line[4:]).dtype == t.dtype


def test_the_same_array_gets_the_same_file_and_different_arrays_different_files(counterexamples):
    array = special_floats(LITERAL_LIMIT + 2)
    first = array_literal(array)
    assert array_literal(array.copy()) == first
    assert len(list(counterexamples.iterdir())) == 1  # a rerun adds no file
    changed = array.copy()
    changed[-1] = np.nextafter(changed[-1], np.inf)
    with np.errstate(over="ignore"):
        as_float32 = array.astype(np.float32)
    reshaped = array.reshape(2, -1)  # the same bytes in another shape
    names = {
        first,
        array_literal(changed),
        array_literal(as_float32),
        array_literal(reshaped),
        array_literal(array[:-1]),
    }
    assert len(names) == 5, names
    assert len(list(counterexamples.iterdir())) == 5
    assert not [p for p in counterexamples.iterdir() if not p.name.endswith(".npy")]  # no temporary file left


@pytest.mark.parametrize(
    "array",
    [
        np.arange(LITERAL_LIMIT + 1, dtype=np.int64) - 2**62,
        np.arange(LITERAL_LIMIT + 1, dtype=np.int32),
        np.arange(LITERAL_LIMIT + 1) % 3 == 0,
        (np.arange(LITERAL_LIMIT + 1) % 256).astype(np.uint8),
    ],
    ids=["int64", "int32", "bool", "uint8"],
)
def test_large_integer_and_boolean_arrays_round_trip(counterexamples, array):
    expression = array_literal(array)
    assert LOAD.match(expression), expression[:200]
    again = rebuilt(expression)
    assert again.dtype == array.dtype and np.array_equal(again, array)


def test_arrays_up_to_the_limit_stay_literals(counterexamples):
    """An array of LITERAL_LIMIT elements or fewer is written out exactly, as before, and saves no file."""
    assert array_literal(np.array([0.5, -0.0, np.nan])) == "np.array([0.5, -0.0, np.nan], dtype=np.float64)"
    assert array_literal(np.zeros((0, 3))) == "np.zeros((0, 3), dtype=np.float64)"
    at_limit = special_floats(LITERAL_LIMIT, payload=False)
    expression = array_literal(at_limit)
    assert expression.startswith("np.array([")
    assert np.array_equal(rebuilt(expression).view(np.uint64), at_limit.view(np.uint64))
    assert not counterexamples.exists()


def test_the_default_directory_is_counterexamples_at_the_repository_root(monkeypatch, tmp_path):
    """Without LOSS_PARITY_COUNTEREXAMPLES, the path is counterexamples/<name>.npy, relative to the repository's
    root, where reproducers run (the root itself is pointed elsewhere here so that the test leaves nothing behind)."""
    monkeypatch.delenv("LOSS_PARITY_COUNTEREXAMPLES", raising=False)
    monkeypatch.setattr(reproducer, "ROOT", tmp_path)
    array = np.arange(LITERAL_LIMIT + 1, dtype=np.int64)
    match = LOAD.match(array_literal(array))
    assert match and re.fullmatch(r"counterexamples/[0-9a-f]{16}\.npy", match["path"]), match
    assert np.array_equal(np.load(tmp_path / match["path"]), array)


def test_a_relative_directory_is_taken_from_the_current_directory_and_written_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOSS_PARITY_COUNTEREXAMPLES", "elsewhere")
    match = LOAD.match(array_literal(np.arange(LITERAL_LIMIT + 1)))
    assert match and match["path"].startswith((tmp_path / "elsewhere").as_posix() + "/"), match
    assert (tmp_path / "elsewhere").is_dir()


@pytest.mark.parametrize("form", ["functional", "module"])
def test_a_large_case_s_snippet_runs_and_prints_both_results(counterexamples, form):
    """The reproducer of a 5000-element binary case is short, loads its arrays, and prints torch's value and the
    reference's, which agree."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5000)
    t = rng.random(5000)
    case = Case("binary_cross_entropy_with_logits", x, t, {"reduction": "sum"})
    text = snippet(case, PARITY_DTYPES[0], "cpu", form)
    assert len(text) < 2000, len(text)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(text, "<reproducer>", "exec"), {})
    lines = output.getvalue().splitlines()
    assert lines[0].startswith("torch") and lines[1].startswith("reference"), lines
    got = float(re.search(r"tensor\(([-0-9.e+]+)", lines[0])[1])
    want = float(lines[1].split()[-1])
    assert got == pytest.approx(want, rel=1e-6)  # torch prints 4 decimals


GRADIENT_CASES = [
    Case("binary_cross_entropy", np.array([0.25, 0.5]), np.array([0.0, 1.0]), {}),
    Case("binary_cross_entropy_with_logits", np.array([0.25, -3.0]), np.array([0.0, 1.0]), {"reduction": "sum"}),
    Case("nll_loss", np.array([[-1.0, -2.0], [-0.5, -3.0]]), np.array([0, 1]), {}),
    Case("cross_entropy", np.array([[1.0, 2.0], [0.5, -3.0]]), np.array([0, 1]), {"label_smoothing": 0.25}),
    Case("kl_div", np.array([-1.0, -2.0]), np.array([0.5, 0.5]), {"reduction": "batchmean"}),
]


@pytest.mark.parametrize("case", GRADIENT_CASES, ids=lambda case: case.loss)
def test_every_loss_s_gradient_reproducer_runs_and_prints_both_gradients(counterexamples, case):
    """A gradient failure's reproducer imports the loss's reference gradient and prints torch's and the reference's
    gradients, equal here."""
    text = gradient_snippet(case, np.asarray(1.0), PARITY_DTYPES[0], "cpu", "functional")
    namespace: dict = {}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(text, "<reproducer>", "exec"), namespace)
    lines = output.getvalue().splitlines()
    assert lines[0].startswith("torch") and any(line.startswith("reference") for line in lines), lines
    torch_gradient = namespace["input"].grad.numpy()
    reference_gradient = namespace[f"{case.loss}_grad"](namespace["x"], namespace["t"], **namespace["np_kwargs"])
    np.testing.assert_allclose(torch_gradient, reference_gradient, rtol=1e-12, atol=1e-15)
