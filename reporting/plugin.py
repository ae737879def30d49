"""pytest hooks that turn a run into report.json and report.md.

Per test, the test process attaches a ``loss_parity`` user property (JSON: the claim, the loss,
form, dtype and device, what was compared and excluded, the worst error against its bound, and
the failure's message when it failed). The controlling process (the only one under xdist) merges
them, adds fingerprints, and writes both files atomically at the very end. The previous report is
deleted when a run starts, so an interrupted run leaves either no report or one marked incomplete.
"""

from __future__ import annotations

import ast
import datetime
import json
import os
import pathlib
import re
import shlex
import signal
import threading
import time
from typing import Any

import pytest

from . import fingerprint, markdown, plots

SCHEMA_VERSION = "1.0"
PROPERTY_KEY = "loss_parity"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--evidence",
        metavar="DIR",
        default=None,
        help="write the evidence report (report.json, report.md) to DIR at the end of the run",
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def verdict_of(entries: list[dict[str, Any]], *, complete: bool, exitstatus: int) -> str:
    """A run's verdict from its checks: INCOMPLETE (ended early, or nothing ran), FAILED (how many), or VERIFIED
    (with how many were skipped: a skip is not a pass, the checks table says why)."""
    failed = [e for e in entries if e["outcome"] in ("failed", "error")]
    if not complete:
        return f"INCOMPLETE: the run ended early (pytest exit status {exitstatus}); do not cite it"
    if not entries:
        return "INCOMPLETE: no test ran"
    if failed:
        return f"FAILED: {len(failed)} of {len(entries)} checks failed"
    skipped = sum(1 for e in entries if e["outcome"] == "skipped")
    if skipped:
        return (
            f"VERIFIED: {len(entries) - skipped} checks passed, {skipped} skipped (each with its reason in the checks "
            "table)"
        )
    return f"VERIFIED: all {len(entries)} checks passed"


