"""Negative log-likelihood and cross-entropy over C classes.

Layouts follow torch: the class dimension is 1 for a batch (N, C, d1, ..., dk) and 0 for an
unbatched input (C,). Index targets drop the class dimension; probability targets keep it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from ._fast import gather_along
from ._reduction import reduce
from .activations import log_softmax, log_softmax_at

F64 = NDArray[np.float64]
Int = NDArray[np.int64]


def _class_dim(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def _class_weights(weight: ArrayLike | None, n_classes: int, prefix: str = "", any_rank: bool = False) -> F64:
    """The per-class weights as a flat float64 vector.

    torch wants a 1-D weight of C entries, except on its K-dimensional index path, which
    checks only the number of entries (measured on 2.13: a (1, C) weight is accepted there).
    """
    if weight is None:
        return np.ones(n_classes)
    w = v.as_array(weight)
    if (w.ndim != 1 and not any_rank) or w.size != n_classes:
        raise RuntimeError(
            f"{prefix}weight tensor should be defined either for all {n_classes} classes or no classes "
            f"but got weight tensor of shape: {list(w.shape)}"
        )
    return w.astype(np.float64).reshape(n_classes)


def _check_index_target_shape(input: NDArray[Any], target: NDArray[Any]) -> None:
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if input.ndim == 1:
        if target.ndim > 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        if target.ndim == 1 and target.shape[0] != 1:
            raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: {target.shape[0]}")
        return
    if target.ndim == 0 or input.shape[0] != target.shape[0]:
        batch = target.shape[0] if target.ndim else "none"
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size ({batch}).")
    if input.ndim == 2 and target.ndim != 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    expected = (input.shape[0], *input.shape[2:])
    if target.shape != expected:
        raise RuntimeError(f"Expected target size {list(expected)}, got {list(target.shape)}")


class _Picked(NamedTuple):
    """Per-position view of an index target against the class dimension."""

    kept: NDArray[np.bool_]  # positions whose target is not ignore_index
    safe_target: Int  # the target, with ignored positions pointed at class 0 so indexing works
    class_weight: F64  # w[y] at kept positions, 0 at ignored ones


def _pick_targets(target: NDArray[Any], ignore_index: int, weights: F64) -> _Picked:
    t = np.asarray(target, dtype=np.int64)
    n_classes = weights.size
    if t.size and 0 <= t.min() and t.max() < n_classes and not 0 <= ignore_index < n_classes:
        # The common case, in two reductions: every target is a class, and none is ignore_index.
        return _Picked(np.ones(t.shape, dtype=bool), t, weights[t])
    kept = t != ignore_index
    out_of_range = kept & ((t < 0) | (t >= n_classes))
    if np.any(out_of_range):
        raise IndexError(f"Target {t[out_of_range].flat[0]} is out of bounds.")
    safe = np.where(kept, t, 0)
    class_weight = np.where(kept, weights[safe] if n_classes else 0.0, 0.0)
    return _Picked(kept, safe, class_weight)


def _select_class(values: F64, safe_target: Int, class_dim: int) -> F64:
    """values[..., y, ...] along the class dimension, for every position (NaN, never used, when there are no
    classes: then every position is ignored, or _pick_targets has raised)."""
    if values.shape[class_dim] == 0:
        return np.full(safe_target.shape, np.nan)
    return gather_along(values, safe_target, class_dim)


def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> F64:
    """Negative log-likelihood of class-index targets.

    l_i = -w[y_i] * x[i, y_i], and exactly 0 where y_i == ignore_index.
    'mean' = sum_i l_i / sum_{i not ignored} w[y_i]: NaN when every target is ignored, the
    batch is empty, or the selected weights sum to 0. K-dimensional inputs pool every position
    into one mean. ``ignore_index`` may be any integer, in or out of [0, C). The input is not
    checked to hold log-probabilities.
    """
    v.check_reduction(reduction)
    x_in, t_in = v.as_array(input), v.as_array(target)
    weights = _check_index_arguments(x_in, t_in, weight, "nll_loss")
    # No copy when the input is float64 already: nothing below writes to it.
    return _nll_of_log_probabilities(np.asarray(x_in, dtype=np.float64), t_in, weights, ignore_index, reduction)


def _check_index_arguments(x_in: NDArray[Any], t_in: NDArray[Any], weight: ArrayLike | None, op: str) -> F64:
    """The checks torch makes on an index target and its class weights; returns the weights."""
    _check_index_target_shape(x_in, t_in)
    v.check_index_target_dtype(t_in)
    if x_in.ndim > 2 and x_in.size and t_in.dtype == np.uint8:
        # Measured on torch 2.13: the K-dimensional kernels accept only int64 targets.
        raise RuntimeError("K-dimensional inputs need int64 targets; a uint8 target is accepted only up to (N, C)")
    v.check_floating("input", x_in, op)
    weights = _class_weights(weight, x_in.shape[_class_dim(x_in.ndim)], any_rank=x_in.ndim > 2)
    if weight is not None:
        v.check_same_dtype("weight", v.as_array(weight), x_in)
    return weights


def _nll_of_log_probabilities(logp: F64, target: NDArray[Any], weights: F64, ignore_index: int, reduction: str) -> F64:
    picked = _pick_targets(_index_target(logp.ndim, target), ignore_index, weights)
    return _nll_of_picked(_select_class(logp, picked.safe_target, _class_dim(logp.ndim)), picked, reduction)


def _index_target(ndim: int, target: NDArray[Any]) -> NDArray[Any]:
    # An unbatched target of shape (1,) is the same as one of shape (): the output is a scalar.
    return target.reshape(()) if ndim == 1 else target


def _nll_of_picked(log_likelihood: F64, picked: _Picked, reduction: str) -> F64:
    """NLL from log p at each position's target class."""
    losses = np.where(picked.kept, -picked.class_weight * log_likelihood, 0.0)
    return reduce(losses, reduction, picked.class_weight)


