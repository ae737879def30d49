"""The exhaustive float32 sweeps, declared once each: what torch computes (a kernel, one call for a whole chunk of
inputs, which may give several results: a loss and its gradient), the exact function each result is compared with,
and the tolerance model's bound for it.

Each exact function is a function of the one float32 input: the univariate cores of the losses. Its float64
reference is the suite's (``reference/``), in the form without cancellation; where its correctly rounded value is
known in closed form (the saturated ranges: e^x below half the smallest subnormal, log(1 + e^x) = x to float32
precision, and so on, each with its reason) the engine skips the reference and compares with that value, and only
an input where torch differs from it gets the reference, which must agree (the engine stops if not).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mpmath  # type: ignore[import-untyped]  # mpmath ships neither type stubs nor a py.typed marker
import numpy as np
import numpy.typing as npt
import torch

import reference
from verification import registry
from verification.dtypes import FLOAT32
from verification.tolerance.tracked import SIGMOID_ERROR, TRANSCENDENTAL_ERROR, Tracked

from .floats import F32, F64, ExactFunction, key_of

TINY = float(np.finfo(np.float32).smallest_subnormal)  # 2^-149


def below(value: float) -> float:
    """The largest float32 below ``value`` in magnitude: the closed end of the open range |x| < value."""
    return float(np.nextafter(np.float32(value), np.float32(0)))


@dataclass(frozen=True)
class Saturated:
    """A closed range [low, high] of float32 inputs where the correctly rounded value is known in closed form:
    ``value`` (a constant), or ``rule(x)`` (float32 array in, float32 array out)."""

    low: float
    high: float
    why: str
    value: float | None = None
    rule: Callable[[F32], F32] | None = None

    def keys(self) -> tuple[int, int]:
        return key_of(self.low), key_of(self.high)


@dataclass(frozen=True)
class Exact:
    """A function of one float32 input whose correctly rounded value torch's result is compared with."""

    name: str
    reference: Callable[[F64], F64]  # float64, within floats.REFERENCE_ACCURACY of the exact value
    mp: ExactFunction  # the exact value in mpmath, as head + tail (floats.py)
    saturated: tuple[Saturated, ...]
    # (factor, base): the reference is factor times base's reference, which the engine reuses where it has it.
    multiple_of: tuple[float, Exact] | None = None


def _identity(x: F32) -> F32:
    return x.copy()


def _three_times_negated_rounded_up(x: F32) -> F32:
    """-3x plus a positive amount below half the gap between -3x and the float32 numbers and midpoints around it:
    -3x has at most 26 significant bits, so it is at least 2^-26 of itself from any midpoint it is not on; the
    amount rounds -3x up where it is a midpoint and changes nothing elsewhere (the overflow midpoint included)."""
    with np.errstate(over="ignore"):
        return (-3.0 * x.astype(np.float64) * (1.0 + 2.0**-40)).astype(np.float32)


# The underflow edge: e^x < 2^-150 (half the smallest subnormal) for x < -150 ln 2 = -103.9721.
UNDERFLOW = -103.975
LN2 = float(np.float32(math.log(2)))


def softplus_saturation(scale: float) -> tuple[Saturated, ...]:
    """scale * softplus(x) for scale 1 or 3 (pos_weight): 0 below the underflow edge, scale * ln 2 near 0,
    and scale * x once log1p(e^-x) is below half the gap to the next midpoint."""
    near_zero = 2.0**-25
    if scale == 1:
        large = Saturated(16.0, math.inf, "x + log1p(e^-x) with log1p(e^-x) < e^-16 < half an ulp of x", rule=_identity)
    else:
        large = Saturated(
            16.0,
            math.inf,
            "3x + 3 log1p(e^-x): 3 e^-16 is below 2^-26 of 3x, so 3x rounded up where it is a midpoint",
            rule=lambda x: _three_times_negated_rounded_up(-x),
        )
    return (
        Saturated(-math.inf, UNDERFLOW - (math.log(scale) + 0.01 if scale != 1 else 0.0), "below 2^-150", value=0.0),
        Saturated(
            -below(near_zero),
            below(near_zero),
            f"{scale:g} ln 2 + {scale / 2:g} x + ...: within half an ulp of {scale:g} ln 2 rounded",
            value=float(np.float32(scale * math.log(2))),
        ),
        large,
    )


