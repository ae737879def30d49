"""JAX: torch's five losses written with jax.numpy and jax.nn, float64 enabled, behind torch's functional signature.

A port is what a user moving a model from torch to JAX writes: torch's documented semantics composed from JAX's
primitives. Here each loss is composed from ``jax.nn.log_softmax``, ``jax.nn.softplus``, ``jnp.log``,
``jnp.log1p``, ``jax.scipy.special.xlogy`` and JAX's reductions:

* BCE: ``-w [y max(log p, -100) + (1 - y) max(log1p(-p), -100)]``;
* BCEWithLogits: ``w [(1 - y) softplus(x) + pw y softplus(-x)]``;
* NLL: ``-w[t] x[t]`` with ignore_index, 'mean' over the summed weights of the kept targets;
* cross-entropy: log_softmax, then NLL for class indices, with torch's label smoothing
  (``(1 - eps) nll + eps / C * smooth``, where ``smooth = -sum_c w_c logp_c`` over kept targets, 'mean' over
  the same summed weights), or ``-sum_c w_c t'_c logp_c`` for probability targets (``t' = (1 - eps) t + eps / C``,
  'mean' over the number of rows);
* KL divergence: ``xlogy(t, t) - t x`` (``exp(t) (t - x)`` with log_target), 'batchmean' over the first dimension.

Optax's losses (``sigmoid_binary_cross_entropy``, ``softmax_cross_entropy_with_integer_labels``) are not used:
they take no class weights, pos_weight, ignore_index or label smoothing, which a port must add around them anyway.
The port does not validate its arguments, as JAX code usually does not: what torch rejects, it computes or fails
on otherwise, which the rejection properties report.

Each loss runs as one XLA computation (``jax.jit``), as JAX code usually runs: compiled once per input shape and
dtype and per value of the non-array arguments (reduction, ignore_index, label_smoothing, log_target, which are
static), and kept; the cases of one drawn example share all of these, so an example compiles at most once. Run op by
op instead, each of a loss's twenty-odd primitives compiled once per new shape and every call paid JAX's dispatch
per primitive: a gradient property (cross-entropy, index targets, float32, ci depth) took 81 s that way and 32 s
jitted, both with empty caches. The gradient is ``jax.vjp`` of the jitted function, whose forward and backward each
run as one compiled computation, carried into torch's autograd by ``torch.autograd.Function``. Every call checks
that its result is a JAX array (``AdapterError`` otherwise); ``COUNTS`` counts the calls and the XLA executables built.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import torch
from jax.scipy.special import xlogy

from . import AdapterError

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

COUNTS: Counter[str] = Counter()

UNSUPPORTED: dict[str, str] = {}

# ---------------------------------------------------------------------------------------------
# XLA on the CPU flushes subnormals to zero, results (FTZ) and inputs (DAZ) alike, in float32 and float64, and in
# bfloat16, which it computes in float32 (whose normal range is bfloat16's); float16, also computed in float32,
# keeps its subnormals, which are normal float32 numbers. JAX works as intended here (jax-ml/jax#16200,
# openxla/xla#22858); test_xla_flushes_subnormals_to_zero_on_the_cpu shows each dtype. A flushed result is an
# arithmetic the tolerance model derives bounds for (``FLUSHES_SUBNORMALS``: each operation's absolute error up to
# the smallest normal number instead of the subnormal spacing), wherever the subnormal arises inside the
# computation. A subnormal input read as zero is not a rounding but a different input: the named divergence below
# leaves out every case with a subnormal of such a dtype in an argument.
# ---------------------------------------------------------------------------------------------

FLUSHES_SUBNORMALS = ("bfloat16", "float32", "float64")

# The gradients are JAX's reverse mode through the forward formulas. For BCE and BCEWithLogits that is another order
# than torch's backward formulas: -(y / p) + (1 - y) / (1 - p), whose two quotients cancel where p is near a soft
# target (torch divides p - y by p (1 - p)), and softplus's derivative as e^(x - softplus(x)), whose relative error
# grows with |x| (torch takes a sigmoid). Their bounds replay that order ("autodiff", in each loss's entry);
# test_autodiff_gradients_are_bounded_for_their_own_order shows both. Log-softmax's vjp is torch's formula.
GRADIENT_ALGORITHMS = {"binary_cross_entropy": "autodiff", "binary_cross_entropy_with_logits": "autodiff"}


def _has_subnormal(values: Any, smallest_normal: float) -> bool:
    magnitudes = np.abs(np.asarray(values, dtype=np.float64))
    return bool(np.any((magnitudes > 0) & (magnitudes < smallest_normal)))


# XLA's float64 log1p on the CPU is up to 129 ulps off for arguments between about -0.53 and -0.28
# (jax-ml/jax#39707); BCE takes log1p(-p), so p in [0.28, 0.53] (float32 is unaffected). Its test is
# test_xla_float64_log1p_is_far_off_near_minus_0_414.
LOG1P_INACCURATE = (0.27, 0.54)


def known_divergence(case: Any, dtype: Any) -> str | None:
    if case.loss == "binary_cross_entropy" and dtype.name == "float64":
        low, high = LOG1P_INACCURATE
        if np.any((case.input >= low) & (case.input <= high)):
            return (
                "XLA's float64 log1p on the CPU is up to 129 ulps off for arguments in [-0.53, -0.28] "
                "(jax-ml/jax#39707) (test_xla_float64_log1p_is_far_off_near_minus_0_414)"
            )

    floats = [case.input, *(v for v in case.kwargs.values() if isinstance(v, np.ndarray | float))]
    if case.target.dtype.kind == "f":
        floats.append(case.target)
    if str(dtype) in FLUSHES_SUBNORMALS and any(_has_subnormal(values, dtype.smallest_normal) for values in floats):
        return (
            "XLA on the CPU reads subnormal inputs as zero (jax-ml/jax#16200) "
            "(test_xla_flushes_subnormals_to_zero_on_the_cpu)"
        )
    if str(dtype) in FLUSHES_SUBNORMALS and _smoothing_constant_is_subnormal(case, dtype):
        return (
            "XLA on the CPU reads subnormal inputs as zero (jax-ml/jax#16200): the port's constant "
            "label_smoothing / C is subnormal in the dtype (test_a_subnormal_smoothing_constant_is_read_as_zero)"
        )
    return None


def _smoothing_constant_is_subnormal(case: Any, dtype: Any) -> bool:
    """label_smoothing / C, which the port adds or multiplies as a constant of the input's dtype (JAX's weak typing
    of a Python float), is subnormal there: XLA reads it as 0 where torch computes with it."""
    smoothing = case.kwargs.get("label_smoothing", 0.0)
    if case.loss != "cross_entropy" or not smoothing > 0 or case.input.ndim == 0:
        return False
    classes = case.input.shape[0 if case.input.ndim == 1 else 1]
    if classes == 0:
        return False
    constant = abs(torch.tensor(smoothing / classes, dtype=torch.float64).to(dtype.torch).item())
    return 0 < constant < dtype.smallest_normal


known_gradient_divergence = known_divergence


# The defects (verification/rejections.py) that the port does not reject as torch does. The port validates nothing,
# as JAX code usually does not (a jitted function cannot raise on values): it computes what torch rejects for its
# values or dtypes, broadcasts shapes as NumPy does, and raises JAX's own exception classes where its operations
# fail. The rejection property leaves each defect out under its name; test_the_port_does_not_reject_as_torch_does
# asserts, defect by defect, that the port still handles one of its inputs otherwise than torch.
_COMPUTES = (
    "the port checks no values or dtypes and computes the call (a class index out of range gathers NaN) "
    "(test_the_port_does_not_reject_as_torch_does)"
)
_BROADCASTS = (
    "the port broadcasts shapes as NumPy does, computing shapes torch rejects and raising JAX's ValueError or "
    "TypeError for the rest (test_the_port_does_not_reject_as_torch_does)"
)
_OTHER_CLASS = "the port raises JAX's own exception class (test_the_port_does_not_reject_as_torch_does)"
REJECTION_DIVERGENCES = {
    "binary_cross_entropy: an input outside [0, 1] (NaN included)": _COMPUTES,
    "binary_cross_entropy: a target outside [0, 1] (NaN included)": _COMPUTES,
    "binary_cross_entropy: a target of another dtype than the input": _COMPUTES,
    "nll_loss: a class index outside [0, C) that is not ignore_index": _COMPUTES,
    "nll_loss: class weights of another dtype than the input": _COMPUTES,
    "nll_loss: an index target that is neither int64 nor uint8": _COMPUTES,
    "nll_loss: a uint8 target for a K-dimensional input": _COMPUTES,
    "cross_entropy: a class index outside [0, C) that is not ignore_index": _COMPUTES,
    "binary_cross_entropy: a target shape that differs from the input's": _BROADCASTS,
    "binary_cross_entropy: a weight that does not broadcast to the target": _BROADCASTS,
    "binary_cross_entropy: a weight that would enlarge the output": _BROADCASTS,
    "binary_cross_entropy_with_logits: a target shape that differs from the input's": _BROADCASTS,
    "binary_cross_entropy_with_logits: a weight that does not broadcast to the target": _BROADCASTS,
    "binary_cross_entropy_with_logits: a weight that would enlarge the output": _BROADCASTS,
    "binary_cross_entropy_with_logits: a pos_weight that does not broadcast to the target": _BROADCASTS,
    "binary_cross_entropy_with_logits: a pos_weight that would enlarge the output": _BROADCASTS,
    "nll_loss: a target batch size that differs from the input's": _BROADCASTS,
    "nll_loss: class weights of the wrong size or rank": _BROADCASTS,
    "nll_loss: a K-dimensional target whose extra sizes differ from the input's": _BROADCASTS,
    "cross_entropy: a target batch size that differs from the input's": _BROADCASTS,
    "cross_entropy: class weights of the wrong size or rank": _BROADCASTS,
    "nll_loss: a 0-dimensional input": _OTHER_CLASS,
    "nll_loss: a 2-dimensional target for an (N, C) input": _OTHER_CLASS,
    "cross_entropy: a 0-dimensional input": _OTHER_CLASS,
    "cross_entropy: class weights of another dtype than the input": _COMPUTES,
    "cross_entropy: an index target that is neither int64 nor uint8": _COMPUTES,
    "cross_entropy: a 2-dimensional target for an (N, C) input": _OTHER_CLASS,
    "cross_entropy: a K-dimensional target whose extra sizes differ from the input's": _BROADCASTS,
    "cross_entropy: a uint8 target for a K-dimensional input": _COMPUTES,
    "cross_entropy: label_smoothing above 1": _COMPUTES,
    "cross_entropy: probability targets with an ignore_index >= 0": _COMPUTES,
    "cross_entropy: an integer target of the input's shape (read as probabilities)": _BROADCASTS,
    "cross_entropy: label smoothing with a K-dimensional input and a (1, C) weight": _COMPUTES,
    "cross_entropy: probability targets with class weights of the wrong size": _BROADCASTS,
    "kl_div: an integral input": _COMPUTES,
    "kl_div: an input and a target whose shapes do not broadcast": _OTHER_CLASS,
}


# --- between torch and JAX -----------------------------------------------------------------------------------


def _to_jax(tensor: torch.Tensor) -> jax.Array:
    # A copy (the tensor's memory stays torch's) put on the device as it is: jnp.asarray would compile a
    # computation per new shape to do the same.
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16: the same bits, as ml_dtypes' bfloat16
        return jax.device_put(tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy())
    return jax.device_put(tensor.numpy().copy())


def _to_torch(array: jax.Array) -> torch.Tensor:
    values = np.asarray(array)
    if values.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(values.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(values.copy())


def _over_count(total: jax.Array, count: int) -> jax.Array:
    """``total / count``, divided in float32 at least (as jnp.mean does, and torch's kernels): a Python int is
    a constant of the total's dtype under JAX's weak typing, and a count above 65504 is infinite in float16."""
    wide = jnp.promote_types(total.dtype, jnp.float32)
    return (total.astype(wide) / count).astype(total.dtype)


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.mean(loss)
    raise ValueError(f"{reduction} is not a valid value for reduction")


# --- the losses, in JAX ---------------------------------------------------------------------------------------


def bce(p: jax.Array, y: jax.Array, weight: jax.Array | None = None, reduction: str = "mean") -> jax.Array:
    loss = -(y * jnp.maximum(jnp.log(p), -100) + (1 - y) * jnp.maximum(jnp.log1p(-p), -100))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def bce_with_logits(
    x: jax.Array,
    y: jax.Array,
    weight: jax.Array | None = None,
    reduction: str = "mean",
    pos_weight: jax.Array | None = None,
) -> jax.Array:
    positive = jax.nn.softplus(-x) * y
    if pos_weight is not None:
        positive = positive * pos_weight
    loss = (1 - y) * jax.nn.softplus(x) + positive
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _class_dim(x: jax.Array) -> int:
    return 0 if x.ndim == 1 else 1


def _unbatched(x: jax.Array, target: jax.Array) -> jax.Array:
    """torch takes an unbatched input (C,) with a class-index target of shape (1,) as with a target of shape ()."""
    if x.ndim == 1 and target.shape == (1,) and not jnp.issubdtype(target.dtype, jnp.floating):
        return target.reshape(())
    return target


def _picked(logp: jax.Array, target: jax.Array, weight: jax.Array | None, ignore_index: int) -> tuple[Any, Any]:
    """Each position's -w[t] logp[t] (0 where t is ignore_index) and its weight w[t] (0 there too)."""
    dim = _class_dim(logp)
    classes = logp.shape[dim]
    t = target.astype(jnp.int64)
    kept = t != ignore_index
    safe = jnp.where(kept, t, 0)
    picked = jnp.squeeze(jnp.take_along_axis(logp, jnp.expand_dims(safe, dim), axis=dim), dim)
    # torch takes class weights of any shape with C elements (the NLL parity variant "all arguments" draws (1, C))
    w = jnp.ones(classes, logp.dtype) if weight is None else weight.reshape(-1)
    weights = jnp.where(kept, w[safe], jnp.zeros((), logp.dtype))
    return jnp.where(kept, -weights * picked, jnp.zeros((), logp.dtype)), weights


def nll(
    logp: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> jax.Array:
    losses, weights = _picked(logp, _unbatched(logp, target), weight, ignore_index)
    if reduction == "mean":
        return jnp.sum(losses) / jnp.sum(weights)
    return _reduce(losses, reduction)


def _class_weights_along(weight: jax.Array, x: jax.Array) -> jax.Array:
    shape = [1] * x.ndim
    shape[_class_dim(x)] = weight.size
    return weight.reshape(shape)


def cross_entropy_(
    x: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> jax.Array:
    dim = _class_dim(x)
    classes = x.shape[dim]
    logp = jax.nn.log_softmax(x, axis=dim)
    target = _unbatched(x, target)
    w = None if weight is None else _class_weights_along(weight, x)
    if jnp.issubdtype(target.dtype, jnp.floating):  # probabilities over the classes
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        terms = logp * target if w is None else logp * target * w
        losses = -jnp.sum(terms, axis=dim)
        if reduction == "mean":
            return _over_count(jnp.sum(losses), x.size // classes) if x.size else jnp.sum(losses) * jnp.nan
        return _reduce(losses, reduction)
    losses, weights = _picked(logp, target, weight, ignore_index)
    value = jnp.sum(losses) / jnp.sum(weights) if reduction == "mean" else _reduce(losses, reduction)
    if not label_smoothing > 0:  # torch smooths only for a positive label_smoothing (not for NaN)
        return value
    smooth = -jnp.sum(logp if w is None else logp * w, axis=dim)
    smooth = jnp.where(target.astype(jnp.int64) != ignore_index, smooth, jnp.zeros((), x.dtype))
    if reduction == "mean":
        smooth = jnp.sum(smooth) / jnp.sum(weights)
    else:
        smooth = _reduce(smooth, reduction)
    return (1 - label_smoothing) * value + smooth * (label_smoothing / classes)


def kl(x: jax.Array, t: jax.Array, reduction: str = "mean", log_target: bool = False) -> jax.Array:
    loss = jnp.exp(t) * (t - x) if log_target else xlogy(t, t) - t * x
    if reduction == "batchmean":
        total = jnp.sum(loss)
        return _over_count(total, x.shape[0]) if x.ndim else total
    return _reduce(loss, reduction)


# --- torch's signature ----------------------------------------------------------------------------------------


def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


class _ThroughJax(torch.autograd.Function):
    """The loss in JAX, its gradient with respect to the input from jax.vjp."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, function: Callable[[jax.Array], jax.Array]) -> Any:
        value, ctx.vjp = jax.vjp(function, _to_jax(input))
        ctx.device = input.device
        return _checked(value).to(input.device)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        (grad_input,) = ctx.vjp(_to_jax(grad_output))
        return _checked(grad_input).to(ctx.device), None


def _checked(value: Any) -> torch.Tensor:
    if not isinstance(value, jax.Array):
        raise AdapterError(f"the JAX port returned {type(value).__name__}, not a JAX array")
    COUNTS["jax results"] += 1
    return _to_torch(value)


# The arguments that steer the port's Python (a branch, a shape, a constant): static under jax.jit.
STATIC_ARGUMENTS = ("reduction", "ignore_index", "label_smoothing", "log_target")


def _count_executable(event: str, seconds: float, **_: Any) -> None:
    """Each XLA executable JAX builds in this process (compiled, or loaded from the persistent cache): the port's
    forward and backward computations, one of each per new shape and static arguments."""
    if event == BACKEND_COMPILE_EVENT:
        COUNTS["xla executables"] += 1
        COUNTS["xla seconds"] += seconds


BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
jax.monitoring.register_event_duration_secs_listener(_count_executable)


def _port(loss: str, function: Callable[..., jax.Array], tensor_kwargs: tuple[str, ...]) -> Callable[..., torch.Tensor]:
    jitted = jax.jit(function, static_argnames=[name for name in STATIC_ARGUMENTS if name in _parameters(function)])

    def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        converted = {k: _to_jax(v) if k in tensor_kwargs and v is not None else v for k, v in kwargs.items()}
        t = _to_jax(target)

        def of_input(x: jax.Array) -> jax.Array:
            return jitted(x, t, **converted)

        if input.requires_grad:
            result: torch.Tensor = _ThroughJax.apply(input, of_input)
            return result
        return _checked(of_input(_to_jax(input))).to(input.device)

    call.__name__ = call.__qualname__ = loss
    call.__doc__ = f"torch.nn.functional.{loss}'s semantics in jax.numpy (adapters/jax_port.py)."
    return call


binary_cross_entropy = _port("binary_cross_entropy", bce, ("weight",))
binary_cross_entropy_with_logits = _port("binary_cross_entropy_with_logits", bce_with_logits, ("weight", "pos_weight"))
nll_loss = _port("nll_loss", nll, ("weight",))
cross_entropy = _port("cross_entropy", cross_entropy_, ("weight",))
kl_div = _port("kl_div", kl, ())

LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy", "kl_div")

# Sums are bounded for any order in the storage dtype (the tolerance model's documented looser model): XLA's
# reductions have their own order and accumulator, not torch's eager kernels' that
# verification/tolerance/summation.py bounds.
SUMS_IN_ANY_ORDER = True


def versions() -> dict[str, str]:
    return {"jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else ""}
