"""Hands the evidence plugin what each test measured, as a ``loss_parity`` user property.

User properties travel with the test report to pytest-xdist's controller and into JUnit XML,
so the report is the same whether the run was split over workers or not.
"""

from __future__ import annotations

import json

import pytest

from verification.ledger import RECORDS


def _claim(item: pytest.Item) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "variant" in params:
        return str(params["variant"].claim)
    if hasattr(params.get("defect"), "what"):  # a rejection case of test_rejections.py
        return f"Torch and the reference both reject a call with {params['defect'].what}, raising the same class."
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    return " ".join(doc.split())


def _kind(item: pytest.Item, claim: str) -> str:
    path = item.nodeid
    if "/meta/" in path:
        return "meta"
    if claim.startswith("Named divergence"):
        return "divergence"
    if "test_identities" in path or "test_information_theory" in path or "test_cifar10_walkthrough" in path:
        return "identity"
    if "test_focal_loss" in path:  # torchvision against the reference, or the reference against torch's BCE
        name = item.name
        for marker, kind in (("rejection", "rejection"), ("planted_bug", "meta"), ("gradient", "gradient")):
            if marker in name:
                return kind
        return "parity" if "torchvision" in name else "identity"
    if "test_gradients" in path:
        return "gradient"
    if "test_exhaustive" in path:
        return "sweep"
    if "test_reference_oracle" in path:
        return "oracle"
    if "test_rejections" in path:
        return "rejection"
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "parity" if "variant" in params else "other"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each run of a test measures afresh: a run of pytest inside this process (the meta tests' in-process runs)
    may run a test of the same id again."""
    RECORDS.pop(item.nodeid, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Attach what the test measured to its report, for the evidence plugin (and xdist's controller)."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call":
        return
    params = getattr(getattr(item, "callspec", None), "params", {})
    claim = _claim(item)
    entry: dict[str, object] = {
        "claim": claim,
        "kind": _kind(item, claim),
        "device": item.config.getoption("device", "cpu"),
    }
    variant = params.get("variant") or (params["defect"] if hasattr(params.get("defect"), "what") else None)
    if variant is not None:
        entry["loss"] = variant.loss
        entry["variant"] = str(getattr(variant, "name", getattr(variant, "what", "")))
    for name in ("form", "dtype"):
        if name in params:
            entry[name] = str(params[name])
    if item.nodeid in RECORDS:
        entry.update(RECORDS[item.nodeid].as_dict())
    if call.excinfo is not None and report.failed:
        entry["failure"] = str(call.excinfo.value)[:20000]
    report.user_properties.append(("loss_parity", json.dumps(entry, default=str)))
