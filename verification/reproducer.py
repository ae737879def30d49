"""Copy-pasteable snippets that rerun a failing Case against torch and the reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .cases import ARRAY_KWARGS, Case
from .dtypes import Dtype
from .implementations import call_expression


def _float_literal(value: float) -> str:
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))  # repr round-trips float64 exactly


def _nested(values: Any) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    if isinstance(values, float):
        return _float_literal(values)
    return repr(values)


def array_literal(array: np.ndarray) -> str:
    """An exact ``np.array(...)`` expression for ``array`` (shape, dtype and every bit of value)."""
    if array.size == 0:
        return f"np.zeros({array.shape!r}, dtype=np.{array.dtype})"
    return f"np.array({_nested(array.tolist())}, dtype=np.{array.dtype})"


def setup_lines(case: Case, dtype: Dtype, device: str) -> list[str]:
    """Lines that rebuild ``case`` as NumPy arrays (x, t, np_kwargs) and as tensors (input, target, kwargs)."""
    kwargs = ", ".join(f"{k}={array_literal(v) if k in ARRAY_KWARGS else repr(v)}" for k, v in case.kwargs.items())
    return [
        "import numpy as np, torch",
        "import torch.nn.functional as F",
        "import reference",
        f"x = {array_literal(case.input)}",
        f"t = {array_literal(case.target)}",
        f"np_kwargs = dict({kwargs})",
        f"dtype, device = torch.{dtype.name}, {device!r}",
        "as_t = lambda a: torch.as_tensor(a).to(device=device, dtype=dtype if a.dtype == np.float64 else None)",
        "kwargs = {k: as_t(v) if isinstance(v, np.ndarray) else v for k, v in np_kwargs.items()}",
        "input, target = as_t(x), as_t(t)",
    ]


def snippet(case: Case, dtype: Dtype, device: str, form: str, impl: str = "torch") -> str:
    """Rerun ``case`` with the implementation under test (torch, or an --impl target) and with the reference."""
    if impl == "torch":
        setup, call = [], call_expression(case.loss, form)
    else:
        module, attribute = impl.split(":", 1)
        setup = [f"from {module} import {attribute.split('.')[0]} as impl_under_test"]
        call = (
            "impl_under_test(**kwargs)(input, target)"
            if form == "module"
            else "impl_under_test(input, target, **kwargs)"
        )
    return "\n".join(
        [
            *setup_lines(case, dtype, device),
            *setup,
            f"print({impl!r:11}, {call})",
            f"print('reference', reference.{case.loss}(x, t, **np_kwargs))",
        ]
    )


def gradient_snippet(
    case: Case, grad_output: np.ndarray, dtype: Dtype, device: str, form: str, impl: str = "torch"
) -> str:
    """Rerun ``case``'s backward pass with grad_output, against the reference's analytic gradient."""
    forward = snippet(case, dtype, device, form, impl).splitlines()
    call = forward[-2].split(", ", 1)[1][:-1]  # the implementation's call expression
    return "\n".join(
        [
            *forward[:-2],
            "from reference.gradients import GRADIENTS",
            f"g = {array_literal(grad_output)}",
            "input.requires_grad_(True)",
            f"({call}).backward(torch.as_tensor(g).to(device=device, dtype=dtype))",
            f"print({impl!r:11}, input.grad)",
            f"print('reference', GRADIENTS[{case.loss!r}](x, t, **np_kwargs, grad_output=g))",
        ]
    )


def expressions_snippet(case: Case, dtype: Dtype, device: str, *expressions: str) -> str:
    """Rebuild ``case`` and print each expression (written in terms of input, target, kwargs, x, t)."""
    return "\n".join([*setup_lines(case, dtype, device), *(f"print({e})" for e in expressions)])
