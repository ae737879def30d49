"""The implementations under test: each loss in torch's functional and module forms.

An implementation is any callable with torch's functional signature,
``impl(input, target, **kwargs) -> Tensor``. The module form builds the ``nn`` module with
the keyword arguments (its constructor takes the same names) and calls it, so argument
plumbing through the module is part of what is checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import adapters

from . import ledger, registry
from .cases import Case

LossImpl = Callable[..., torch.Tensor]

# The losses torch has, as the registry declares them.
LOSSES = tuple(entry.name for entry in registry.TORCH_LOSSES)
FORMS = ("functional", "module")


def _module(loss: str) -> type[nn.Module]:
    module = registry.info(loss).module
    assert module is not None, f"{loss} has no torch module"
    return module


def module_form(module_class: type[nn.Module]) -> LossImpl:
    def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        result: torch.Tensor = module_class(**kwargs)(input, target)
        return result

    call.__qualname__ = f"{module_class.__name__}(**kwargs)(input, target)"
    return call


def torch_impl(loss: str, form: str) -> LossImpl:
    if form == "functional":
        impl = registry.info(loss).functional
        assert impl is not None, f"{loss} has no torch functional"
        return impl
    return module_form(_module(loss))


def call_expression(loss: str, form: str) -> str:
    """How the reproducer spells a call of this implementation."""
    if form == "functional":
        return f"torch.nn.functional.{loss}(input, target, **kwargs)"
    return f"torch.nn.{_module(loss).__name__}(**kwargs)(input, target)"


# ---------------------------------------------------------------------------------------------
# --impl: aiming the suite at another implementation with torch's signature.
# ---------------------------------------------------------------------------------------------


class ImplUnderTest:
    """An implementation named on the command line as LOSS=package.module:attribute.

    A class (an ``nn.Module`` like ``nn.CrossEntropyLoss``) is checked in module form: built with
    the keyword arguments, then called on (input, target). Anything else callable is checked in
    functional form: called as ``impl(input, target, **kwargs)``.
    """

    def __init__(self, spec: str) -> None:
        loss, sep, target = spec.partition("=")
        module_name, colon, attribute = target.partition(":")
        if not sep or not colon or loss not in LOSSES:
            raise ValueError(f"--impl {spec!r}: expected LOSS=package.module:attribute with LOSS one of {LOSSES}")
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        self.spec, self.loss = spec, loss
        self.form = "module" if isinstance(obj, type) else "functional"
        implementation: LossImpl = module_form(obj) if isinstance(obj, type) else obj

        def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return implementation(input, target, **kwargs)

        call.label = target  # type: ignore[attr-defined]  # how failures name it instead of "torch"
        # An adapter's own named divergences (adapters/): the rules that exclude a case, with the divergence's name.
        module = importlib.import_module(module_name)
        call.known_divergence = getattr(module, "known_divergence", _no_divergence)  # type: ignore[attr-defined]
        call.known_gradient_divergence = getattr(  # type: ignore[attr-defined]
            module, "known_gradient_divergence", _no_divergence
        )
        call.rejection_divergences = getattr(module, "REJECTION_DIVERGENCES", {})  # type: ignore[attr-defined]
        # The losses whose gradient an adapter computes in another order than torch's backward formula, and which
        # (a loss entry's other_gradient_replays): the gradient bounds replay that order.
        call.gradient_algorithms = dict(getattr(module, "GRADIENT_ALGORITHMS", {}))  # type: ignore[attr-defined]
        # The dtypes in which an adapter's arithmetic flushes subnormal results to zero: bounds for that arithmetic.
        call.flushes_subnormals = tuple(getattr(module, "FLUSHES_SUBNORMALS", ()))  # type: ignore[attr-defined]
        # Whether its sums follow another order or accumulator than torch's kernels: any-order bounds for them.
        call.sums_in_any_order = bool(getattr(module, "SUMS_IN_ANY_ORDER", False))  # type: ignore[attr-defined]
        self.call: LossImpl = call


def adapter_specs(spec: str) -> list[str]:
    """``--impl`` specs: an adapter's name (adapters.ADAPTERS) stands for LOSS=adapters.module:LOSS for every loss
    it has; anything else is one spec already."""
    if "=" in spec:
        return [spec]
    try:
        module = adapters.load(spec)
    except ValueError as error:
        raise ValueError(f"--impl {spec!r}: neither LOSS=package.module:attribute nor an adapter: {error}") from None
    return [f"{loss}={module.__name__}:{loss}" for loss in module.LOSSES]


def implementation_under_test(impls: dict[str, ImplUnderTest], loss: str, form: str) -> LossImpl:
    """torch's implementation, or the one given with --impl for this loss (skipping the form it does not have)."""
    chosen = impls.get(loss)
    if chosen is None:
        return torch_impl(loss, form)
    if chosen.form != form:
        import pytest

        pytest.skip(f"--impl {chosen.spec} is a {chosen.form} implementation; the {form} form is torch's")
    return chosen.call


