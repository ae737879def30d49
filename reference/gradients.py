"""Analytic gradients of the six losses with respect to their input, in float64.

Each ``*_grad`` function takes the loss's own arguments plus ``grad_output`` (the gradient
flowing into the loss's result: an array of the output's shape for reduction 'none', a scalar
otherwise) and returns d(sum(grad_output * loss)) / d(input), of the input's shape. It validates
its arguments by making the checks its forward makes first, in the same order and by the same code,
without computing the loss (the focal loss's by calling its forward), so it rejects exactly what the
loss rejects (tests/test_rejections.py holds it to that, message included).

The derivatives are those of the forward definitions in ``binary.py``, ``categorical.py``,
``kl_div.py`` and ``focal.py``, worked out by hand (KL's lives beside its loss, in ``kl_div.py``):

* BCE, l = -w [y max(log p, -100) + (1 - y) max(log(1 - p), -100)]: a clamped log term is
  constant in p, so it contributes 0; an unclamped one contributes -w y / p or w (1 - y) / (1 - p);
  with both unclamped, w (p - y) / (p (1 - p)).
* BCEWithLogits, l = w [pw y softplus(-x) + (1 - y) softplus(x)]:
  dl/dx = w [(1 - y) sigmoid(x) - pw y sigmoid(-x)] (softplus' = sigmoid).
* NLL, l_i = -w[y_i] x[i, y_i]: dl_i/dx[i, c] = -w[y_i] if c = y_i, else 0; 0 for ignored i.
* KL divergence, l = p (log p - log q) with input log q: dl/d(log q) = -p (or -e^(log p) with
  log_target), summed over any dimensions the input was broadcast along.
* Sigmoid focal loss, l = a_t m ce with m = q^gamma, q = 1 - p_t = y sigmoid(-x) + (1 - y) sigmoid(x),
  ce = BCE(x, y): dq/dx = (1 - 2y) s c (s = sigmoid(x), c = sigmoid(-x)), so
      dl/dx = a_t m [((1 - y) s - y c) + gamma (1 - 2y) (s c / q) ce],
  which keeps q^(gamma - 1) (infinite at q = 0 for gamma < 1) out of the computation.
* Cross-entropy, through d log_softmax(x)_j / dx_k = [j = k] - softmax(x)_k:
  index targets, l_i = (1 - eps) w_y (-logp_y) + (eps / C) sum_j w_j (-logp_j):
      dl_i/dx_k = (1 - eps) w_y (s_k - [k = y]) + (eps / C) (s_k sum_j w_j - w_k);
  probability targets, l_i = -sum_j w_j t'_j logp_j:
      dl_i/dx_k = s_k sum_j w_j t'_j - w_k t'_k.

'mean' divides by the same denominator as the forward (the element count, or the summed
weights of the non-ignored targets). The one cancellation a naive form would suffer,
softmax_y - 1 when the target's probability is near 1, is taken as minus the sum of the other
probabilities instead, there only: where softmax_y < 1/2 it is computed as it reads, since a sum of
thousands of small probabilities carries the normaliser's rounding (tens of units of roundoff at
2^15 classes) where softmax_y - 1 rounds once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from ._scaled import Scaled
from .activations import sigmoid, softmax
from .binary import LOG_CLAMP, _checked_binary_cross_entropy, _checked_binary_cross_entropy_with_logits
from .categorical import (
    _check_index_arguments,
    _checked_cross_entropy,
    _class_dim,
    _class_shape,
    _pick_targets,
    _Picked,
)
from .focal import alpha_weight, binary_cross_entropy_terms, miss_probability, sigmoid_focal_loss
from .kl_div import kl_div_grad as kl_div_grad  # written beside its loss; re-exported here with the others

F64 = NDArray[np.float64]


def _scale(per_element: F64, reduction: str, grad_output: ArrayLike, denominator: float | F64) -> F64:
    """Apply the chain rule through the reduction: times grad_output, divided by the mean's denominator, with no
    intermediate overflow or underflow (a tiny grad_output is not rounded to a subnormal and then magnified, nor a
    large product rounded to infinity before the division)."""
    scaled = Scaled.of(per_element) * Scaled.of(grad_output)
    if reduction == "mean":
        scaled = scaled / Scaled.of(denominator)
    return scaled.value()


def binary_cross_entropy_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    grad_output: ArrayLike = 1.0,
) -> F64:
    """d/dp of BCE: w [(1 - y) / (1 - p) - y / p], each term 0 where its log is clamped at -100."""
    # The loss's own checks (it is not computed: its derivative does not need its value).
    p, y, w = _checked_binary_cross_entropy(input, target, weight, reduction)
    w = np.broadcast_to(w, y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p_free, log_1mp_free = np.log(p) > LOG_CLAMP, np.log1p(-p) > LOG_CLAMP
        # With neither log clamped, (1 - y) / (1 - p) - y / p is taken over one denominator,
        # (p - y) / (p (1 - p)): the two terms nearly cancel when p is close to y.
        both_free = (p - y) / (p * (1.0 - p))
        one_free = np.where(log_p_free, -y / p, 0.0) + np.where(log_1mp_free, (1.0 - y) / (1.0 - p), 0.0)
        per_element = w * np.where(log_p_free & log_1mp_free, both_free, one_free)
    return _scale(per_element, reduction, grad_output, float(y.size))


def binary_cross_entropy_with_logits_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
    grad_output: ArrayLike = 1.0,
) -> F64:
    """d/dx of BCEWithLogits: w [(1 - y) sigmoid(x) - pw y sigmoid(-x)]."""
    # The loss's own checks (it is not computed: its derivative does not need its value).
    x, y, w, pw = _checked_binary_cross_entropy_with_logits(input, target, weight, reduction, pos_weight)
    per_element = np.broadcast_to(w * ((1.0 - y) * sigmoid(x) - pw * y * sigmoid(-x)), y.shape)
    return _scale(per_element, reduction, grad_output, float(y.size))


def _index_layout(
    x: NDArray[Any], target: NDArray[Any], weights: F64, ignore_index: int
) -> tuple[int, _Picked, NDArray[np.bool_]]:
    """The per-position target and its one-hot mask along the class dimension."""
    class_dim = _class_dim(x.ndim)
    t = target.reshape(()) if x.ndim == 1 else target
    picked = _pick_targets(t, ignore_index, weights)
    return class_dim, picked, _one_hot(picked, x.shape, class_dim)


def _one_hot(picked: _Picked, shape: tuple[int, ...], class_dim: int) -> NDArray[np.bool_]:
    """True at each position's target class (class 0 at ignored positions), broadcastable against the input."""
    n_classes = shape[class_dim]
    classes = np.arange(n_classes).reshape(_class_shape(len(shape), n_classes))
    return np.asarray(classes == np.expand_dims(picked.safe_target, class_dim))


