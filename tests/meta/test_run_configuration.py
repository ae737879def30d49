"""The run's configuration refuses what it cannot honour, instead of silently doing something else."""

import pytest

from tests.meta.in_process import run_suite


@pytest.mark.parametrize(
    ("device", "reason"),
    [("no-such-device", "is not a torch device string"), ("cuda:99", "is not available on this machine")],
)
def test_naming_a_device_this_machine_lacks_is_a_usage_error(device, reason, pytester):
    """`--device` with an unknown or absent device stops the run with pytest's usage-error exit (4) and says why."""
    result = run_suite(pytester, "--device", device, "--collect-only", "-q", "tests/test_reference_independence.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert reason in result.stderr.str(), result.stderr.str()


class _Run:
    """What the checks below read of a run: its exit status and its output."""

    def __init__(self, result: pytest.RunResult) -> None:
        self.returncode, self.stdout, self.stderr = result.ret, result.stdout.str(), result.stderr.str()


def _run(pytester, *args):
    return _Run(run_suite(pytester, "-q", "-p", "no:cacheprovider", "--hypothesis-profile=ci", *args))


def test_impl_aims_the_parity_properties_at_another_implementation(pytester):
    """With --impl, the loss's parity properties check that implementation: torch's own function passes, a planted
    bug fails with a reproducer that imports it, and the form it lacks is skipped with the reason printed."""
    # One dtype shows the mechanism (it makes no difference to how --impl is wired): float32, whose derandomized
    # examples include a weighted 'mean' over unequal weights, where this planted bug shows.
    genuine = _run(
        pytester,
        "tests/test_parity.py",
        "-k",
        "nll_loss and float32",
        "--impl",
        "nll_loss=torch.nn.functional:nll_loss",
        "-rs",
    )
    assert genuine.returncode == 0, genuine.stdout[-2000:]
    assert "is a functional implementation; the module form is torch's" in genuine.stdout
    planted = _run(
        pytester,
        "tests/test_parity.py",
        "-k",
        "nll_loss and float32",
        "--impl",
        "nll_loss=verification.losses.nll_loss:nll_weighted_mean_over_count",
    )
    assert planted.returncode == pytest.ExitCode.TESTS_FAILED, planted.stdout[-2000:]
    assert "from verification.losses.nll_loss import nll_weighted_mean_over_count as impl_under_test" in planted.stdout


def test_an_impl_that_cannot_be_imported_is_a_usage_error(pytester):
    """A misspelt --impl stops the run before any test, saying what is wrong."""
    result = _run(pytester, "tests/test_parity.py", "--impl", "nll_loss=no.such.module:f")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "No module named 'no'" in result.stderr


def test_the_worked_example_passes_value_and_gradient_parity(pytester):
    """examples/independent_cross_entropy.py, an implementation written from the formula, passes the cross-entropy
    value and gradient parity properties through --impl (shown here for class-index targets in float16, the dtype with
    least slack, to keep the run short; the README gives the command for every variant and dtype)."""
    result = _run(
        pytester,
        "tests/test_parity.py",
        "tests/test_gradients.py",
        "-k",
        "cross_entropy and matches_reference and float16 and index",
        "--impl",
        "cross_entropy=examples.independent_cross_entropy:cross_entropy",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "passed" in result.stdout and "failed" not in result.stdout


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


class _Config:
    """What pytest_collection_modifyitems reads of pytest's config: the --shard option, and the deselection hook."""

    def __init__(self, shard: str) -> None:
        self.shard, self.deselected = shard, []
        self.hook = self

    def getoption(self, name: str) -> str:
        assert name == "shard"
        return self.shard

    def pytest_deselected(self, items: list) -> None:
        self.deselected.extend(items)


def test_shards_deal_every_test_to_exactly_one_machine(pytester):
    """`--shard 1/3`, `2/3` and `3/3` keep disjoint sets of test ids whose union is the whole suite, each about a
    third; what a shard drops is reported as deselected; a malformed shard is a usage error."""
    from conftest import pytest_collection_modifyitems, shard_of

    ids = [f"tests/test_x.py::test_{i}[case {i % 7}]" for i in range(600)]
    kept = []
    for index in (1, 2, 3):
        items = [_Item(nodeid) for nodeid in ids]
        config = _Config(f"{index}/3")
        pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
        assert len(items) + len(config.deselected) == len(ids)
        kept.append({item.nodeid for item in items})
    assert set().union(*kept) == set(ids) and sum(map(len, kept)) == len(ids)
    assert all(150 <= len(shard) <= 250 for shard in kept), [len(shard) for shard in kept]
    for bad in ("0/3", "4/3", "two/3", "3"):
        with pytest.raises(pytest.UsageError):
            shard_of(bad)
    result = run_suite(pytester, "--collect-only", "-q", "--shard", "4/3", "tests/test_parity.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