def mirrored(ranges: tuple[Saturated, ...], negate_rule: bool = True) -> tuple[Saturated, ...]:
    """The saturated ranges of f(-x), from those of f(x)."""
    out = []
    for r in ranges:
        rule = r.rule
        if rule is not None:
            inner = rule
            rule = (lambda x, inner=inner: inner(-x)) if negate_rule else rule
        out.append(Saturated(-r.high, -r.low, f"{r.why} (at -x)", r.value, rule))
    return tuple(sorted(out, key=lambda r: r.low))


def sigmoid_saturation(scale: float) -> tuple[Saturated, ...]:
    """scale * sigmoid(x) for scale 1 or 3: 0 below the underflow edge, scale / 2 near 0, scale once e^-x is below
    half the ulp under it."""
    near_zero = 2.0**-25 if scale == 3 else 2.0**-24
    return (
        Saturated(-math.inf, UNDERFLOW - (1.1 if scale == 3 else 0.0), "below 2^-150", value=0.0),
        Saturated(-below(near_zero), below(near_zero), f"{scale / 2:g} + {scale / 4:g} x + ...", value=scale / 2),
        Saturated(17.5, math.inf, f"{scale:g} - {scale:g} e^-x with e^-x < 2^-25", value=scale),
    )


def _mp_softplus(x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """max(x, 0) + log1p(e^-|x|)."""
    return max(x, mpmath.mpf(0)), mpmath.log1p(mpmath.exp(-abs(x)))


def _mp_sigmoid(x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """1 - sigmoid(-x) for x >= 0, e^x / (1 + e^x) below."""
    if x >= 0:
        return mpmath.mpf(1), -1 / (1 + mpmath.exp(x))
    return mpmath.mpf(0), mpmath.exp(x) / (1 + mpmath.exp(x))


def _mp_negated(f: ExactFunction) -> ExactFunction:
    return lambda x: f(-x)


def _mp_tripled(f: ExactFunction) -> ExactFunction:
    def tripled(x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
        head, tail = f(x)
        return mpmath.fmul(3, head, exact=True), 3 * tail

    return tripled


SOFTPLUS = Exact("softplus(x)", reference.softplus, _mp_softplus, softplus_saturation(1))
SOFTPLUS_NEG = Exact(
    "softplus(-x)", lambda x: reference.softplus(-x), _mp_negated(_mp_softplus), mirrored(softplus_saturation(1))
)
SOFTPLUS_NEG_3 = Exact(
    "3 softplus(-x)",
    lambda x: 3.0 * reference.softplus(-x),
    _mp_tripled(_mp_negated(_mp_softplus)),
    mirrored(softplus_saturation(3)),
    (3.0, SOFTPLUS_NEG),
)
SIGMOID = Exact("sigmoid(x)", reference.sigmoid, _mp_sigmoid, sigmoid_saturation(1))
SIGMOID_NEG = Exact(
    "sigmoid(-x)", lambda x: reference.sigmoid(-x), _mp_negated(_mp_sigmoid), mirrored(sigmoid_saturation(1))
)
SIGMOID_NEG_3 = Exact(
    "3 sigmoid(-x)",
    lambda x: 3.0 * reference.sigmoid(-x),
    _mp_tripled(_mp_negated(_mp_sigmoid)),
    mirrored(sigmoid_saturation(3)),
    (3.0, SIGMOID_NEG),
)


def _clamped(value: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """min(value, 100): torch clamps each logarithm at -100."""
    return (mpmath.mpf(100), mpmath.mpf(0)) if value > 100 else (mpmath.mpf(0), value)


def _bce_one(p: F64) -> F64:
    with np.errstate(divide="ignore"):
        return -np.maximum(np.log(p), reference.LOG_CLAMP)


def _bce_zero(p: F64) -> F64:
    with np.errstate(divide="ignore"):
        return -np.maximum(np.log1p(-p), reference.LOG_CLAMP)


# -log p is above 100 for p < e^-100 = 3.72e-44 (26.5 subnormal spacings); -log1p(-p) = p + p^2/2 + ... rounds to p
# below 2^-24, where p^2 / 2 is under half an ulp of p.
BCE_ONE = Exact(
    "min(-log p, 100)",
    _bce_one,
    lambda p: _clamped(-mpmath.log(p) if p > 0 else mpmath.inf),
    (
        Saturated(-0.0, 26 * TINY, "p < e^-100: the clamp", value=100.0),
        Saturated(1.0, 1.0, "-log 1", value=-0.0),
    ),
)
BCE_ZERO = Exact(
    "min(-log(1 - p), 100)",
    _bce_zero,
    lambda p: _clamped(-mpmath.log1p(-p) if p < 1 else mpmath.inf),
    (
        Saturated(-0.0, below(2.0**-24), "p + p^2 / 2 + ... with p^2 / 2 under half an ulp of p", rule=_identity),
        Saturated(1.0, 1.0, "log(0) clamped at -100", value=100.0),
    ),
)

EXACTS = (SOFTPLUS, SOFTPLUS_NEG, SOFTPLUS_NEG_3, SIGMOID, SIGMOID_NEG, SIGMOID_NEG_3, BCE_ONE, BCE_ZERO)


@dataclass(frozen=True)
class Domain:
    """An interval of keys (floats.py): every float32 input a sweep takes."""

    name: str
    low: int
    high: int
    what: str

    @property
    def size(self) -> int:
        return self.high - self.low + 1


LOGITS = Domain("logit", 0, 2**32 - 1, "every float32 bit pattern (2^32: NaNs, infinities, zeros, subnormals)")
PROBABILITIES = Domain("probability", key_of(-0.0), key_of(1.0), "every float32 p in [0, 1], -0 included")


Impl = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Kernel:
    """One torch call over a chunk of inputs: its results, one per output name."""

    name: str
    domain: Domain
    loss: str | None  # the loss whose --impl replaces torch's here; None for the building blocks
    outputs: tuple[str, ...]
    # Called with the implementation of ``loss`` (None for the building blocks, which call torch themselves).
    run: Callable[[F32, Impl | None, str], tuple[F32, ...]]
    repro: str  # a Python snippet printing the outputs at one input, ``{x}`` (a float32 as float.fromhex)


def _as_leaf(x: F32, device: str) -> torch.Tensor:
    return torch.from_numpy(x).to(device).requires_grad_()


def _results(*tensors: torch.Tensor) -> tuple[F32, ...]:
    return tuple(t.detach().cpu().numpy().astype(np.float32, copy=False) for t in tensors)


def _bce_with_logits(target: float, pos_weight: float | None) -> Callable[[F32, Impl | None, str], tuple[F32, ...]]:
    def run(x: F32, impl: Impl | None, device: str) -> tuple[F32, ...]:
        assert impl is not None
        leaf = _as_leaf(x, device)
        kwargs: dict[str, Any] = {"reduction": "none"}
        if pos_weight is not None:
            kwargs["pos_weight"] = torch.tensor([pos_weight], dtype=torch.float32, device=device)
        loss = impl(leaf, torch.full_like(leaf, target).detach(), **kwargs)
        loss.backward(torch.ones_like(loss))  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
        assert leaf.grad is not None
        return _results(loss, leaf.grad)

    return run


def _cross_entropy(x: F32, impl: Impl | None, device: str) -> tuple[F32, ...]:
    # Laid out (N=1, C=2, d=n): the K-dimensional form vectorises along d; (n, 2) gives the same bits (the slice
    # test checks it) at a quarter of the speed.
    logits = torch.empty((1, 2, x.size))
    logits[0, 0] = 0.0
    logits[0, 1] = torch.from_numpy(x)
    logits = logits.to(device).requires_grad_()
    target = torch.zeros((1, x.size), dtype=torch.long, device=device)
    assert impl is not None
    loss = impl(logits, target, reduction="none")
    loss.backward(torch.ones_like(loss))  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
    assert logits.grad is not None
    return _results(loss[0], logits.grad[0, 1], logits.grad[0, 0])


def _log_sigmoid(x: F32, impl: Impl | None, device: str) -> tuple[F32, ...]:
    with torch.no_grad():
        return _results(torch.nn.functional.logsigmoid(torch.from_numpy(x).to(device)))


def _sigmoid(x: F32, impl: Impl | None, device: str) -> tuple[F32, ...]:
    with torch.no_grad():
        return _results(torch.sigmoid(torch.from_numpy(x).to(device)))


def _bce(target: float) -> Callable[[F32, Impl | None, str], tuple[F32, ...]]:
    def run(p: F32, impl: Impl | None, device: str) -> tuple[F32, ...]:
        assert impl is not None
        with torch.no_grad():
            probabilities = torch.from_numpy(p).to(device)
            return _results(impl(probabilities, torch.full_like(probabilities, target), reduction="none"))

    return run


_X = "x = torch.full((64,), float.fromhex('{x}'), requires_grad=True)\n"
_BACKWARD = "loss.backward(torch.ones_like(loss)); print(loss[0].item(), x.grad[0].item())"


def _bce_with_logits_kernel(target: float, pos_weight: float | None) -> Kernel:
    pw = "" if pos_weight is None else f", pos_weight=torch.tensor([{pos_weight}])"
    label = f"y={target:g}" + ("" if pos_weight is None else f",pos_weight={pos_weight:g}")
    return Kernel(
        f"bce_with_logits[{label}]",
        LOGITS,
        "binary_cross_entropy_with_logits",
        ("value", "gradient"),
        _bce_with_logits(target, pos_weight),
        "import torch\n"
        + _X
        + f"loss = torch.nn.functional.binary_cross_entropy_with_logits(x, torch.full_like(x, {target}), "
        + f"reduction='none'{pw})\n"
        + _BACKWARD,
    )


KERNELS = (
    _bce_with_logits_kernel(0.0, None),
    _bce_with_logits_kernel(1.0, None),
    _bce_with_logits_kernel(0.0, 3.0),
    _bce_with_logits_kernel(1.0, 3.0),
    Kernel(
        "cross_entropy[logits=(0,x),class=0]",
        LOGITS,
        "cross_entropy",
        ("value", "gradient_x", "gradient_0"),
        _cross_entropy,
        "import torch\nx = float.fromhex('{x}')\n"
        "logits = torch.tensor([[[0.0] * 64, [x] * 64]], requires_grad=True)\n"
        "loss = torch.nn.functional.cross_entropy(logits, torch.zeros((1, 64), dtype=torch.long), reduction='none')\n"
        "loss.backward(torch.ones_like(loss)); print(loss[0, 0].item(), logits.grad[0, :, 0].tolist())",
    ),
    Kernel(
        "log_sigmoid",
        LOGITS,
        None,
        ("value",),
        _log_sigmoid,
        "import torch\nprint(torch.nn.functional.logsigmoid(torch.full((64,), float.fromhex('{x}')))[0].item())",
    ),
    Kernel(
        "sigmoid",
        LOGITS,
        None,
        ("value",),
        _sigmoid,
        "import torch\nprint(torch.sigmoid(torch.full((64,), float.fromhex('{x}')))[0].item())",
    ),
    Kernel(
        "bce[y=1]",
        PROBABILITIES,
        "binary_cross_entropy",
        ("value",),
        _bce(1.0),
        "import torch\np = torch.full((64,), float.fromhex('{x}'))\n"
        "print(torch.nn.functional.binary_cross_entropy(p, torch.ones_like(p), reduction='none')[0].item())",
    ),
    Kernel(
        "bce[y=0]",
        PROBABILITIES,
        "binary_cross_entropy",
        ("value",),
        _bce(0.0),
        "import torch\np = torch.full((64,), float.fromhex('{x}'))\n"
        "print(torch.nn.functional.binary_cross_entropy(p, torch.zeros_like(p), reduction='none')[0].item())",
    ),
)
KERNELS_BY_NAME = {kernel.name: kernel for kernel in KERNELS}


# The tolerance model's bounds, per sweep: the registry's replays of torch's order, with reduction 'none' and one
# case per input (the cases along the last axis).
Bound = Callable[[F64], Tracked]


def _bce_with_logits_bound(target: float, pos_weight: float | None, gradient: bool) -> Bound:
    entry = registry.info("binary_cross_entropy_with_logits")
    replay = entry.gradient_replay if gradient else entry.forward_replay
    assert replay is not None

    def bound(x: F64) -> Tracked:
        y = np.full_like(x, target)
        kwargs: dict[str, Any] = {"reduction": "none"}
        if pos_weight is not None:
            kwargs["pos_weight"] = np.array([pos_weight])
        if gradient:
            return replay(FLOAT32, x, y, np.ones_like(x), **kwargs)
        return replay(FLOAT32, x, y, **kwargs)

    return bound


def _cross_entropy_bound(row: int | None) -> Bound:
    entry = registry.info("cross_entropy")

    def bound(x: F64) -> Tracked:
        logits, target = np.stack([np.zeros_like(x), x]), np.zeros(x.shape, dtype=np.int64)
        if row is None:
            assert entry.forward_replay is not None
            return entry.forward_replay(FLOAT32, logits, target, reduction="none")
        assert entry.gradient_replay is not None
        gradient = entry.gradient_replay(FLOAT32, logits, target, np.ones_like(x), reduction="none")
        return Tracked(
            gradient.value[row],
            gradient.error[row],
            gradient.unbounded_by[row],
            gradient.u,
            gradient.eta,
            gradient.largest,
            gradient.smallest_normal,
        )

    return bound


def _log_sigmoid_bound(x: F64) -> Tracked:
    # torch's log_sigmoid kernel: min(x, 0) - log1p(e^-|x|), the step the BCEWithLogits replay models the same way.
    t = Tracked.exact(x, FLOAT32)
    return t.minimum(0.0) - (-(t.abs())).exp().log1p()


def _sigmoid_bound(x: F64) -> Tracked:
    return Tracked.exact(x, FLOAT32).sigmoid()


def _bce_bound(target: float) -> Bound:
    replay = registry.info("binary_cross_entropy").forward_replay
    assert replay is not None
    return lambda p: replay(FLOAT32, p, np.full_like(p, target), reduction="none")


# Floors: each a lower bound on the bound the sweep's replay gives, read off the replay: the roundings it adds at
# the least (u |value| + eta per operation, TRANSCENDENTAL_ERROR u for exp, log and log1p, SIGMOID_ERROR u plus
# the smallest normal number for sigmoid), and errors an operation propagates at the least (a sum or difference
# carries each operand's error, a product by w carries w times it). u and eta are float32's (the model's are
# float32's plus float64's). The float64 arithmetic here errs by far less than the SAFETY margin.
U, ETA, SMALLEST_NORMAL = FLOAT32.unit_roundoff, FLOAT32.smallest_subnormal, FLOAT32.smallest_normal
SAFETY = 1.0 - 2.0**-20


def _last_rounding(r: F64) -> F64:
    """Every replay's result is one rounded operation: u |value| + eta."""
    return SAFETY * (U * np.abs(r) + ETA)


# Each floor reads what it needs off the reference r (sign applied) instead of evaluating it afresh: a float64
# rounding there moves the floor by far less than SAFETY, and a cancellation there only lowers it.
def _bce_with_logits_floor(target: float, w: float) -> Callable[[F64, F64], F64]:
    """log_sigmoid = min(x, 0) - log1p(e^-|x|) is rounded (u |log_sigmoid| + eta), scaled by the pos_weight factor w
    = (pw - 1) y + 1, and carried by (1 - y) x - w log_sigmoid, itself rounded: the cancellation of torch's order
    for y = 0 and x < 0 is within this much. |log_sigmoid(x)| = softplus(-x) is r - x for y = 0, r / w for y = 1."""
    if target == 0:
        return lambda x, r: SAFETY * (U * (w * np.abs(r - x) + np.abs(r)) + ETA)
    return lambda x, r: SAFETY * (U * 2 * np.abs(r) + ETA)


def _sigmoid_floor(w: float, shift: float, then: float = 1.0) -> Callable[[F64, F64], F64]:
    """w sigmoid(x) - shift (shift = pos_weight y), sigmoid rounded by SIGMOID_ERROR u plus the smallest normal;
    ``then``: one more rounding after (BCEWithLogits's gradient subtracts y), or none (0: sigmoid alone)."""
    return lambda x, r: (
        SAFETY * (w * (SIGMOID_ERROR * U * np.abs((r + shift) / w) + SMALLEST_NORMAL) + then * U * np.abs(r))
    )


def _cross_entropy_floor(x: F64, r: F64) -> F64:
    """log of the softmax's denominator s: each e^(x_j - m) rounded by TRANSCENDENTAL_ERROR u, so s by that much
    relative and log s by at least that much absolute; then the NLL's rounding."""
    return SAFETY * (TRANSCENDENTAL_ERROR * U + U * np.abs(r) + ETA)


def _cross_entropy_gradient_floor(of: float) -> Callable[[F64, F64], F64]:
    """p_j = exp(logp_j), whose error is at least p_j times logp_j's (TRANSCENDENTAL_ERROR u, above) plus its own
    rounding (TRANSCENDENTAL_ERROR u p_j), times the upstream sum (-1), then subtracted and rounded. The gradient is
    p_1 = r at the logit x, p_0 - 1 = r at the logit 0 (so p_0 = 1 + r)."""
    return lambda x, r: (
        SAFETY * (2 * TRANSCENDENTAL_ERROR * U * np.abs(r + (1.0 if of < 0 else 0.0)) + U * np.abs(r) + ETA)
    )


def _log_sigmoid_floor(x: F64, r: F64) -> F64:
    """log1p(e^-|x|) = min(x, 0) - r rounded by TRANSCENDENTAL_ERROR u, carried by the difference, itself rounded."""
    return SAFETY * (TRANSCENDENTAL_ERROR * U * np.abs(np.minimum(x, 0.0) - r) + U * np.abs(r) + ETA)


@dataclass(frozen=True)
class Sweep:
    """One result of one kernel, compared at every input with ``sign`` times the correctly rounded ``exact``."""

    name: str
    kernel: Kernel
    output: str
    exact: Exact
    sign: float
    bound: Bound
    # A lower bound on the tolerance model's bound at x (float64), given the reference there (sign applied).
    floor: Callable[[F64, F64], F64] = field(default=lambda x, r: _last_rounding(r))
    # What accounts for a NaN or an infinity where the exact value is not that: a named divergence, or the reference's
    # stated convention.
    named: tuple[Named, ...] = ()

    @property
    def output_index(self) -> int:
        return self.kernel.outputs.index(self.output)

    @property
    def domain(self) -> Domain:
        return self.kernel.domain


@dataclass(frozen=True)
class Named:
    where: Callable[[F32], npt.NDArray[np.bool_]]
    claim: str
    source: str


_INFINITE_LOGITS = Named(
    np.isinf,
    "BCEWithLogits is NaN at x = -inf (any target) and at x = +inf with y = 1, where the loss has the limit 0 or inf",
    "named divergence: test_bce_with_logits_is_nan_at_infinite_logits_where_the_limit_is_0_or_inf",
)
_INFINITE_LOGIT_ROW = Named(
    np.isinf,
    "cross-entropy of a row holding +inf is NaN: no finite answer (log_softmax in reference/activations.py, as torch)",
    "the reference's convention",
)


def _bce_with_logits_sweeps(kernel: Kernel, target: float, pos_weight: float | None) -> list[Sweep]:
    if target == 0:
        value, gradient, gradient_sign = SOFTPLUS, SIGMOID, 1.0
    else:
        value = SOFTPLUS_NEG if pos_weight is None else SOFTPLUS_NEG_3
        gradient, gradient_sign = (SIGMOID_NEG if pos_weight is None else SIGMOID_NEG_3), -1.0
    w = 1.0 if pos_weight is None else (pos_weight - 1.0) * target + 1.0
    shift = target * (1.0 if pos_weight is None else pos_weight)
    return [
        Sweep(
            f"{kernel.name}.value",
            kernel,
            "value",
            value,
            1.0,
            _bce_with_logits_bound(target, pos_weight, False),
            _bce_with_logits_floor(target, w),
            (_INFINITE_LOGITS,),
        ),
        Sweep(
            f"{kernel.name}.gradient",
            kernel,
            "gradient",
            gradient,
            gradient_sign,
            _bce_with_logits_bound(target, pos_weight, True),
            _sigmoid_floor(w, shift),
        ),
    ]


def _sweeps() -> tuple[Sweep, ...]:
    k = KERNELS_BY_NAME
    sweeps: list[Sweep] = []
    for target, pos_weight in ((0.0, None), (1.0, None), (0.0, 3.0), (1.0, 3.0)):
        label = f"y={target:g}" + ("" if pos_weight is None else f",pos_weight={pos_weight:g}")
        sweeps += _bce_with_logits_sweeps(k[f"bce_with_logits[{label}]"], target, pos_weight)
    ce = k["cross_entropy[logits=(0,x),class=0]"]
    sweeps += [
        Sweep(
            f"{ce.name}.value",
            ce,
            "value",
            SOFTPLUS,
            1.0,
            _cross_entropy_bound(None),
            _cross_entropy_floor,
            (_INFINITE_LOGIT_ROW,),
        ),
        Sweep(
            f"{ce.name}.gradient_x",
            ce,
            "gradient_x",
            SIGMOID,
            1.0,
            _cross_entropy_bound(1),
            _cross_entropy_gradient_floor(1.0),
        ),
        Sweep(
            f"{ce.name}.gradient_0",
            ce,
            "gradient_0",
            SIGMOID,
            -1.0,
            _cross_entropy_bound(0),
            _cross_entropy_gradient_floor(-1.0),
        ),
        Sweep("log_sigmoid", k["log_sigmoid"], "value", SOFTPLUS_NEG, -1.0, _log_sigmoid_bound, _log_sigmoid_floor),
        Sweep("sigmoid", k["sigmoid"], "value", SIGMOID, 1.0, _sigmoid_bound, _sigmoid_floor(1.0, 0.0, then=0.0)),
        Sweep("bce[y=1].value", k["bce[y=1]"], "value", BCE_ONE, 1.0, _bce_bound(1.0)),
        Sweep("bce[y=0].value", k["bce[y=0]"], "value", BCE_ZERO, 1.0, _bce_bound(0.0)),
    ]
    return tuple(sweeps)


SWEEPS = _sweeps()
BY_NAME = {sweep.name: sweep for sweep in SWEEPS}


def select(names: list[str] | None) -> tuple[Sweep, ...]:
    """The sweeps named (each a sweep's name, or a kernel's name for all of its sweeps), or all of them."""
    if not names:
        return SWEEPS
    chosen = [s for s in SWEEPS if s.name in names or s.kernel.name in names]
    unknown = set(names) - {s.name for s in chosen} - {s.kernel.name for s in chosen}
    if unknown:
        raise ValueError(f"unknown sweeps {sorted(unknown)}; the sweeps are {[s.name for s in SWEEPS]}")
    return tuple(chosen)
