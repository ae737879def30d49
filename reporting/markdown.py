"""report.md: the report as a person reads it (and pastes into an appendix, an audit or a PR)."""

from __future__ import annotations

from typing import Any


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _seed_words(run: dict[str, Any]) -> str:
    if run["hypothesis_seed"] is not None:
        return f"seed {run['hypothesis_seed']}"
    if run["derandomized"]:
        return "derandomized: each property's seed is derived from its name, so a rerun draws the same examples"
    return "random seeds (not reproducible example by example; use the ci profile or --hypothesis-seed)"


def _mutation_words(summary: dict[str, Any]) -> list[str]:
    score = summary.get("mutation_score")
    if not score:
        return []
    survivors = f" Survivors: {', '.join(score['survivors'])}." if score["survivors"] else ""
    return [
        f"Mutation score: {score['caught']} of {score['planted']} planted bugs caught by this run's properties "
        f"(verification/losses/).{survivors}",
        "",
    ]


def _losses(losses: list[dict[str, Any]]) -> list[str]:
    """The registry's losses: what each declares, and each gap with its reason."""
    if not losses:
        return []
    lines = ["## Losses: parts and gaps", "", "| loss | parts | gaps |", "| --- | --- | --- |"]
    for loss in losses:
        parts = ", ".join(part if status == "yes" else f"{part} ({status})" for part, status in loss["parts"].items())
        gaps = "; ".join(f"{part}: {reason}" for part, reason in loss["gaps"].items()) or "none"
        lines.append(f"| {_cell(loss['name'])} | {_cell(parts)} | {_cell(gaps)} |")
    return [*lines, ""]


def capability_words(env: dict[str, Any]) -> str:
    capability = env.get("cpu_capability")
    return f", torch's CPU kernels built for {capability}" if capability else ""


def render(report: dict[str, Any]) -> str:
    env, suite, run, summary = report["environment"], report["suite"], report["run"], report["summary"]
    lines = [
        "# loss-parity evidence report",
        "",
        f"**Verdict: {report['verdict']}**",
        "",
        f"torch {env['torch']} (git {env['torch_git']}) on `{env['device']}` ({env['device_name']}"
        f"{capability_words(env)}); "
        f"CUDA {env['cuda']}, cuDNN {env['cudnn']}; numpy {env['numpy']}, hypothesis {env['hypothesis']}, "
        f"Python {env['python']}, {env['os']}.",
        "",
        f"Suite {suite['version']} at commit `{suite['git_commit']}`"
        f"{' (with uncommitted changes)' if suite['git_dirty'] else ''}; "
        f"reference/ sha256 `{suite['reference_sha256'][:16]}`, "
        f"verification/ sha256 `{suite['verification_sha256'][:16]}`, tests/ sha256 `{suite['tests_sha256'][:16]}`"
        + (f", adapters/ sha256 `{suite['adapters_sha256'][:16]}`." if suite.get("adapters_sha256") else "."),
        "",
        f"Hypothesis profile: {run['hypothesis_profile']}; {_seed_words(run)}.",
        "",
        f"Reproduce: `{run['reproduce']}` with the environment above (from a clone at the suite's commit, "
        "`python3 -m nox -s verify` installs it for torch 2.13.0).",
        "",
        f"{summary['checks']} checks; {summary['examples_compared']} examples compared against the reference, "
        f"{summary['examples_excluded']} excluded{' (reasons below)' if summary['examples_excluded'] else ''}.",
        "",
        *_mutation_words(summary),
        *_losses(report.get("losses", [])),
        "## Checks",
        "",
        "| check | claim | loss | form | dtype | compared | largest input | excluded | worst abs error | rel | ulps "
        "| bound | error / bound | outcome |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for entry in report["checks"]:
        worst = entry.get("worst", {})
        lines.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (
                    entry["id"].split("::", 1)[-1],
                    entry.get("claim", ""),
                    entry.get("loss", ""),
                    entry.get("form", ""),
                    entry.get("dtype", ""),
                    entry.get("examples_compared", ""),
                    entry.get("largest_input_elements", ""),
                    sum(entry.get("examples_excluded", {}).values()) if "examples_excluded" in entry else "",
                    _number(worst.get("abs_error")),
                    _number(worst.get("rel_error")),
                    _number(worst.get("ulp_error")),
                    _number(worst.get("bound")),
                    _number(worst.get("error_over_bound")),
                    _outcome(entry),
                )
            )
            + " |"
        )
    exclusions = [
        (e["id"], reason, n) for e in report["checks"] for reason, n in e.get("examples_excluded", {}).items()
    ]
    if exclusions:
        lines += ["", "## Excluded examples, by reason", "", "| reason | count |", "| --- | ---: |"]
        lines += [f"| {_cell(r)} | {n} |" for r, n in summary.get("examples_excluded_by_reason", {}).items()]
        lines += ["", "## Excluded examples, by check", "", "| check | reason | count |", "| --- | --- | ---: |"]
        lines += [f"| {_cell(i.split('::', 1)[-1])} | {_cell(r)} | {n} |" for i, r, n in exclusions]
    if report["divergences"]:
        lines += [
            "",
            "## Named divergences",
            "",
            "Each asserts torch's actual behaviour where it departs from the documented semantics; "
            "'still observed' means torch behaved as recorded in every parametrization.",
            "",
        ]
        by_claim: dict[str, list[dict[str, Any]]] = {}
        for divergence in report["divergences"]:
            by_claim.setdefault(divergence["claim"], []).append(divergence)
        for claim, checks in by_claim.items():
            changed = [c for c in checks if c["outcome"] != "passed"]
            status = f"CHANGED in {len(changed)} of {len(checks)} checks" if changed else "still observed"
            links = " ".join(sorted({link for c in checks for link in c["links"]}))
            lines.append(f"- **{status}** ({len(checks)} checks): {claim} {links}".rstrip())
    sweeps = [
        (e, e["measurements"]["largest_error_in_ulps"])
        for e in report["checks"]
        if "largest_error_in_ulps" in e.get("measurements", {})
    ]
    if sweeps:
        lines += [
            "",
            "## Exhaustive sweeps",
            "",
            "| sweep | inputs swept | compared | largest error (ulps) | at input | torch | reference |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for entry, m in sweeps:
            cells = (
                entry["id"].split("::", 1)[-1],
                m["inputs_swept"],
                m["inputs_compared"],
                _number(m["ulps"]),
                _number(m["at_input"]),
                _number(m["torch"]),
                _number(m["reference"]),
            )
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    model = report.get("tolerance_model")
    if model:
        lines += ["", "## Tolerance model", "", f"From `{model['source']}`:", "", model["description"]]
    failures = [e for e in report["checks"] if e["outcome"] in ("failed", "error")]
    if failures:
        lines += ["", "## Failures and counterexamples", ""]
        for entry in failures:
            lines += [f"### {entry['id']}", "", "```", entry.get("failure", "").rstrip(), "```", ""]
    drawn = [name for name, outcome in report.get("figures", {}).items() if outcome == "drawn"]
    if drawn:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in drawn]
    timing = report["timing"]
    lines += ["", f"Run from {timing['started_utc']} to {timing['finished_utc']} ({timing['wall_seconds']} s).", ""]
    return "\n".join(lines)


def _outcome(entry: dict[str, Any]) -> str:
    """passed, failed or error; a skip with its reason, since a skipped check proves nothing."""
    if entry["outcome"] == "skipped":
        return f"skipped: {entry.get('skip_reason', '').removeprefix('Skipped: ')}"
    return str(entry["outcome"])
