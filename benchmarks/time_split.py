"""A pytest plugin for the benchmark (``-p benchmarks.time_split``): where a parity or gradient property's time goes.

For each test it adds up the seconds spent in the suite's checks (``check_parity_batch``,
``check_gradient_parity_batch``: the reference, the tolerance model's replay, torch and the comparison) and, of
those, in torch's own calls (the loss's forward, and autograd's backward pass) and in the reference's (the loss's
value or its analytic gradient). A property's time outside its checks is hypothesis's: its engine, and drawing the
examples. Torch's seconds and hypothesis's together are a floor that no work on the suite's own side (reference,
replay, comparison) can go below, at the same examples and cases.

It times torch's eager kernels (an ``--impl`` adapter's calls are timed alike, but the plugin does not carry the
adapter's declarations, so use it without ``--impl``). When the run ends it writes a JSON object, test id ->
{"checks": s, "torch": s, "reference": s}, to the path in LOSS_PARITY_TIME_SPLIT. Serially only (-n 0): xdist's
workers would each write it.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from verification import compare, properties, registry

_spent: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"checks": 0.0, "torch": 0.0, "reference": 0.0})
_current = {"test": ""}


def _add(what: str, started: float) -> None:
    _spent[_current["test"]][what] += time.perf_counter() - started


def _timed(call: Callable[..., Any], what: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            _add(what, started)

    return timed


def pytest_configure(config: pytest.Config) -> None:
    patch = pytest.MonkeyPatch()
    config.add_cleanup(patch.undo)
    # verification.properties calls these by the names it imported from verification.compare: patched there.
    check_parity_batch, check_gradient_parity_batch = compare.check_parity_batch, compare.check_gradient_parity_batch

    def parity(batch: Any, impl: Callable[..., Any], **kwargs: Any) -> None:
        _timed(check_parity_batch, "checks")(batch, _timed(impl, "torch"), **kwargs)

    def gradients(batch: Any, grad_outputs: Any, impl: Callable[..., Any], **kwargs: Any) -> None:
        _timed(check_gradient_parity_batch, "checks")(batch, grad_outputs, _timed(impl, "torch"), **kwargs)

    reference_value, reference_gradient = compare._reference, registry.reference_gradient
    patch.setattr(compare, "_reference", lambda loss: _timed(reference_value(loss), "reference"))
    patch.setattr(registry, "reference_gradient", lambda loss: _timed(reference_gradient(loss), "reference"))
    patch.setattr(properties, "check_parity_batch", parity)
    patch.setattr(properties, "check_gradient_parity_batch", gradients)
    # Tensor.backward calls torch.autograd.backward: one patch times both ways of starting a backward pass.
    patch.setattr(torch.autograd, "backward", _timed(torch.autograd.backward, "torch"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _current["test"] = item.nodeid.split("::", 1)[-1]
    try:
        return (yield)
    finally:
        _current["test"] = ""


def pytest_unconfigure(config: pytest.Config) -> None:
    path = os.environ.get("LOSS_PARITY_TIME_SPLIT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({test: spent for test, spent in _spent.items() if test}, out, indent=1)
