"""Speed, measured: suite wall times, examples verified per second, reference against torch throughput.

    python3 -m benchmarks.run [--thorough] [--throughput-only] [--properties-only] [--repeats N]
                              [--before-tree DIR] [--losses a,b] [--json PATH]
    python3 -m benchmarks.run --time-split [--losses a,b] [--json PATH]

Writes a JSON record (machine, torch, each figure) and prints Markdown tables for docs/verification-log.md. Nothing here
asserts a time: a slow run is a finding to read, not a failure.

Examples per second, per parity and gradient property, before and after, in one run: "after" is this tree as it
is; "before" is this tree drawing as the suite did before (every element drawn by hypothesis, one case per example:
LOSS_PARITY_DRAWING=element-wise LOSS_PARITY_CASES_PER_EXAMPLE=1), or, with ``--before-tree DIR``, another checkout
(an earlier commit, as it was). The two run alternately, loss by loss, ``--repeats`` times (default 2), serially at
ci depth; each property's figure is its cases compared over its fastest run (the least disturbed by the machine).

``--time-split``: one serial ci run of the parity and gradient properties (their small-input ones), each property's
seconds split into hypothesis's (its engine and the drawing: the time outside the checks), torch's own calls, the
reference's, and the rest of the checks (the tolerance model's replay, the comparison); hypothesis's and torch's
together are the floor that work on the suite's own side cannot go below (benchmarks/time_split.py).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import reference


def _wall(arguments: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
    return time.perf_counter() - started, (result.stdout.strip().splitlines() or [""])[-1]


# The previous way of drawing, kept behind flags to be measured against.
ELEMENT_WISE_SINGLE_CASES = {"LOSS_PARITY_DRAWING": "element-wise", "LOSS_PARITY_CASES_PER_EXAMPLE": "1"}
TORCH_LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy", "kl_div", "nll_loss")


def _property_run(loss: str, cwd: str | None, env: dict[str, str] | None) -> dict[str, dict[str, float]]:
    """One serial ci run of ``loss``'s value and gradient parity properties: per test id, cases compared and seconds."""
    out = tempfile.mkdtemp(prefix="bench-properties-")
    selection = f"[{loss}- and matches_reference"
    _wall(
        [
            "tests/test_parity.py",
            "tests/test_gradients.py",
            "-k",
            selection,
            "-n",
            "0",
            "--hypothesis-profile=ci",
            f"--evidence={out}",
            f"--junitxml={out}/junit.xml",
        ],
        cwd=cwd,
        env=env,
    )
    with open(os.path.join(out, "report.json"), encoding="utf-8") as source:
        checks = json.load(source)["checks"]
    durations = _junit_durations(os.path.join(out, "junit.xml"))
    return {
        check["id"].split("::", 1)[-1]: {
            "cases": float(check.get("examples_compared", 0)),
            "seconds": durations.get(check["id"].split("::", 1)[-1], 0.0),
        }
        for check in checks
    }


def properties_side_by_side(losses: list[str], repeats: int, before_tree: str | None) -> list[dict[str, Any]]:
    """Per property: cases compared, the fastest of ``repeats`` runs, and cases per second, before and after."""
    before_env = None if before_tree else ELEMENT_WISE_SINGLE_CASES
    best: dict[str, dict[str, dict[str, float]]] = {"before": {}, "after": {}}
    for loss in losses:
        for _ in range(repeats):
            runs = (("before", before_tree, before_env), ("after", None, None))
            for side, cwd, env in runs:
                for test, measured in _property_run(loss, cwd, env).items():
                    kept = best[side].get(test)
                    if kept is None or measured["seconds"] < kept["seconds"]:
                        best[side][test] = measured
    rows = []
    for test in sorted(set(best["before"]) & set(best["after"])):
        before, after = best["before"][test], best["after"][test]
        row: dict[str, Any] = {"property": test}
        for side, measured in (("before", before), ("after", after)):
            per_second = measured["cases"] / measured["seconds"] if measured["seconds"] else 0.0
            row[side] = {
                "cases": int(measured["cases"]),
                "seconds": round(measured["seconds"], 2),
                "per_second": round(per_second, 1),
            }
        row["ratio"] = (
            round(row["after"]["per_second"] / row["before"]["per_second"], 1) if row["before"]["per_second"] else None
        )
        rows.append(row)
    return rows