class EvidencePlugin:
    def __init__(self, config: pytest.Config, directory: pathlib.Path) -> None:
        self.config = config
        self.directory = directory
        self.entries: dict[str, dict[str, Any]] = {}
        # Tests that ran to an outcome: a test stopped mid-call by an interruption has none, and is left out.
        self.finished: set[str] = set()
        self.started = time.time()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "report.md"):
            (self.directory / name).unlink(missing_ok=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.entries.setdefault(report.nodeid, {"id": report.nodeid, "outcome": "passed"})
        for name, value in report.user_properties:
            if name == PROPERTY_KEY:
                entry.update(json.loads(str(value)))
        if report.when == "call" or report.failed or report.skipped:
            self.finished.add(report.nodeid)
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry.setdefault("failure", _last_lines(report.longreprtext))
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
            entry["skip_reason"] = _skip_reason(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        complete = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not session.shouldstop
        report = self._report(session, int(exitstatus), complete)
        report["figures"] = plots.draw(report, self.directory)
        _write_atomically(self.directory / "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
        _write_atomically(self.directory / "report.md", markdown.render(report))

    def _report(self, session: pytest.Session, exitstatus: int, complete: bool) -> dict[str, Any]:
        entries = sorted((e for e in self.entries.values() if e["id"] in self.finished), key=lambda e: e["id"])
        shard = self.config.getoption("shard", None)
        verdict = verdict_of(entries, complete=complete, exitstatus=exitstatus)
        if shard:
            verdict += f" (shard {shard} of the suite: cite it with the other shards' reports)"
        device = str(self.config.getoption("device", "cpu"))
        profile = self.config.getoption("hypothesis_profile", None) or _loaded_profile()
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": verdict,
            "complete": complete and bool(entries),
            "environment": fingerprint.environment(device),
            "suite": fingerprint.suite(ROOT),
            "run": {
                "hypothesis_profile": profile,
                "hypothesis_seed": self.config.getoption("hypothesis_seed", None),
                "derandomized": _derandomized(),
                "pytest_args": _verification_args(self.config),
                "reproduce": _reproduce_command(self.config),
                "exit_status": exitstatus,
                "shard": self.config.getoption("shard", None),
            },
            "summary": _summary(entries),
            "checks": entries,
            "divergences": [_divergence(e) for e in entries if e.get("kind") == "divergence"],
            "tolerance_model": _tolerance_model(),
            "implementations_under_test": _implementations_under_test(self.config),
            "losses": _losses(),
            "timing": {
                "started_utc": datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc).isoformat(),
                "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "wall_seconds": round(time.time() - self.started, 1),
            },
        }


TOLERANCE_MODEL = ROOT / "verification" / "tolerance" / "__init__.py"


def _tolerance_model() -> dict[str, str]:
    """Where the bounds came from: the tolerance module's own account of its reasoning, and its file."""
    source = TOLERANCE_MODEL.read_text(encoding="utf-8") if TOLERANCE_MODEL.exists() else ""
    description = ast.get_docstring(ast.parse(source)) if source else None
    return {"source": str(TOLERANCE_MODEL.relative_to(ROOT)), "description": description or "not found"}


def _implementations_under_test(config: pytest.Config) -> list[dict[str, Any]]:
    """Each --impl: an adapter's module, versions and flushing dtypes (adapters/), or the LOSS=module:attribute
    given."""
    import importlib

    import adapters

    described = []
    for spec in config.getoption("impl", None) or []:
        entry: dict[str, Any] = {"spec": spec, "versions": {}, "flushes_subnormals": [], "sums_in_any_order": False}
        module_name = adapters.ADAPTERS.get(spec) or spec.partition("=")[2].partition(":")[0]
        if spec in adapters.ADAPTERS:
            entry["adapter"] = module_name
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # the run itself reported it; the report still names what was asked for
            described.append(entry)
            continue
        versions = getattr(module, "versions", None)
        entry["versions"] = {str(k): str(v) for k, v in (versions() if callable(versions) else {}).items()}
        entry["flushes_subnormals"] = sorted(getattr(module, "FLUSHES_SUBNORMALS", ()))
        entry["sums_in_any_order"] = bool(getattr(module, "SUMS_IN_ANY_ORDER", False))
        described.append(entry)
    return described


def _loaded_profile() -> str | None:
    from hypothesis import settings

    name = getattr(settings, "_current_profile", None)  # not public API; None if hypothesis renames it
    return str(name) if name else None


def _derandomized() -> bool:
    from hypothesis import settings

    current = settings.default
    return bool(current is not None and current.derandomize)


# Options that say only where outputs go: they do not change what is verified, so the report
# leaves them out (and two runs that differ only there give the same report).
OUTPUT_OPTIONS = ("--evidence", "--junitxml", "--junit-xml", "--basetemp")


def _verification_args(config: pytest.Config) -> list[str]:
    args, kept = list(config.invocation_params.args), []
    while args:
        arg = args.pop(0)
        if arg in OUTPUT_OPTIONS:
            args = args[1:]
        elif not arg.startswith(tuple(f"{option}=" for option in OUTPUT_OPTIONS)):
            kept.append(arg)
    return kept


def _reproduce_command(config: pytest.Config) -> str:
    """The pytest command line that reruns this verification."""
    return shlex.join(["python3", "-m", "pytest", *_verification_args(config)])


def _summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for entry in entries:
        counts = by_kind.setdefault(entry.get("kind", "other"), {"passed": 0, "failed": 0, "error": 0, "skipped": 0})
        counts[entry["outcome"]] += 1
    summary: dict[str, Any] = {
        "checks": len(entries),
        "by_kind": by_kind,
        "examples_compared": sum(e.get("examples_compared", 0) for e in entries),
        "examples_excluded": sum(sum(e.get("examples_excluded", {}).values()) for e in entries),
        "examples_excluded_by_reason": _excluded_by_reason(entries),
    }
    planted = [e for e in entries if PLANTED_BUG_CHECK in e["id"]]
    if planted:
        summary["mutation_score"] = {
            "caught": sum(e["outcome"] == "passed" for e in planted),
            "planted": len(planted),
            "survivors": sorted(e["id"].split("[", 1)[-1].rstrip("]") for e in planted if e["outcome"] != "passed"),
        }
    return summary


def _excluded_by_reason(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Every excluded example of the run, counted by its reason: the tolerance model's rule that left its bound
    infinite, or the named divergence it falls under."""
    counts: dict[str, int] = {}
    for entry in entries:
        for reason, count in entry.get("examples_excluded", {}).items():
            counts[reason] = counts.get(reason, 0) + int(count)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _losses() -> list[dict[str, Any]]:
    """Each loss the registry declares, with the parts it has and each gap with its reason: what the run could
    check of it and what it could not."""
    from verification import registry  # the suite's registry; imported here so that the plugin loads without it

    losses = []
    for entry in registry.LOSSES:
        parts = registry.parts_and_gaps(entry)
        losses.append(
            {
                "name": entry.name,
                "parts": {part: status for part, status in parts.items() if not status.startswith("gap: ")},
                "gaps": {part: status[len("gap: ") :] for part, status in parts.items() if status.startswith("gap: ")},
            }
        )
    return losses


# The meta test that runs each planted bug (verification/losses/) against the suite's properties.
PLANTED_BUG_CHECK = "test_planted_bugs.py::test_a_property_catches_planted_bug["


def _divergence(entry: dict[str, Any]) -> dict[str, Any]:
    claim = entry.get("claim", "")
    links = [f"https://github.com/pytorch/pytorch/issues/{n}" for n in re.findall(r"(?:pytorch)?#(\d{4,6})", claim)]
    return {"id": entry["id"], "claim": claim, "links": links, "outcome": entry["outcome"]}


def _last_lines(text: str, limit: int = 12000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _write_atomically(path: pathlib.Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


_PREVIOUS_SIGTERM = pytest.StashKey[Any]()


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum} (a time limit?)")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # A deep run stopped by a time limit (timeout(1), a CI job's limit: SIGTERM) ends as Ctrl-C does: pytest still
    # prints the failures found so far, with their counterexamples, and the report is written, marked incomplete.
    # Otherwise the process dies on the spot, and with pytest-xdist even the names of the failed tests are lost.
    # Only the controlling process, and only where nothing else has claimed the signal.
    if not _is_worker(config) and threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            config.stash[_PREVIOUS_SIGTERM] = signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    directory = config.getoption("evidence")
    if directory and not _is_worker(config):
        config.pluginmanager.register(EvidencePlugin(config, pathlib.Path(directory)), "loss-parity-evidence")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PREVIOUS_SIGTERM in config.stash:
        signal.signal(signal.SIGTERM, config.stash[_PREVIOUS_SIGTERM])
