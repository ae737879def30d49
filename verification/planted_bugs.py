"""Planted bugs: plausible wrong implementations, each modelling a mistake real loss code has made.

Each is a drop-in replacement with torch's functional signature, built from torch's own (correct) pieces plus
exactly one mistake. The bugs themselves live in their loss's module (``verification/losses/``), which declares
them in its registry entry; this module holds what they share. The meta tests run the suite's properties against
each one and require one to fail.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

LossImpl = Callable[..., Tensor]


@dataclass(frozen=True)
class PlantedBug:
    loss: str
    name: str
    mistake: str  # one line: the real-world mistake it models
    impl: LossImpl
    # Which of the suite's property families the mistake lives in ("value", "gradient", "validation"): the
    # meta test tries that family first, to keep the run short; any family may catch it.
    area: str = "value"

    @property
    def target(self) -> str:
        """Where --impl finds it: the attribute that holds it in its loss's module (verification/losses/), or in
        the module that defines it."""
        modules = [sys.modules[self.impl.__module__], *(m for n, m in sys.modules.items() if n.startswith(LOSSES))]
        for module in modules:
            for name, value in vars(module).items():
                if value is self.impl and not name.startswith("_"):
                    return f"{module.__name__}:{name}"
        raise LookupError(f"planted bug {self.name} is not a module attribute")


LOSSES = "verification.losses."


def _class_dim(input: Tensor) -> int:
    return 0 if input.dim() == 1 else 1


def _reduced(per_element: Tensor, reduction: str, denominator: Tensor | float | None = None) -> Tensor:
    if reduction == "none":
        return per_element
    if reduction == "sum":
        return per_element.sum()
    return per_element.sum() / (per_element.numel() if denominator is None else denominator)


# --- module argument plumbing -----------------------------------------------------------------------


def _module_dropping(module: type[torch.nn.Module], dropped: str) -> Callable[..., Tensor]:
    def call(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
        kwargs.pop(dropped, None)
        result: Tensor = module(**kwargs)(input, target)
        return result

    return call