def time_split(losses: list[str]) -> list[dict[str, Any]]:
    """Per small-input parity and gradient property: its seconds (one serial ci run), and hypothesis's, torch's, the
    reference's and the rest of the checks' shares of them."""
    out = tempfile.mkdtemp(prefix="bench-split-")
    selection = " or ".join(f"[{loss}-" for loss in losses)
    _wall(
        [
            "tests/test_parity.py::test_loss_matches_reference",
            "tests/test_gradients.py::test_gradient_matches_reference",
            "-k",
            selection,
            "-n",
            "0",
            "--hypothesis-profile=ci",
            "-p",
            "benchmarks.time_split",
            f"--evidence={out}",
            f"--junitxml={out}/junit.xml",
        ],
        env={"LOSS_PARITY_TIME_SPLIT": os.path.join(out, "split.json")},
    )
    with open(os.path.join(out, "split.json"), encoding="utf-8") as source:
        split = json.load(source)
    with open(os.path.join(out, "report.json"), encoding="utf-8") as source:
        cases = {c["id"].split("::", 1)[-1]: int(c.get("examples_compared", 0)) for c in json.load(source)["checks"]}
    durations = _junit_durations(os.path.join(out, "junit.xml"))
    rows = []
    for test, spent in sorted(split.items()):
        total = durations.get(test, 0.0)
        hypothesis_s = max(0.0, total - spent["checks"])
        rows.append(
            {
                "property": test,
                "cases": cases.get(test, 0),
                "seconds": round(total, 2),
                "hypothesis": round(hypothesis_s, 2),
                "torch": round(spent["torch"], 2),
                "reference": round(spent["reference"], 2),
                "replay_and_comparison": round(spent["checks"] - spent["torch"] - spent["reference"], 2),
                "floor": round(hypothesis_s + spent["torch"], 2),
            }
        )
    return rows


def _print_time_split(rows: list[dict[str, Any]]) -> None:
    columns = ("seconds", "hypothesis", "torch", "reference", "replay_and_comparison", "floor")
    print("| property | cases | s | hypothesis s | torch s | reference s | replay and comparison s | floor s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['property']} | {row['cases']} | " + " | ".join(str(row[key]) for key in columns) + " |")
    totals = {key: round(sum(row[key] for row in rows), 1) for key in columns}
    print(
        f"\n{len(rows)} properties, {sum(row['cases'] for row in rows)} cases: {totals['seconds']} s in all; "
        f"hypothesis {totals['hypothesis']} s, torch {totals['torch']} s, the reference {totals['reference']} s, "
        f"the replay and the comparison {totals['replay_and_comparison']} s; floor (hypothesis and torch) "
        f"{totals['floor']} s"
    )


def suite_times(thorough: bool, evidence: str) -> list[dict[str, Any]]:
    """Whole-suite wall time per profile, serial and on every core; the serial ci run also writes its evidence
    report and JUnit XML to ``evidence``, for the examples-per-second figures."""
    rows = []
    for profile in ["ci", *(["thorough"] if thorough else [])]:
        for workers in ("0", "auto"):
            serial_ci = (profile, workers) == ("ci", "0")
            outputs = [f"--evidence={evidence}", f"--junitxml={evidence}/junit.xml"] if serial_ci else []
            seconds, summary = _wall([f"--hypothesis-profile={profile}", "-n", workers, *outputs])
            rows.append({"profile": profile, "workers": workers, "seconds": round(seconds, 1), "summary": summary})
    return rows


def examples_per_second(evidence: str) -> dict[str, dict[str, float]]:
    """Per loss: examples compared over the seconds its value and gradient parity checks took (the serial ci run)."""
    with open(os.path.join(evidence, "report.json"), encoding="utf-8") as source:
        report = json.load(source)
    durations = _junit_durations(os.path.join(evidence, "junit.xml"))
    per_loss: dict[str, dict[str, float]] = {}
    for check in report["checks"]:
        loss, kind = check.get("loss"), check.get("kind")
        if loss and kind in ("parity", "gradient"):
            entry = per_loss.setdefault(loss, {"examples": 0.0, "seconds": 0.0})
            entry["examples"] += check.get("examples_compared", 0)
            entry["seconds"] += durations.get(check["id"].split("::", 1)[-1], 0.0)
    for entry in per_loss.values():
        entry["per_second"] = round(entry["examples"] / entry["seconds"], 1) if entry["seconds"] else 0.0
        entry["seconds"] = round(entry["seconds"], 1)
    return per_loss


def _junit_durations(path: str) -> dict[str, float]:
    import xml.etree.ElementTree as ElementTree

    return {case.get("name", ""): float(case.get("time", 0)) for case in ElementTree.parse(path).iter("testcase")}


def _best_time(call: Callable[[], object]) -> float:
    """The fastest of at least 15 back-to-back calls and at least half a second: each side measured warm, at its
    best (alternating the reference with torch slows both, each evicting the other's data from the caches, and
    flatters the slower one: measured 3.4x alternating against 4.7x back to back for cross-entropy)."""
    best, calls, started = float("inf"), 0, time.perf_counter()
    while calls < 15 or time.perf_counter() - started < 0.5:
        begun = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - begun)
        calls += 1
    return best