def _per_position(values: ArrayLike, class_dim: int) -> F64:
    """A per-position quantity (or a scalar), broadcastable against the input."""
    a = np.asarray(values, dtype=np.float64)
    return np.expand_dims(a, class_dim) if a.ndim else a


def _per_unit_total_weight(picked: _Picked, reduction: str, class_dim: int) -> Scaled:
    """w[y_i] per position, over the mean's total weight sum_i w[y_i] for 'mean': a ratio that overflows float64
    where cancelling weights make the total tiny, so it stays scaled until grad_output has multiplied it."""
    class_weight = Scaled.of(_per_position(picked.class_weight, class_dim))
    if reduction != "mean":
        return class_weight
    return class_weight / Scaled.of(np.sum(picked.class_weight))


def _at_kept(picked: _Picked, grad_output: ArrayLike, class_dim: int, per_element: Scaled) -> F64:
    """grad_output times ``per_element`` at kept positions, exactly 0 at ignored ones."""
    go = Scaled.of(_per_position(np.where(picked.kept, np.asarray(grad_output, dtype=np.float64), 0.0), class_dim))
    kept = _per_position(picked.kept, class_dim).astype(bool)
    return np.asarray(np.where(kept, (go * per_element).value(), 0.0))


def nll_loss_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    grad_output: ArrayLike = 1.0,
) -> F64:
    """d/dx of NLL: -w[y_i] (scaled by the reduction) at [i, y_i], 0 elsewhere and at ignored positions."""
    # The loss's own checks, in its order (it is not computed: its derivative does not need its value): the
    # reduction, the target and weight (_check_index_arguments), then each target's class (_index_layout).
    v.check_reduction(reduction)
    x_in, t_in = v.as_array(input), v.as_array(target)
    weights = _check_index_arguments(x_in, t_in, weight, "nll_loss")
    class_dim, picked, one_hot = _index_layout(x_in, t_in, weights, ignore_index)
    slope = _per_unit_total_weight(picked, reduction, class_dim) * Scaled.of(-1.0)
    at_target = _at_kept(picked, grad_output, class_dim, slope)
    # Off the target class the derivative is exactly 0, also where the mean is undefined (a total weight of 0,
    # whose w[y] / W is NaN): each position's loss reads its input at the target alone.
    return np.asarray(np.where(np.broadcast_to(one_hot, x_in.shape), at_target, 0.0))