def _effective_label_smoothing(label_smoothing: float) -> float:
    if label_smoothing > 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    # torch silently treats a negative or NaN smoothing as no smoothing.
    return float(label_smoothing) if label_smoothing > 0.0 else 0.0


class _CrossEntropyCall(NamedTuple):
    """A cross-entropy call whose arguments passed every check torch makes: what the loss and its gradient
    compute from."""

    x: NDArray[Any]  # the input, as given
    target: NDArray[Any]  # probability targets, as given; or the index targets (an unbatched (1,) target as ())
    weights: F64  # the C class weights, ones when none is given
    eps: float  # the label smoothing in effect
    picked: _Picked | None  # index targets: each position's target and weight; None for probability targets


def _checked_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> _CrossEntropyCall:
    """Every check of a cross-entropy call, in the order they are made: what torch rejects, raised as torch
    raises it (the loss and its gradient both start here, so they reject alike)."""
    v.check_reduction(reduction)
    x_in, t_in = v.as_array(input), v.as_array(target)
    if x_in.shape == t_in.shape:
        return _checked_probabilities(x_in, t_in, weight, ignore_index, label_smoothing)
    eps = _effective_label_smoothing(label_smoothing)
    weights = _check_index_arguments(x_in, t_in, weight, "cross_entropy")
    # A target of shape (1,) for an unbatched input is documented and well defined, but torch 2.13 raises in
    # the smoothed forward: see the named divergence in tests/test_cross_entropy.py.
    t = _index_target(x_in.ndim, t_in)
    picked = _pick_targets(t, ignore_index, weights)
    n_classes = x_in.shape[_class_dim(x_in.ndim)]
    if eps > 0.0 and weight is not None and v.as_array(weight).shape[0] != n_classes:
        # The smoothing term views the weight as C entries along the class dimension, taking C from its first size.
        raise RuntimeError(
            f"label smoothing needs a class weight whose first size is C = {n_classes}, "
            f"got shape {list(v.as_array(weight).shape)}"
        )
    return _CrossEntropyCall(x_in, t, weights, eps, picked)


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> F64:
    """Cross-entropy of logits ``input`` against class indices or class probabilities.

    A target of the input's shape holds probabilities (it must be floating); any other
    target holds class indices. With logp = log_softmax(x) over the class dimension and
    smoothing eps (eps > 1 rejected, eps < 0 or NaN taken as 0):

    Index targets:  L = (1 - eps) * NLL(logp, y, w) + (eps / C) * S, where
        S_i = -sum_c w_c logp[i, c] (0 where y_i is ignored), reduced like NLL: 'mean'
        divides S by the same sum of w[y_i] over non-ignored i.
    Probability targets:  t' = (1 - eps) t + eps / C,  l_n = -sum_c w_c t'_nc logp_nc;
        'mean' divides by the number of positions N * d1 * ... * dk, not by weights.
        Targets are not validated; ignore_index >= 0 is rejected, negative ones are unused.
    """
    call = _checked_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    x_in, weights, eps, picked = call.x, call.weights, call.eps, call.picked
    if picked is None:
        return _cross_entropy_of_probabilities(x_in, call.target, weights, eps, reduction)
    class_dim = _class_dim(x_in.ndim)
    if eps == 0.0:
        # Only log p at each target is needed: log_softmax_at skips the rest of the matrix (the same bits).
        index = np.expand_dims(picked.safe_target, class_dim)
        return _nll_of_picked(np.squeeze(log_softmax_at(x_in, class_dim, index), class_dim), picked, reduction)
    logp = log_softmax(x_in, class_dim)
    nll = _nll_of_picked(_select_class(logp, picked.safe_target, class_dim), picked, reduction)
    n_classes = x_in.shape[class_dim]
    with np.errstate(invalid="ignore"):  # -inf logp x 0 weight is NaN, in torch as here
        smooth = -np.sum(logp * weights.reshape(_class_shape(x_in.ndim, n_classes)), axis=class_dim)
    smooth = np.where(picked.kept, smooth, 0.0)
    smooth_reduced = reduce(smooth, reduction, picked.class_weight)
    # eps = 1 meets an infinite NLL (a mean over a zero total weight): NaN. With no classes (every target
    # ignored), eps / C is inf and meets a smoothing term of 0: NaN, as in torch.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((1.0 - eps) * nll + np.divide(eps, n_classes) * smooth_reduced)