def _no_divergence(case: Case, dtype: Any) -> str | None:
    return None


def known_divergence(impl: LossImpl, rule: Callable[[Case], str | None], dtype: Any) -> Callable[[Case], str | None]:
    """torch's rule for a loss (``rule``), and the implementation's own named divergences where it has any (an
    adapter's rules take the dtype too: whether a case falls under one may depend on it)."""
    own = getattr(impl, "known_divergence", _no_divergence)
    return lambda case: rule(case) or _named(impl, own(case, dtype))


def known_gradient_divergence(
    impl: LossImpl, rule: Callable[[Case], str | None], dtype: Any
) -> Callable[[Case], str | None]:
    own = getattr(impl, "known_gradient_divergence", _no_divergence)
    return lambda case: rule(case) or _named(impl, own(case, dtype))


def _named(impl: LossImpl, reason: str | None) -> str | None:
    """An implementation's own divergence, named as such (ledger.NAMED_DIVERGENCE_OF) wherever it is counted."""
    return f"{ledger.NAMED_DIVERGENCE_OF}{label(impl)}: {reason}" if reason else None


def rejection_divergence(impl: LossImpl, defect: object) -> str | None:
    """The implementation's named divergence for a rejection defect (``str(defect)``, "loss: what"), if it has one."""
    divergences: dict[str, str] = getattr(impl, "rejection_divergences", {})
    return divergences.get(str(defect))


def gradient_algorithm(impl: LossImpl, loss: str) -> str:
    """The order in which the implementation computes ``loss``'s gradient: "torch" (torch's backward formula), or
    the algorithm an adapter names in its ``GRADIENT_ALGORITHMS``."""
    return str(getattr(impl, "gradient_algorithms", {}).get(loss, "torch"))


def flushes_subnormals(impl: LossImpl, dtype: Any) -> bool:
    """Whether the implementation's arithmetic flushes subnormal results of ``dtype`` to zero (the dtype is named in
    an adapter's ``FLUSHES_SUBNORMALS``): the tolerance model then bounds that arithmetic
    (``tracked.flushing_subnormals``)."""
    return str(dtype) in getattr(impl, "flushes_subnormals", ())


def sums_in_any_order(impl: LossImpl) -> bool:
    """Whether the implementation declares that it adds in another order or accumulator than torch's kernels (an
    adapter's ``SUMS_IN_ANY_ORDER``): its sums are then bounded for any order in the storage dtype
    (``tracked.summing_in_any_order``); torch's, and any other implementation's, by torch's own paths."""
    return bool(getattr(impl, "sums_in_any_order", False))


def label(impl: LossImpl) -> str:
    """What failures call the implementation: "torch", or the --impl target."""
    return str(getattr(impl, "label", "torch"))


# ---------------------------------------------------------------------------------------------
# Focal loss: not in torch; torchvision's is checked when torchvision is installed (the 'focal' extra).
# ---------------------------------------------------------------------------------------------

TORCHVISION_FOCAL = "torchvision.ops:sigmoid_focal_loss"


def torchvision_focal_loss() -> tuple[LossImpl | None, str]:
    """torchvision.ops.sigmoid_focal_loss, labelled for failure messages and reproducers; or None and the reason
    it cannot be used (not installed, or installed but failing to load beside this torch)."""
    try:
        from torchvision.ops import sigmoid_focal_loss
    except Exception as error:  # PyPI's torchvision beside a CPU-only torch wheel raises RuntimeError on import
        return None, (
            f"torchvision is not usable here ({type(error).__name__}: {error}); "
            "install a torchvision built for this torch (pip install -e '.[focal]') to run these checks"
        )

    def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        result: torch.Tensor = sigmoid_focal_loss(input, target, **kwargs)
        return result

    call.label = TORCHVISION_FOCAL  # type: ignore[attr-defined]
    return call, ""