def cross_entropy_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_output: ArrayLike = 1.0,
) -> F64:
    """d/dx of cross-entropy with class indices or class probabilities (see the module docstring)."""
    # The loss's own checks (it is not computed: the derivative needs softmax, not the loss's value).
    call = _checked_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    x = call.x.astype(np.float64)
    class_dim = _class_dim(x.ndim)
    n_classes = x.shape[class_dim]
    w, eps, picked = call.weights, call.eps, call.picked
    w_along = w.reshape(_class_shape(x.ndim, n_classes))
    s = softmax(x, class_dim)
    with np.errstate(invalid="ignore", over="ignore"):
        if picked is None:
            t = call.target.astype(np.float64)
            if eps > 0.0:
                t = t * (1.0 - eps) + eps / n_classes
            wt = w_along * t
            per_element = s * np.sum(wt, axis=class_dim, keepdims=True) - wt
            positions = x.size // n_classes if n_classes else 0
            return _scale(per_element, reduction, _per_position(grad_output, class_dim), float(positions))

        one_hot = _one_hot(picked, x.shape, class_dim)
        # s_k - [k = y], with s_y - 1 taken as minus the other classes' probabilities where s_y >= 1/2 (no
        # cancellation), and as it reads below (one rounding, where the sum of the others would carry many).
        others = np.sum(np.where(one_hot, 0.0, s), axis=class_dim, keepdims=True)
        s_minus_one_hot = np.where(one_hot, np.where(s < 0.5, s - 1.0, -others), s)
        per_element = (
            _per_unit_total_weight(picked, reduction, class_dim) * Scaled.of(1.0 - eps) * Scaled.of(s_minus_one_hot)
        )
        if eps > 0.0:
            per_element = per_element + _smoothing_term(s, w, w_along, eps / n_classes, picked, reduction)
        return _at_kept(picked, grad_output, class_dim, per_element)


def _smoothing_term(s: F64, w: F64, w_along: F64, eps_per_class: float, picked: _Picked, reduction: str) -> Scaled:
    """(eps / C) (s_k sum_j w_j - w_k), over the total weight for 'mean'.

    The weights are first brought up by a power of two (exactly) to a largest magnitude in [0.5, 1) when they are
    smaller: subnormal weights would otherwise lose their digits in s_k sum_j w_j before a subnormal total
    weight magnified what was lost. They are never brought down, which could flush the smallest to 0.
    """
    largest = float(np.max(np.abs(w))) if w.size else 0.0
    shift = min(0, int(np.frexp(largest)[1]))
    raised, raised_along = np.ldexp(w, -shift), np.ldexp(w_along, -shift)
    term = Scaled.of(eps_per_class) * Scaled.of(s * np.sum(raised) - raised_along) * Scaled.power_of_two(shift)
    if reduction == "mean":
        term = term / Scaled.of(np.sum(picked.class_weight))
    return term


def sigmoid_focal_loss_grad(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    grad_output: ArrayLike = 1.0,
) -> F64:
    """d/dx of the sigmoid focal loss, for targets in [0, 1] (see the module docstring)."""
    sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    x, y = v.as_array(inputs).astype(np.float64), v.as_array(targets).astype(np.float64)
    s, c = sigmoid(x), sigmoid(-x)
    q = miss_probability(x, y)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        bce_slope = (1.0 - y) * s - y * c
        # s c / q: where q underflows to 0 (only at |x| beyond 745), q^gamma is 0 too and the product's limit is 0.
        ratio = np.where(q > 0, s * c / q, 0.0)
        focal_slope = 0.0 if gamma == 0 else gamma * (1.0 - 2.0 * y) * ratio * binary_cross_entropy_terms(x, y)
        per_element = alpha_weight(y, alpha) * (np.power(q, gamma) * (bce_slope + focal_slope))
    return _scale(np.asarray(per_element, dtype=np.float64), reduction, grad_output, float(y.size))
