"""The report's figures, drawn only from what the run measured (report.json holds the same data)."""

from __future__ import annotations

import math
import pathlib
import warnings
from typing import Any

FLOOR = 1e-18  # where exact agreement is drawn on a log axis


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def identity_map(report: dict[str, Any], path: pathlib.Path) -> bool:
    """|BCE(sigmoid(x), y) - BCEWithLogits(x, y)| / |BCEWithLogits(x, y)| across the logit range, per dtype."""
    series = {
        name: data
        for check in report["checks"]
        for name, data in check.get("series", {}).items()
        if name.startswith("sigmoid_bce_gap/")
    }
    if not series:
        return False
    plt = _pyplot()
    dtypes = sorted({name.split("/")[1] for name in series})
    figure, axes = plt.subplots(len(dtypes), 1, figsize=(10, 3.6 * len(dtypes)), squeeze=False)
    for axis, dtype in zip(axes[:, 0], dtypes, strict=True):
        for name, data in sorted(series.items()):
            if name.split("/")[1] != dtype:
                continue
            label = name.split("/")[2]
            gap = [max(g, FLOOR) if math.isfinite(g) else math.nan for g in data["relative_gap"]]
            line = axis.plot(data["x"], gap, lw=1.2, label=f"gap, {label}")[0]
            axis.plot(
                data["x"],
                [b if math.isfinite(b) else math.nan for b in data["relative_bound"]],
                lw=0.8,
                ls="--",
                color=line.get_color(),
                label=f"bound, {label}",
            )
        low, high = series[next(n for n in series if n.split("/")[1] == dtype)]["domain"]
        axis.axvspan(low, high, color="tab:green", alpha=0.08, label="identity asserted within its bound")
        axis.set_xscale("symlog", linthresh=10)
        axis.set_yscale("log")
        axis.set_ylim(FLOOR / 2, 1e3)
        axis.set_xlabel("logit x")
        axis.set_ylabel("relative gap (exact agreement drawn at 1e-18)")
        axis.set_title(
            f"{dtype}: the identity holds where sigmoid neither saturates nor meets the -100 clamp "
            f"(x in [{low:.1f}, {high:.1f}])",
            fontsize=10,
        )
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=7, loc="upper center", ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def worst_error_against_bound(report: dict[str, Any], path: pathlib.Path) -> bool:
    """Each parity check's worst error as a fraction of its bound (1 = the bound)."""
    rows = [
        (f"{c.get('loss')} | {c.get('variant')} | {c.get('dtype')} | {c.get('form')}", c["worst"]["error_over_bound"])
        for c in report["checks"]
        if c.get("kind") == "parity" and c.get("examples_compared")
    ]
    if not rows:
        return False
    plt = _pyplot()
    rows.sort()
    figure, axis = plt.subplots(figsize=(10, 0.28 * len(rows) + 1.5))
    values = [max(value, 1e-6) for _, value in rows]
    axis.barh(range(len(rows)), values, color="tab:blue")
    axis.axvline(1.0, color="tab:red", lw=1.5, label="the tolerance model's bound")
    axis.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
    axis.set_xscale("log")
    axis.set_xlim(1e-7, 10)
    axis.set_xlabel("worst |torch - reference| / bound\n(below 1e-6, exact agreement included, drawn at 1e-6)")
    axis.invert_yaxis()
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


FIGURES = {
    "identity_map.png": identity_map,
    "worst_error_against_bound.png": worst_error_against_bound,
}


def draw(report: dict[str, Any], directory: pathlib.Path) -> dict[str, str]:
    """Draw every figure the run has data for; returns file name -> what happened."""
    try:
        _pyplot()
    except ImportError:
        return {name: "not drawn: matplotlib is not installed" for name in FIGURES}
    outcome = {}
    for name, figure in FIGURES.items():
        (directory / name).unlink(missing_ok=True)
        with warnings.catch_warnings():
            # matplotlib's own numeric warnings while scaling axes: about drawing, not about the data.
            warnings.simplefilter("ignore", RuntimeWarning)
            drawn = figure(report, directory / name)
        outcome[name] = "drawn" if drawn else "not drawn: the run measured no data for it"
    return outcome
