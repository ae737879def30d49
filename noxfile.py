"""Sessions: `verify` (the verification run), `tests` (the whole suite, once per torch release in the
matrix), `matrix` (the implementations matrix: adapters/), `mutants` (the kill table of the planted bugs), `soak`
(the suite under 20 random seeds), `bench` (speed), `lint`, `typecheck`.

CI runs `tests(torch='2.13.0')` (a CPU wheel); `nox -s "tests(torch='2.14.1')"` runs the suite on the
other release that installs offline here, `nox -s tests` on every release in TORCH_VERSIONS (extend it with
LOSS_PARITY_TORCH_VERSIONS="2.13.0 2.14.1 ..."). The other sessions install LOSS_PARITY_TORCH (default
torch==2.13.0). Arguments after `--` go to pytest.
"""

from __future__ import annotations

import glob
import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests(torch='2.13.0')"]
nox.options.error_on_missing_interpreters = True

TORCH = os.environ.get("LOSS_PARITY_TORCH", "torch==2.13.0")
# The releases the suite is run on (docs/verification-log.md records which were verified, when, and the result).
TORCH_VERSIONS = os.environ.get("LOSS_PARITY_TORCH_VERSIONS", "2.13.0 2.14.1").split()


# The torchvision that loads beside each torch release of the matrix, for the focal-loss checks against
# torchvision.ops.sigmoid_focal_loss. PyPI's torchvision 0.28.0 fails to load beside the CPU wheel of torch 2.13.0
# ("operator torchvision::nms does not exist"), so that release runs those checks skipped, the reason in the report.
TORCHVISION_FOR = {"2.14.1": "0.29.1"}


def _install_suite(session: nox.Session, torch: str = TORCH) -> None:
    # torch first, pinned, so that the unpinned torch in the test extra is already satisfied.
    session.install(torch)
    torchvision = TORCHVISION_FOR.get(torch.removeprefix("torch=="))
    if torchvision:
        session.install(f"torchvision=={torchvision}")
    session.install("-e", ".[test]")


EVIDENCE = os.environ.get("LOSS_PARITY_EVIDENCE", "evidence")


def _parallel(posargs: list[str]) -> list[str]:
    """pytest-xdist across every core unless the arguments choose otherwise (-n 0 runs serially); the evidence
    report and the end-of-run summary merge what the workers measured."""
    chosen = any(arg == "-n" or arg.startswith(("-n", "--numprocesses")) or arg == "no:xdist" for arg in posargs)
    return [] if chosen else ["-n", "auto"]


@nox.session
def verify(session: nox.Session) -> None:
    """The verification run: every value and gradient parity property, identity, rejection, named divergence,
    exhaustive sweep and oracle check, and the planted bugs, derandomized (ci profile), writing the evidence
    report and JUnit XML to evidence/ (LOSS_PARITY_EVIDENCE overrides)."""
    _install_suite(session)
    # Every property (tests/test_*.py) and, of the meta tests, the planted bugs: the report's mutation score.
    checks = [*sorted(glob.glob("tests/test_*.py")), "tests/meta/test_planted_bugs.py"]
    session.run(
        "pytest",
        *checks,
        "--hypothesis-profile=ci",
        f"--evidence={EVIDENCE}",
        f"--junitxml={EVIDENCE}/junit.xml",
        *_parallel(session.posargs),
        *session.posargs,
    )


@nox.session
@nox.parametrize("torch", TORCH_VERSIONS)
def tests(session: nox.Session, torch: str) -> None:
    """The whole suite, meta tests included (planted bugs, the comparison helper), on one torch release."""
    _install_suite(session, f"torch=={torch}")
    chosen = any(arg.startswith("--hypothesis-profile") for arg in session.posargs)
    profile = [] if chosen else ["--hypothesis-profile=ci"]
    session.run("pytest", *profile, *_parallel(session.posargs), *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Every planted bug (verification/losses/) through --impl, at ci depth: prints the kill table and
    writes it to evidence/mutants.json."""
    _install_suite(session)
    os.makedirs(EVIDENCE, exist_ok=True)
    session.run("python", "-m", "tests.meta.mutants", "--json", f"{EVIDENCE}/mutants.json", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The suite (meta tests aside) under 20 random seeds at ci depth, not derandomized: every failure with its
    seed and counterexample, written to evidence/soak.json. `-- --seeds N --first S` chooses the seeds."""
    _install_suite(session)
    os.makedirs(EVIDENCE, exist_ok=True)
    session.run("python", "-m", "tests.meta.soak", "--json", f"{EVIDENCE}/soak.json", "-n", "auto", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, never timed assertions: whole-suite wall time at ci depth serial and with -n auto (add
    `-- --thorough` for the thorough profile too), examples verified per second per loss, reference against torch
    float64 throughput on large inputs (alone with `-- --throughput-only`), the exhaustive sweeps' time; written to
    evidence/bench.json."""
    _install_suite(session)
    os.makedirs(EVIDENCE, exist_ok=True)
    session.run("python", "-m", "benchmarks.run", "--json", f"{EVIDENCE}/bench.json", *session.posargs)


@nox.session
def exhaustive(session: nox.Session) -> None:
    """Every float32 input of the exhaustive sweeps (exhaustive/sweeps.py: BCEWithLogits with and without pos_weight,
    BCE, two-class CrossEntropy, log_sigmoid, sigmoid, and the gradients) against the correctly rounded value, on
    every core; writes evidence/exhaustive/ (report.json, report.md, ulp_error.png) and resumes an interrupted run
    from its chunks there. Arguments after `--` go to `python -m exhaustive` (--workers, --no-resume, --slice N,
    --sweeps, --impl, --device)."""
    _install_suite(session)
    session.run("python", "-m", "exhaustive", "--out", f"{EVIDENCE}/exhaustive", *session.posargs)


@nox.session
def matrix(session: nox.Session) -> None:
    """The implementations matrix: the value, gradient and rejection properties at ci depth against torch's eager
    kernels and every adapter (adapters/: torch's decompositions, torch.compile, JAX, ONNX Runtime), each cell
    VERIFIED, FAILED, UNSUPPORTED, NAMED DIVERGENCE or NOT RUN; writes evidence/matrix/ (matrix.json, matrix.md,
    one evidence report per implementation). Choose implementations with `-- --implementations eager,compile`;
    other arguments go to each pytest run (-n auto unless they choose)."""
    _install_suite(session)
    session.install("-e", ".[test,matrix]")
    # Compiled code is kept between runs. inductor's graphs: one built before costs about 0.15 s instead of 2 s.
    # XLA's executables, every one however quick to build (the JAX port compiles each loss's forward and backward
    # once per new shape and static arguments, 50 to 300 ms each): a JAX gradient property took 19 s warm against
    # 32 s cold.
    # One inductor cache per build of torch's CPU kernels: inductor's cache serves code generated for the machine's
    # vector instructions to a process run under ATEN_CPU_CAPABILITY=default, whose C++ build of it then fails.
    capability = os.environ.get("ATEN_CPU_CAPABILITY", "native").lower()
    caches = {
        "TORCHINDUCTOR_CACHE_DIR": os.path.abspath(f".cache/torchinductor-{capability}"),
        "JAX_COMPILATION_CACHE_DIR": os.path.abspath(".cache/jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    session.run("python", "-m", "reporting.matrix", *_parallel(session.posargs), *session.posargs, env=caches)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on reference/ (the code whose correctness everything rests on), reporting/ and exhaustive/."""
    _install_suite(session)  # reporting/ is typed against torch, pytest, hypothesis and matplotlib
    session.install("mypy")
    session.run("mypy")
