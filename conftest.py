"""Run configuration: hypothesis profiles, the --device option and the run's closing summary.

Profiles (choose with --hypothesis-profile=NAME; ``ci`` is the default when CI=true):
  dev       quick local feedback, random seeds, example database on;
  ci        derandomized (same examples every run), no example database;
  thorough  20x the ci examples, for a deep run before citing results.
"""

from __future__ import annotations

import json
import os
import zlib

import pytest
import torch
from hypothesis import HealthCheck, settings

from verification import ledger
from verification.implementations import FORMS, ImplUnderTest, adapter_specs, implementation_under_test

# The evidence plugin (reporting/), the hooks that hand it what each test measured, and pytester for the
# meta tests that run the plugin on small suites of their own.
pytest_plugins = ["reporting.plugin", "tests.common.evidence_hooks", "pytester"]

CI_EXAMPLES = 100

_common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=15, **_common)
settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, database=None, **_common)
settings.register_profile("thorough", max_examples=20 * CI_EXAMPLES, **_common)
# ci's depth with a fresh random seed per run (pass --hypothesis-seed): what nox -s soak repeats to measure flakiness.
settings.register_profile("soak", max_examples=CI_EXAMPLES, database=None, **_common)
DEFAULT_PROFILE = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
settings.load_profile(DEFAULT_PROFILE)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        action="append",
        default=[],
        metavar="LOSS=module:attribute | ADAPTER",
        help="verify another implementation of LOSS (a function with torch's functional signature, or an "
        "nn.Module class) instead of torch's; repeat for several losses. An adapter's name (decompositions, "
        "compile: see adapters/) aims the suite at every loss that adapter has",
    )
    parser.addoption(
        "--device",
        default="cpu",
        help="torch device to verify on: any torch device string (cpu, cuda, cuda:1, mps, ...). Default: cpu.",
    )
    parser.addoption(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (1 <= I <= N): every test id is dealt to one shard by a stable hash, so N "
        "machines given 1/N ... N/N together run the whole suite once; each evidence report names its shard",
    )


def shard_of(spec: str | None) -> tuple[int, int] | None:
    """(I, N) from "I/N", or None when the option is absent."""
    if not spec:
        return None
    index, _, count = spec.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise pytest.UsageError(f"--shard {spec!r}: expected I/N with whole numbers, for example 2/4") from None
    if not 1 <= i <= n:
        raise pytest.UsageError(f"--shard {spec!r}: I must lie between 1 and N")
    return i, n


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = shard_of(config.getoption("shard"))
    if shard is None:
        return
    index, count = shard
    # crc32 of the test id: the same on every machine and every run (Python's hash() is salted per process).
    mine = [item for item in items if zlib.crc32(item.nodeid.encode()) % count == index - 1]
    others = [item for item in items if zlib.crc32(item.nodeid.encode()) % count != index - 1]
    items[:] = mine
    config.hook.pytest_deselected(items=others)


def _usable_device(name: str) -> str:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f"--device {name!r} is not a torch device string: {error}") from None
    try:
        torch.zeros(1, device=device) + 1
    except (RuntimeError, AssertionError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise pytest.UsageError(f"--device {name!r} is not available on this machine: {first_line}") from None
    return str(device)


def _implementations(specs: list[str]) -> dict[str, ImplUnderTest]:
    chosen: dict[str, ImplUnderTest] = {}
    for given in specs:
        try:
            impls = [ImplUnderTest(spec) for spec in adapter_specs(given)]
        except (ValueError, ImportError, AttributeError) as error:
            raise pytest.UsageError(f"--impl {given!r}: {error}") from None
        chosen.update((impl.loss, impl) for impl in impls)
    return chosen


IMPLEMENTATIONS = pytest.StashKey[dict[str, ImplUnderTest]]()


def _share_the_cores_between_xdist_workers() -> None:
    """Each xdist worker takes its share of the cores for torch's intra-op threads: left at torch's default (every
    core) in every worker, N workers run N x cores threads that spin against each other. Any thread count is safe:
    the tolerance model bounds sums in any order."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_configure(config: pytest.Config) -> None:
    _share_the_cores_between_xdist_workers()
    config.option.device = _usable_device(config.getoption("device"))
    config.stash[IMPLEMENTATIONS] = _implementations(config.getoption("impl"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    """A property that compared nothing because of the implementation under test (every case asks for an argument
    its adapter declares unsupported, or falls under one of its named divergences) is skipped with the reason, as
    the matrix's UNSUPPORTED or NAMED DIVERGENCE, never passed with nothing compared."""
    result = yield
    reason = ledger.left_out_by_the_implementation(item.nodeid)
    if reason:
        pytest.skip(reason)
    return result


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("device"))


@pytest.fixture(scope="session")
def implementation(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """``implementation(loss, form)``: torch's, or the one given with --impl."""
    impls = pytestconfig.stash[IMPLEMENTATIONS]
    return lambda loss, form: implementation_under_test(impls, loss, form)


@pytest.fixture(scope="session")
def implementation_in_its_form(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """``implementation_in_its_form(loss) -> (impl, form)``: the --impl for this loss in the one form it has, or
    torch's functional form."""
    impls = pytestconfig.stash[IMPLEMENTATIONS]

    def choose(loss: str):  # type: ignore[no-untyped-def]
        form = impls[loss].form if loss in impls else "functional"
        return implementation_under_test(impls, loss, form), form

    return choose


@pytest.fixture(scope="session")
def forms_of(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """``forms_of(loss)``: the forms a property checks for the loss: both of torch's, or the one the --impl has."""
    impls = pytestconfig.stash[IMPLEMENTATIONS]
    return lambda loss: [impls[loss].form] if loss in impls else list(FORMS)


def pytest_report_header(config: pytest.Config) -> list[str]:
    import hypothesis
    import numpy

    return [
        f"loss-parity: torch {torch.__version__} on {config.getoption('device')}, numpy {numpy.__version__}, "
        f"hypothesis {hypothesis.__version__}, profile {config.getoption('hypothesis_profile') or DEFAULT_PROFILE}"
    ]


# What each test reported having measured (its ``loss_parity`` user property), gathered from the test
# reports so that the summary is complete under pytest-xdist too, where the workers measure.
MEASURED: dict[str, dict[str, object]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "loss_parity":
            MEASURED[report.nodeid] = json.loads(str(value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    measured = {test: entry for test, entry in MEASURED.items() if "examples_compared" in entry}
    if not measured:
        return
    write = terminalreporter.write_line
    terminalreporter.section("loss-parity: what each property compared")
    for test, entry in sorted(measured.items()):
        worst: dict[str, float] = entry["worst"]  # type: ignore[assignment]
        compared = entry["examples_compared"]
        words = (
            f"worst error {worst['abs_error']:.3g} = {worst['error_over_bound']:.3g} x its bound {worst['bound']:.3g}"
            if compared
            else "nothing compared"
        )
        write(f"{test}: {compared} compared, {words}")
        excluded: dict[str, int] = entry["examples_excluded"]  # type: ignore[assignment]
        for reason, count in sorted(excluded.items(), key=lambda item: -item[1]):
            write(f"    excluded {count}x: {reason}")
