"""The implementations matrix: every implementation x every loss x every dtype, each cell VERIFIED, FAILED (with
its first shrunk counterexample and reproducer) or UNSUPPORTED (with the reason).

``python -m reporting.matrix`` runs the value, gradient and rejection properties once per implementation (torch's
eager kernels, and each adapter of ``adapters/`` through ``--impl``), each run writing its own evidence report,
then reads those reports into ``matrix.json`` and ``matrix.md``. ``nox -s matrix`` installs what the adapters
need and runs it.

A cell is the checks of one loss and dtype (rejections: of one loss, any dtype) for one implementation:
FAILED if any of them failed, UNSUPPORTED if every one was skipped as unsupported by the implementation, or if
none passed and one was skipped because the implementation lacks the whole check (a dtype, the backward pass: then
so does every check of the cell, whatever a named divergence left out first), VERIFIED if every one that ran
passed ("(N named)": N named divergences left cases or checks out), NAMED DIVERGENCE if none passed and at least
one was left out under a named divergence of the implementation (the rest unsupported for an argument they lack:
their reasons are listed with it). A skip for another reason (the module form, which an adapter does
not have) is named in the cell, never counted as a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Any

from reporting import markdown
from verification.ledger import WHOLE_CHECK

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The properties a cell is made of, by the kind the evidence report gives them.
CHECKS = {"parity": "values", "gradient": "gradients", "rejection": "rejections"}
PROPERTY_FILES = ["tests/test_parity.py", "tests/test_gradients.py", "tests/test_rejections.py"]
# torch's eager kernels (no --impl) first, then the adapters (adapters.ADAPTERS) in the order given.
EAGER = "eager"


def run_implementation(name: str, out: pathlib.Path, pytest_args: list[str]) -> dict[str, Any]:
    """Run the properties against one implementation; its evidence report, with how long the run took."""
    directory = out / name
    impl, own = [], []
    if name != EAGER:
        import adapters

        impl = [f"--impl={name}"]
        # The adapter's own tests: that it exercises its implementation, and its named divergences.
        own_tests = ROOT / "tests" / "adapters" / f"test_{adapters.ADAPTERS[name].rsplit('.', 1)[1]}.py"
        own = [str(own_tests.relative_to(ROOT))] if own_tests.exists() else []
    command = [
        sys.executable, "-m", "pytest", *PROPERTY_FILES, *own, "--hypothesis-profile=ci", *impl,
        f"--evidence={directory}", "-p", "no:cacheprovider", "-q", *pytest_args,
    ]  # fmt: skip
    started = time.time()
    completed = subprocess.run(command, cwd=ROOT, check=False)
    seconds = time.time() - started
    report_path = directory / "report.json"
    if not report_path.exists():
        raise SystemExit(f"{name}: pytest exited {completed.returncode} without an evidence report")
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["matrix_run_seconds"] = round(seconds, 1)
    return report


def _reproducer(failure: str) -> str:
    _, found, after = failure.partition("Reproduce with:")
    if not found:
        return ""
    lines = []
    for line in after.strip("\n").splitlines():
        line = re.sub(r"^\s*\|\s?", "", line)  # hypothesis's exception-group margin
        if not line.strip():
            break
        lines.append(line)
    return "\n".join(lines)


def _sentence(failure: str) -> str:
    """The failure's sentence: what the suite's own check said (a parity or rejection mismatch, or an adapter that
    did not run its implementation), else the last exception line."""
    found = []
    for line in failure.splitlines():
        match = re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Mismatch)): (.*)", re.sub(r"^\s*\|\s?", "", line).strip())
        if match:
            found.append(match)
    ours = [m for m in found if m.group(1) in ("ParityError", "RejectionMismatch", "AdapterError")]
    if ours:
        return ours[0].group(2)
    before = [line for line in failure.partition("Reproduce with:")[0].splitlines() if line.strip()]
    return before[-1].strip() if before else ""


# The properties that run against the implementation under test (the `implementation` fixtures); the other tests
# of the property files check torch alone (gradcheck, torch's own named divergences) and make no adapter's cell.
IMPLEMENTATION_PROPERTIES = (
    "test_loss_matches_reference",
    "test_gradient_matches_reference",
    "test_large_input_matches_reference",
    "test_large_input_gradient_matches_reference",
    "test_nll_gradient_is_0_off_the_target_where_the_total_weight_is_0",
    "test_torch_and_reference_reject_the_same_inputs",
)


def _losses_of(name: str) -> tuple[str, ...] | None:
    """The losses an adapter has (None: torch's eager kernels, or a name that is no adapter: every loss)."""
    import adapters

    return None if name not in adapters.ADAPTERS else tuple(adapters.load(name).LOSSES)


def cells(name: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells of one implementation: for an adapter, only the losses it has, and only the properties that ran
    against it (a loss it lacks was torch's in that run, never that implementation's)."""
    losses = _losses_of(name)
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for check in report["checks"]:
        kind = CHECKS.get(check.get("kind", ""))
        if kind is None or "loss" not in check:
            continue
        if losses is not None and (
            check["loss"] not in losses or not any(p in check["id"] for p in IMPLEMENTATION_PROPERTIES)
        ):
            continue
        dtype = "any" if kind == "rejections" else check.get("dtype", "any")
        grouped.setdefault((check["loss"], kind, dtype), []).append(check)
    result = []
    for (loss, kind, dtype), checks in sorted(grouped.items()):
        failed = [c for c in checks if c["outcome"] in ("failed", "error")]
        unsupported = [c for c in checks if "UNSUPPORTED by" in c.get("skip_reason", "")]
        unsupported_reasons = sorted({c["skip_reason"].split("UNSUPPORTED by ", 1)[1] for c in unsupported})
        named = sorted(
            {
                c["skip_reason"].removeprefix("Skipped: ")
                for c in checks
                if "named divergence of" in c.get("skip_reason", "")
            }
        )
        skipped = [c for c in checks if c["outcome"] == "skipped" and c not in unsupported]
        other_skips = sorted({c["skip_reason"] for c in skipped if "named divergence of" not in c["skip_reason"]})
        passed = [c for c in checks if c["outcome"] == "passed"]
        cell: dict[str, Any] = {"implementation": name, "loss": loss, "check": kind, "dtype": dtype}
        if failed:
            failure = failed[0].get("failure", "")
            cell.update(
                verdict="FAILED", check_id=failed[0]["id"], counterexample=_sentence(failure),
                reproducer=_reproducer(failure),
            )  # fmt: skip
        elif passed:
            cell["verdict"] = "VERIFIED"
        elif any(reason.endswith(WHOLE_CHECK) for reason in unsupported_reasons):
            # The implementation lacks the whole check (a dtype, the backward pass): so it does for every check of
            # the cell, also where a named divergence left out every case before the implementation was asked.
            cell.update(verdict="UNSUPPORTED", reason="; ".join(unsupported_reasons))
        elif named:
            # Some checks left out under a named divergence, the rest unsupported: what ran is the divergence.
            cell.update(verdict="NAMED DIVERGENCE", reason="; ".join(named))
        elif unsupported:
            cell.update(verdict="UNSUPPORTED", reason="; ".join(unsupported_reasons))
        else:
            cell.update(verdict="NOT RUN", reason="; ".join(other_skips) or "no check ran")
        cell["examples_compared"] = sum(c.get("examples_compared", 0) for c in checks)
        worst = [c["worst"]["error_over_bound"] for c in checks if c.get("worst")]
        if worst:
            cell["worst_error_over_bound"] = max(worst)
        if other_skips and cell["verdict"] != "NOT RUN":
            cell["not_run"] = other_skips
        if named:
            cell["named_divergences"] = named
        if unsupported_reasons and cell["verdict"] != "UNSUPPORTED":
            cell["unsupported"] = unsupported_reasons
        excluded: dict[str, int] = {}
        for c in checks:
            for reason, count in c.get("examples_excluded", {}).items():
                excluded[reason] = excluded.get(reason, 0) + count
        if excluded:
            cell["excluded"] = excluded
        result.append(cell)
    return result


# What must be the same in every run merged into one matrix: the suite's code and what it ran on (on the CPU the
# device name is the CPU model, and the capability the kernel build torch dispatched to). The OS build and thread
# count may differ between the machines that ran shards; each part's are listed.
SAME_SUITE = ("version", "reference_sha256", "verification_sha256", "tests_sha256", "adapters_sha256")
SAME_ENVIRONMENT = (
    "torch", "torch_git", "python", "numpy", "hypothesis", "pytest", "device", "device_name", "cpu_capability", "cuda",
)  # fmt: skip
SAME_RUN = ("hypothesis_profile", "hypothesis_seed", "derandomized")


class MergeError(SystemExit):
    """Runs that cannot make one matrix: what differs, in a sentence."""


def _same(parts: list[tuple[pathlib.Path, dict[str, Any]]], section: str, keys: tuple[str, ...]) -> None:
    first_path, first = parts[0]
    for path, report in parts[1:]:
        for key in keys:
            ours, theirs = first[section].get(key), report[section].get(key)
            if ours != theirs:
                raise MergeError(
                    f"{path} and {first_path} differ in {section} {key} ({theirs!r} against {ours!r}): only runs of "
                    "one suite, on one torch and device, make one matrix"
                )


def _shards_complete(name: str, parts: list[tuple[pathlib.Path, dict[str, Any]]]) -> None:
    """Where an implementation's runs are shards, they are every shard of one N, each once."""
    shards = [report["run"].get("shard") for _, report in parts]
    if not any(shards):
        return
    if not all(shards):
        raise MergeError(f"{name}: some runs are shards and some are not: {sorted(map(str, shards))}")
    counts = {shard.split("/")[1] for shard in shards}
    want = {f"{i}/{n}" for n in counts for i in range(1, int(n) + 1)}
    if len(counts) != 1 or sorted(shards) != sorted(want):
        raise MergeError(f"{name}: the shards {sorted(shards)} are not every shard of one run, each once")


def merge_reports(name: str, parts: list[tuple[pathlib.Path, dict[str, Any]]]) -> dict[str, Any]:
    """One implementation's evidence reports from several runs (shards, or selections such as one dtype each) as one
    report: their checks together, its verdict from all of them, each run listed under ``parts``. A check in two
    runs, or runs of different suites, torches or devices, are refused."""
    from reporting.plugin import _divergence, _summary, verdict_of

    _same(parts, "suite", SAME_SUITE)
    _same(parts, "environment", SAME_ENVIRONMENT)
    _same(parts, "run", SAME_RUN)
    first_path, first = parts[0]
    for path, report in parts[1:]:
        if report.get("implementations_under_test") != first.get("implementations_under_test"):
            raise MergeError(f"{path} and {first_path} ran {name} at other versions or with other arithmetic declared")
    _shards_complete(name, parts)
    seen: dict[str, pathlib.Path] = {}
    checks = []
    for path, report in parts:
        for check in report["checks"]:
            if check["id"] in seen:
                raise MergeError(
                    f"{name}: {check['id']} ran in both {seen[check['id']]} and {path}: merge runs of disjoint checks"
                )
            seen[check["id"]] = path
            checks.append(check)
    checks.sort(key=lambda c: c["id"])
    complete = all(report["complete"] for _, report in parts)
    exitstatus = max(report["run"]["exit_status"] for _, report in parts)
    merged = dict(parts[0][1])
    merged.update(
        verdict=verdict_of(checks, complete=complete, exitstatus=exitstatus),
        complete=complete and bool(checks),
        checks=checks,
        summary=_summary(checks),
        divergences=[_divergence(c) for c in checks if c.get("kind") == "divergence"],
        figures={},
        matrix_run_seconds=round(sum(report.get("matrix_run_seconds", 0.0) for _, report in parts), 1),
        parts=[
            {
                "report": str(path),
                "verdict": report["verdict"],
                "reproduce": report["run"]["reproduce"],
                "shard": report["run"].get("shard"),
                "seconds": report.get("matrix_run_seconds", report["timing"]["wall_seconds"]),
                "git_commit": report["suite"]["git_commit"],
                "cpu": report["environment"].get("cpu"),
                "os": report["environment"].get("os"),
            }
            for path, report in parts
        ],
    )
    merged["run"] = dict(merged["run"], reproduce=" ; ".join(report["run"]["reproduce"] for _, report in parts))
    merged["timing"] = {
        "started_utc": min(report["timing"]["started_utc"] for _, report in parts),
        "finished_utc": max(report["timing"]["finished_utc"] for _, report in parts),
        "wall_seconds": round(sum(report["timing"]["wall_seconds"] for _, report in parts), 1),
    }
    return merged


def merge(directories: list[pathlib.Path]) -> dict[str, dict[str, Any]]:
    """The evidence reports of several matrix runs' output directories, one merged report per implementation (in the
    order the directories first name them). Every report of every implementation must come from one suite, torch and
    device: the matrix is one run's evidence, made on several machines or in several sittings."""
    parts: dict[str, list[tuple[pathlib.Path, dict[str, Any]]]] = {}
    for directory in directories:
        found = sorted(directory.glob("*/report.json"))
        if not found:
            raise MergeError(f"{directory}: no implementation's report.json in it (a matrix run's --out directory)")
        for path in found:
            report = json.loads(path.read_text())
            if "matrix_run_seconds" not in report:  # the matrix tool adds it when its pytest run ends
                report["matrix_run_seconds"] = report["timing"]["wall_seconds"]
            parts.setdefault(path.parent.name, []).append((path, report))
    everyone = [part for name in parts for part in parts[name]]
    _same(everyone, "suite", SAME_SUITE)
    _same(everyone, "environment", SAME_ENVIRONMENT)
    return {name: merge_reports(name, runs) for name, runs in parts.items()}


def build(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "implementations": {
            name: {
                "verdict": report["verdict"],
                "environment": report["environment"],
                "versions": {
                    key: value
                    for impl in report.get("implementations_under_test", [])
                    for key, value in impl["versions"].items()
                },
                "flushes_subnormals": sorted(
                    {
                        dtype
                        for impl in report.get("implementations_under_test", [])
                        for dtype in impl["flushes_subnormals"]
                    }
                ),
                "sums_in_any_order": any(
                    impl.get("sums_in_any_order", False) for impl in report.get("implementations_under_test", [])
                ),
                "run_seconds": report.get("matrix_run_seconds"),
                "parts": report.get("parts", []),
                "report": f"{name}/report.json",
            }
            for name, report in reports.items()
        },
        "cells": [cell for name, report in reports.items() for cell in cells(name, report)],
    }


def render(matrix: dict[str, Any]) -> str:
    names = list(matrix["implementations"])
    lines = ["# The implementations matrix", ""]
    first = next(iter(matrix["implementations"].values()))["environment"]
    lines += [
        f"torch {first['torch']}, {first['device']} ({first['device_name']}"
        f"{markdown.capability_words(first)}), Python {first['python']}.",
        "Each cell: the value, gradient and rejection properties of that loss and dtype at ci depth "
        "(`verification/`), against that implementation.",
        "",
    ]
    by_key = {(c["implementation"], c["loss"], c["check"], c["dtype"]): c for c in matrix["cells"]}
    rows = sorted({(c["loss"], c["check"], c["dtype"]) for c in matrix["cells"]})
    lines += ["| loss | check | dtype | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for loss, check, dtype in rows:
        verdicts = []
        for name in names:
            cell = by_key.get((name, loss, check, dtype))
            if cell is None:
                verdicts.append("—")
                continue
            named = len(cell.get("named_divergences", [])) + len(
                [r for r in cell.get("excluded", {}) if "(test_" in r and "no finite bound" not in r]
            )
            verdicts.append(cell["verdict"] + (f" ({named} named)" if named and cell["verdict"] == "VERIFIED" else ""))
        lines.append(f"| {loss} | {check} | {dtype} | " + " | ".join(verdicts) + " |")
    lines += ["", "## Runs", ""]
    for name, run in matrix["implementations"].items():
        versions = ", ".join(f"{key} {value}" for key, value in sorted(run.get("versions", {}).items()))
        flushing = run.get("flushes_subnormals")
        arithmetic = f"; bounds for flush-to-zero arithmetic in {', '.join(flushing)}" if flushing else ""
        if run.get("sums_in_any_order"):
            arithmetic += "; sums bounded for any order in the storage dtype"
        lines.append(
            f"- **{name}**: {run['verdict']} ({run['run_seconds']} s; report: `{run['report']}`)"
            + (f"; {versions}" if versions else "")
            + arithmetic
        )
        for part in run.get("parts", []):
            lines.append(f"  - part: {part['verdict']} ({part['seconds']} s, `{part['reproduce']}`)")
    failed = [c for c in matrix["cells"] if c["verdict"] == "FAILED"]
    if failed:
        lines += ["", "## FAILED cells", ""]
        for cell in failed:
            lines += [
                f"### {cell['implementation']}: {cell['loss']} {cell['check']}, {cell['dtype']}",
                "",
                cell["counterexample"],
                "",
                "```python",
                cell["reproducer"],
                "```",
                "",
            ]
    unsupported = [c for c in matrix["cells"] if c["verdict"] in ("UNSUPPORTED", "NOT RUN", "NAMED DIVERGENCE")]
    if unsupported:
        lines += ["", "## UNSUPPORTED, NAMED DIVERGENCE and NOT RUN cells", ""]
        for cell in unsupported:
            also = "; unsupported: " + "; ".join(cell["unsupported"]) if cell.get("unsupported") else ""
            if cell["verdict"] == "UNSUPPORTED" and cell.get("named_divergences"):
                also += "; cases left out first under: " + "; ".join(cell["named_divergences"])
            lines.append(
                f"- {cell['implementation']}: {cell['loss']} {cell['check']}, {cell['dtype']}: {cell['reason']}{also}"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import adapters

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--implementations", default=",".join([EAGER, *adapters.ADAPTERS]))
    parser.add_argument("--out", default=os.environ.get("LOSS_PARITY_MATRIX", "evidence/matrix"))
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="run nothing: merge the reports of earlier runs' --out directories (shards, or implementations and "
        "dtypes run apart) into one matrix in --out",
    )
    # Every other argument goes to each pytest run (-n 2, -k ..., --shard I/N, --hypothesis-profile=thorough).
    args, pytest_args = parser.parse_known_args(argv)
    pytest_args = [arg for arg in pytest_args if arg != "--"]  # "--" between this tool's options and pytest's
    out = (ROOT / args.out).resolve()
    if args.merge:
        sources = [pathlib.Path(directory).resolve() for directory in args.merge]
        if out in sources:
            raise MergeError(f"--out {out} is one of the runs merged: write the merged matrix elsewhere")
        reports = merge(sources)
        for name, report in reports.items():
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            (out / name / "report.md").write_text(markdown.render(report))
    else:
        reports = {name: run_implementation(name, out, pytest_args) for name in args.implementations.split(",")}
    matrix = build(reports)
    (out / "matrix.json").write_text(json.dumps(matrix, indent=2, sort_keys=True) + "\n")
    (out / "matrix.md").write_text(render(matrix))
    verdicts = ("VERIFIED", "FAILED", "UNSUPPORTED", "NAMED DIVERGENCE", "NOT RUN")
    counts = {v: sum(c["verdict"] == v for c in matrix["cells"]) for v in verdicts}
    print(f"matrix: {counts} -> {out / 'matrix.md'}")
    # A FAILED cell fails the run (the matrix is written first), so that a job gating on it stops there.
    failed = [c for c in matrix["cells"] if c["verdict"] == "FAILED"]
    for cell in failed:
        where = f"{cell['implementation']}: {cell['loss']} {cell['check']}, {cell['dtype']}"
        print(f"FAILED: {where}: {cell['counterexample']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