def throughput() -> list[dict[str, Any]]:
    """float64 reference against float64 torch (CPU) on large inputs; the goal is a ratio of at most 3."""
    rng = np.random.default_rng(0)
    logits, classes = rng.normal(size=(4096, 1000)), rng.integers(0, 1000, 4096)
    p, y = rng.uniform(0, 1, 10**7), rng.uniform(0, 1, 10**7)
    k_dim, k_target = rng.normal(size=(16, 20, 64, 64)), rng.integers(0, 20, (16, 64, 64))
    functional = torch.nn.functional
    cases = [
        (
            "cross_entropy 4096 x 1000",
            lambda: reference.cross_entropy(logits, classes),
            lambda: functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(classes)),
        ),
        (
            # Smoothing needs the whole log-softmax matrix (the index-only path above reads it at the targets).
            "cross_entropy 4096 x 1000, label_smoothing 0.1",
            lambda: reference.cross_entropy(logits, classes, label_smoothing=0.1),
            lambda: functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(classes), label_smoothing=0.1),
        ),
        (
            "binary_cross_entropy 10^7",
            lambda: reference.binary_cross_entropy(p, y),
            lambda: functional.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(y)),
        ),
        (
            "binary_cross_entropy_with_logits 10^7",
            lambda: reference.binary_cross_entropy_with_logits(p, y),
            lambda: functional.binary_cross_entropy_with_logits(torch.from_numpy(p), torch.from_numpy(y)),
        ),
        (
            "nll_loss K-dim 16 x 20 x 64 x 64",
            lambda: reference.nll_loss(k_dim, k_target),
            lambda: functional.nll_loss(torch.from_numpy(k_dim), torch.from_numpy(k_target)),
        ),
    ]
    rows = []
    for name, ours, theirs in cases:
        reference_seconds, torch_seconds = _best_time(ours), _best_time(theirs)
        rows.append(
            {
                "case": name,
                "reference_s": round(reference_seconds, 4),
                "torch_s": round(torch_seconds, 4),
                "ratio": round(reference_seconds / torch_seconds, 2),
            }
        )
    return rows


def _option(arguments: list[str], name: str, default: str | None) -> str | None:
    return arguments[arguments.index(name) + 1] if name in arguments else default


def _print_properties(rows: list[dict[str, Any]]) -> None:
    print("| property | before: cases | s | cases / s | after: cases | s | cases / s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        b, a = row["before"], row["after"]
        print(
            f"| {row['property']} | {b['cases']} | {b['seconds']} | {b['per_second']} | {a['cases']} | "
            f"{a['seconds']} | {a['per_second']} | {row['ratio']} |"
        )


def _print_suite(record: dict[str, Any]) -> None:
    print("\n| suite | workers | seconds | result |\n| --- | --- | ---: | --- |")
    for row in record["suite"]:
        print(f"| {row['profile']} | {row['workers']} | {row['seconds']} | {row['summary']} |")
    print("\n| loss | examples | seconds | examples / s |\n| --- | ---: | ---: | ---: |")
    for loss, entry in sorted(record["examples_per_second"].items()):
        print(f"| {loss} | {entry['examples']:.0f} | {entry['seconds']} | {entry['per_second']} |")
    print(f"\nExhaustive float16/bfloat16 sweeps (tests/test_exhaustive.py, one process): {record['sweeps_seconds']} s")


def main(arguments: list[str]) -> int:
    json_path = _option(arguments, "--json", None)
    record: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    if "--time-split" in arguments:
        losses = (_option(arguments, "--losses", None) or ",".join(TORCH_LOSSES)).split(",")
        record["time_split"] = time_split(losses)
        _print_time_split(record["time_split"])
        if json_path:
            with open(json_path, "w", encoding="utf-8") as out:
                json.dump(record, out, indent=2)
        return 0
    throughput_only, properties_only = "--throughput-only" in arguments, "--properties-only" in arguments
    if not throughput_only:  # the properties' and the suite's runs take minutes; throughput alone, seconds
        before_tree = _option(arguments, "--before-tree", None)
        repeats = int(_option(arguments, "--repeats", "2") or 2)
        losses = (_option(arguments, "--losses", None) or ",".join(TORCH_LOSSES)).split(",")
        flags = " ".join(f"{k}={v}" for k, v in ELEMENT_WISE_SINGLE_CASES.items())
        record["properties"] = {
            "before": before_tree or f"this tree with {flags}",
            "after": "this tree",
            "repeats": repeats,
            "rows": properties_side_by_side(losses, repeats, before_tree),
        }
        _print_properties(record["properties"]["rows"])
    if not throughput_only and not properties_only:
        evidence = tempfile.mkdtemp(prefix="bench-evidence-")
        record["suite"] = suite_times("--thorough" in arguments, evidence)
        record["examples_per_second"] = examples_per_second(evidence)
        record["sweeps_seconds"] = round(_wall(["tests/test_exhaustive.py", "-n", "0"])[0], 1)
        _print_suite(record)
    if not properties_only:
        record["throughput"] = throughput()
        print("\n| float64, CPU | reference (s) | torch (s) | ratio |\n| --- | ---: | ---: | ---: |")
        for row in record["throughput"]:
            print(f"| {row['case']} | {row['reference_s']} | {row['torch_s']} | {row['ratio']} |")
        # The exhaustive float32 sweeps (exhaustive/): inputs per second per core, torch against the reference and
        # the whole check, and the limit NumPy's float64 ufuncs and memory set on the same chunk.
        from exhaustive import bench as exhaustive_bench

        record["exhaustive_sweeps"] = exhaustive_bench.throughput()
        print("\n" + exhaustive_bench.markdown(record["exhaustive_sweeps"]))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
