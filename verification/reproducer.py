"""Copy-pasteable snippets that rerun a failing Case against torch and the reference.

Every array is written out as an exact ``np.array([...])`` literal, except an array of more than ``LITERAL_LIMIT``
elements (the large inputs, up to millions of elements): it is saved, bit for bit, to a ``.npy`` file named after its
contents, and the snippet reads it back with ``np.load('counterexamples/<name>.npy')``. That path is relative to the
repository's root, where reproducers are run; the directory is ``counterexamples/`` there (ignored by git) unless
``LOSS_PARITY_COUNTEREXAMPLES`` names another, whose absolute path the snippet then holds."""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import uuid
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


# An array of more elements than this is saved to a file rather than written out. 4096 float64 literals are up to
# ~100 kB of text, about the most a failure message can carry and still be read and pasted; every ordinary case is
# far smaller (a few hundred elements), so its reproducer stays self-contained, and every array this large is a large
# input's (verification/kernel_paths.py).
LITERAL_LIMIT = 4096

ROOT = pathlib.Path(__file__).resolve().parents[1]
COUNTEREXAMPLES_ENV = "LOSS_PARITY_COUNTEREXAMPLES"


def counterexamples_dir() -> tuple[pathlib.Path, str]:
    """The directory large arrays are saved in, and that directory as a reproducer spells it: ``counterexamples``
    (relative to the repository's root, where reproducers run), or ``LOSS_PARITY_COUNTEREXAMPLES`` made absolute
    (a relative one is taken relative to the current directory)."""
    override = os.environ.get(COUNTEREXAMPLES_ENV)
    if override:
        directory = pathlib.Path(override).absolute()
        return directory, directory.as_posix()
    return ROOT / "counterexamples", "counterexamples"


def array_file_name(array: np.ndarray) -> str:
    """A name for ``array``'s file that its dtype, shape and bytes determine: the same array always gets the same
    file, and a rerun of a failure adds none."""
    digest = hashlib.sha256()
    digest.update(array.dtype.str.encode())
    digest.update(repr(tuple(array.shape)).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16] + ".npy"


def saved_array(array: np.ndarray) -> str:
    """Save ``array`` (bit for bit: np.save keeps dtype, byte order, shape and every value) and return the path a
    reproducer loads it from. Written to a temporary file and renamed into place, so pytest-xdist workers saving
    the same array at once never leave, or read, a partial file."""
    directory, spelled = counterexamples_dir()
    name = array_file_name(array)
    path = directory / name
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        # A name no other writer uses (opened exclusively, with the usual permissions, unlike mkstemp's 0600).
        temporary = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "xb") as file:
                np.save(file, array, allow_pickle=False)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return f"{spelled}/{name}"


def array_literal(array: np.ndarray) -> str:
    """An exact expression for ``array`` (shape, dtype and every bit of value): an ``np.array(...)`` literal, or for
    an array of more than ``LITERAL_LIMIT`` elements ``np.load(...)`` of the file ``saved_array`` writes."""
    if array.size > LITERAL_LIMIT:
        return f"np.load({saved_array(array)!r})"
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
        *(
            []
            if case.memory == "contiguous"
            else [
                "from verification.cases import laid_out  # the same values, laid out in memory as the failure had",
                f"input = laid_out(input, {case.memory!r})",
            ]
        ),
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
            f"from reference.gradients import {case.loss}_grad",
            f"g = {array_literal(grad_output)}",
            "input.requires_grad_(True)",
            f"({call}).backward(torch.as_tensor(g).to(device=device, dtype=dtype))",
            f"print({impl!r:11}, input.grad)",
            f"print('reference', {case.loss}_grad(x, t, **np_kwargs, grad_output=g))",
        ]
    )


def expressions_snippet(case: Case, dtype: Dtype, device: str, *expressions: str) -> str:
    """Rebuild ``case`` and print each expression (written in terms of input, target, kwargs, x, t)."""
    return "\n".join([*setup_lines(case, dtype, device), *(f"print({e})" for e in expressions)])