def _class_shape(ndim: int, n_classes: int) -> tuple[int, ...]:
    """The shape that broadcasts a per-class vector along the class dimension."""
    shape = [1] * ndim
    shape[_class_dim(ndim)] = n_classes
    return tuple(shape)


def _checked_probabilities(
    x_in: NDArray[Any], t_in: NDArray[Any], weight: ArrayLike | None, ignore_index: int, label_smoothing: float
) -> _CrossEntropyCall:
    if not np.issubdtype(t_in.dtype, np.floating):
        raise RuntimeError(f"Expected floating point type for target with class probabilities, got {t_in.dtype}")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    if x_in.ndim == 0:
        raise IndexError("Dimension specified as 1 but tensor has no dimensions")
    v.check_floating("input", x_in, "cross_entropy")
    n_classes = x_in.shape[_class_dim(x_in.ndim)]
    weights = _class_weights(weight, n_classes, prefix="cross_entropy: ")
    return _CrossEntropyCall(x_in, t_in, weights, _effective_label_smoothing(label_smoothing), None)


def _cross_entropy_of_probabilities(
    x_in: NDArray[Any], t_in: NDArray[Any], weights: F64, eps: float, reduction: str
) -> F64:
    class_dim = _class_dim(x_in.ndim)
    n_classes = x_in.shape[class_dim]
    t = t_in.astype(np.float64)
    if eps > 0.0:
        t = t * (1.0 - eps) + eps / n_classes
    logp = log_softmax(x_in, class_dim)
    # In torch's order, (logp * t) * w: the tolerance model counts the reference's own rounding on that
    # order (which matters once a tiny probability makes a product subnormal).
    with np.errstate(invalid="ignore"):  # 0 x -inf is NaN, in torch as here
        losses = -np.sum((logp * t) * weights.reshape(_class_shape(x_in.ndim, n_classes)), axis=class_dim)
    return reduce(losses, reduction)
