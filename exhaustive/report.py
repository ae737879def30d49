"""What a run found, per sweep: report.json, report.md and ulp_error.png in the output folder."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from typing import Any

import numpy as np
import torch

from reporting.fingerprint import cpu_capability, cpu_name

from . import floats
from .engine import Tally, histogram_labels
from .sweeps import Sweep


def sweep_record(sweep: Sweep, tally: Tally) -> dict[str, Any]:
    n = tally.inputs
    within = tally.over_bound == 0
    histogram = {label: count for label, count in zip(histogram_labels(), tally.histogram, strict=True) if count}
    if tally.nonfinite:
        histogram["NaN or inf where the exact value is not"] = tally.nonfinite
    repro = sweep.kernel.repro
    return {
        "sweep": sweep.name,
        "kernel": sweep.kernel.name,
        "output": sweep.output,
        "exact": ("-" if sweep.sign < 0 else "") + sweep.exact.name,
        "domain": sweep.domain.what,
        "inputs": n,
        "correctly_rounded": tally.correct,
        "correctly_rounded_fraction": tally.correct / n if n else 0.0,
        "faithful": tally.faithful,
        "faithful_fraction": tally.faithful / n if n else 0.0,
        "beyond_faithful": n - tally.faithful,
        "settled_by_mpmath": tally.settled,
        "zero_of_the_other_sign": tally.signed_zero,
        "nonfinite_mismatches": tally.nonfinite,
        "named": tally.named,
        "max_ulps": tally.max_ulps,
        "max_at": [{**example, "reproducer": repro.format(x=example["input_hex"])} for example in tally.max_at],
        "histogram_ulps": histogram,
        "within_bound": within,
        "bound": {
            "replayed": tally.replayed,
            "over": tally.over_bound,
            "worst_error_over_bound": tally.worst_ratio,
            "worst_at": tally.worst_at,
            "over_at": tally.over_at,
            "without_finite_bound": tally.unbounded,
        },
        "not_faithful_at": [
            {**example, "reproducer": repro.format(x=example["input_hex"])} for example in tally.unfaithful_at
        ],
        "nonfinite_at": tally.nonfinite_at,
        "special_inputs": tally.specials,
    }


def write(
    out: str, sweeps: tuple[Sweep, ...], tallies: dict[str, Tally], run: dict[str, Any], figure: bool = True
) -> dict[str, Any]:
    """report.json, report.md and (with ``figure``) the plot; returns the report."""
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "cpu": cpu_name(),
            "cpu_capability": cpu_capability(),
        },
        **run,
        "sweeps": [sweep_record(sweep, tallies[sweep.name]) for sweep in sweeps],
    }
    report["every_result_within_bound"] = all(s["within_bound"] for s in report["sweeps"])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as file:
        json.dump(report, file, indent=1)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as file:
        file.write(markdown(report))
    if figure:
        plot(sweeps, tallies, os.path.join(out, "ulp_error.png"))
    return report


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4f}%" if fraction < 1 else "100%"


def _at(examples: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['input']:.9g}" for e in examples[:2]) if examples else "-"


def table(report: dict[str, Any]) -> str:
    rows = [
        "| sweep | inputs | correctly rounded | faithful | beyond faithful | max ulps | at x | within bound | mpmath |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for s in report["sweeps"]:
        max_ulps = f"{s['max_ulps']:.4g}" if s["max_ulps"] else "<= 0.5"
        within = "yes" if s["within_bound"] else f"NO ({s['bound']['over']})"
        rows.append(
            f"| `{s['sweep']}` | {s['inputs']:,} | {_percent(s['correctly_rounded_fraction'])} | "
            f"{_percent(s['faithful_fraction'])} | {s['beyond_faithful']:,} | {max_ulps} | {_at(s['max_at'])} | "
            f"{within} | {s['settled_by_mpmath']} |"
        )
    return "\n".join(rows) + "\n"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Exhaustive float32 sweeps\n",
        f"{report['date']}, torch {report['torch']} on {report.get('device', 'cpu')}"
        + (f" (--impl {', '.join(report['impls'])})" if report.get("impls") else "")
        + f", numpy {report['numpy']}, {report['machine']['cpus']} cores"
        + (
            f" ({report['machine']['cpu']}, torch's CPU kernels built for {report['machine']['cpu_capability']})"
            if report["machine"].get("cpu_capability")
            else ""
        )
        + ".",
        f"{report.get('mode', '')}; {report.get('wall_seconds', 0):.0f} s wall with {report.get('workers', 1)} "
        f"worker(s); every result within the tolerance model's bound: "
        f"{'yes' if report['every_result_within_bound'] else 'NO'}.\n",
        "Correctly rounded: torch's float32 result is the exact value rounded to nearest (NaN where it is NaN). "
        "Faithful: one of the two float32 numbers around the exact value. Max ulps: the largest |torch - exact| "
        "in ulps of the correctly rounded value, among the results not correctly rounded. The histograms count "
        "float32 numbers between torch's result and the correctly rounded one (0 where torch is correctly "
        "rounded; a result of 0 where the exact value is 1e-20 is a billion float32 numbers away).\n",
        table(report),
    ]
    for s in report["sweeps"]:
        lines.append(f"\n## `{s['sweep']}`: {s['exact']}\n")
        lines.append(f"Float32 numbers from the correctly rounded value to torch's result: {s['histogram_ulps']}.")
        if s["zero_of_the_other_sign"]:
            lines.append(f"Zero of the other sign (correctly rounded otherwise): {s['zero_of_the_other_sign']:,}.")
        for claim, count in s["named"].items():
            lines.append(f"Accounted for by name ({count}): {claim}.")
        if s["bound"]["without_finite_bound"]:
            lines.append(f"Without a finite bound: {s['bound']['without_finite_bound']}.")
        worst = s["bound"]["worst_at"]
        if worst:
            lines.append(
                f"Largest error against the bound: {s['bound']['worst_error_over_bound']:.3g} of it, at x = "
                f"{worst['input']!r} ({s['bound']['replayed']:,} results compared with the replayed bound)."
            )
        for example in s["bound"]["over_at"]:
            lines.append(f"**Over the bound** at x = {example['input']!r}: {example}.")
        if s["beyond_faithful"]:
            shown = [("The largest error", e) for e in s["max_at"][:1]]
            shown += [("The first result not faithful, in input order", e) for e in s["not_faithful_at"][:1]]
            for what, example in shown:
                lines.append(
                    f"\n{what}: x = {example['input']!r} ({example['input_hex']}), torch {example['torch']!r}, "
                    f"correctly rounded {example['correctly_rounded']!r} ({example['ulps']:.4g} ulps). Reproduce with:"
                    f"\n\n```python\n{example['reproducer']}\n```"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


# The inputs marked on the plot's axis: the float32 line in value order, every bit pattern one step.
_TICKS = (-math.inf, -1e30, -1e10, -100.0, -1.0, -1e-10, -1e-30, 0.0, 1e-30, 1e-10, 1.0, 100.0, 1e10, 1e30, math.inf)


def plot(sweeps: tuple[Sweep, ...], tallies: dict[str, Tally], path: str) -> None:
    """The largest error in ulps against the input, per run of consecutive inputs, one panel per sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3
    rows = -(-len(sweeps) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(16, 2.6 * rows), squeeze=False)
    for axis, sweep in zip(axes.flat, sweeps, strict=False):
        points = np.array(tallies[sweep.name].plot or [[0, 0, 0.0]], dtype=np.float64)
        middle = (points[:, 0] + points[:, 1]) / 2
        error = points[:, 2]
        shown = error > 0
        axis.scatter(middle[shown], error[shown], s=2, color="tab:red")
        axis.axhline(0.5, color="tab:green", lw=0.6, ls="--")
        axis.axhline(1.0, color="tab:orange", lw=0.6, ls="--")
        axis.set_yscale("log")
        axis.set_ylim(0.3, max(10.0, float(error.max()) * 2))
        low, high = sweep.domain.low, sweep.domain.high
        ticks = [(floats.key_of(v), v) for v in _TICKS if low <= floats.key_of(v) <= high]
        axis.set_xticks([k for k, _ in ticks], [f"{v:g}" for _, v in ticks], fontsize=6)
        axis.set_xlim(low, high)
        axis.set_title(f"{sweep.name}", fontsize=8)
        axis.tick_params(axis="y", labelsize=6)
    for axis in list(axes.flat)[len(sweeps) :]:
        axis.set_visible(False)
    figure.suptitle(
        "Largest error in ulps against the input (every float32 in value order; none drawn where every result is "
        "correctly rounded; dashed: 0.5 and 1 ulp)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
