"""The implementations under test: each loss in torch's functional and module forms.

An implementation is any callable with torch's functional signature,
``impl(input, target, **kwargs) -> Tensor``. The module form builds the ``nn`` module with
the keyword arguments (its constructor takes the same names) and calls it, so argument
plumbing through the module is part of what is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

LossImpl = Callable[..., torch.Tensor]

LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy")
FORMS = ("functional", "module")

MODULES: dict[str, type[nn.Module]] = {
    "binary_cross_entropy": nn.BCELoss,
    "binary_cross_entropy_with_logits": nn.BCEWithLogitsLoss,
    "nll_loss": nn.NLLLoss,
    "cross_entropy": nn.CrossEntropyLoss,
}


def module_form(module_class: type[nn.Module]) -> LossImpl:
    def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        result: torch.Tensor = module_class(**kwargs)(input, target)
        return result

    call.__qualname__ = f"{module_class.__name__}(**kwargs)(input, target)"
    return call


def torch_impl(loss: str, form: str) -> LossImpl:
    if form == "functional":
        impl: LossImpl = getattr(F, loss)
        return impl
    return module_form(MODULES[loss])


def call_expression(loss: str, form: str) -> str:
    """How the reproducer spells a call of this implementation."""
    if form == "functional":
        return f"torch.nn.functional.{loss}(input, target, **kwargs)"
    return f"torch.nn.{MODULES[loss].__name__}(**kwargs)(input, target)"
