"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017), with the semantics of
``torchvision.ops.sigmoid_focal_loss``.

    FL(x, y) = alpha_t * (1 - p_t)^gamma * BCE(x, y)

with p = sigmoid(x), p_t = p y + (1 - p)(1 - y) the probability given to the target, and
alpha_t = alpha y + (1 - alpha)(1 - y). The factor (1 - p_t)^gamma shrinks the loss of examples
already classified well; gamma = 0 and alpha = -1 (no weighting) give BCEWithLogits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from ._reduction import reduce
from .activations import sigmoid, softplus

F64 = NDArray[np.float64]

# torchvision's value for "no alpha weighting"; any other alpha must lie in [0, 1].
NO_ALPHA = -1.0


def check_focal_arguments(x_shape: tuple[int, ...], y_shape: tuple[int, ...], alpha: float, reduction: str) -> None:
    """The calls torchvision rejects, each with ValueError: an alpha outside [0, 1] other than -1, a target
    of another shape than the input (from BCEWithLogits), an unknown reduction (checked last)."""
    if not (0 <= alpha <= 1) and alpha != NO_ALPHA:
        raise ValueError(f"alpha must lie in [0, 1], or be -1 for no weighting; got {alpha}")
    if x_shape != y_shape:
        raise ValueError(f"Target size ({y_shape}) must be the same as input size ({x_shape})")
    if reduction not in v.REDUCTIONS:
        raise ValueError(f"{reduction!r} is not a valid value for reduction: 'none', 'mean' or 'sum'")


def alpha_weight(y: F64, alpha: float) -> F64 | float:
    """alpha_t = alpha y + (1 - alpha)(1 - y), or 1 when alpha is -1."""
    return 1.0 if alpha == NO_ALPHA else alpha * y + (1.0 - alpha) * (1.0 - y)


def miss_probability(x: F64, y: F64) -> F64:
    """1 - p_t = y sigmoid(-x) + (1 - y) sigmoid(x): for targets in [0, 1] a sum of two non-negative terms,
    so it keeps full relative accuracy where p_t is close to 1 (1 - p_t computed by subtraction would not)."""
    return y * sigmoid(-x) + (1.0 - y) * sigmoid(x)


def binary_cross_entropy_terms(x: F64, y: F64) -> F64:
    """BCE(x, y) = y softplus(-x) + (1 - y) softplus(x), without the cancellation of (1 - y) x - log sigmoid(x)."""
    with np.errstate(invalid="ignore"):  # 0 * inf at an infinite logit: the term is absent
        return np.where(y == 0, 0.0, y * softplus(-x)) + np.where(y == 1, 0.0, (1.0 - y) * softplus(x))


def sigmoid_focal_loss(
    inputs: ArrayLike, targets: ArrayLike, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> F64:
    """The focal loss of logits ``inputs`` against ``targets`` of the same shape; 'mean' divides by the
    element count. Note torchvision's default reduction is 'none'."""
    x_in, y_in = v.as_array(inputs), v.as_array(targets)
    check_focal_arguments(x_in.shape, y_in.shape, alpha, reduction)
    x, y = x_in.astype(np.float64), y_in.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # a negative 1 - p_t (targets outside [0, 1]) is NaN
        modulating = np.power(miss_probability(x, y), gamma)
        losses = alpha_weight(y, alpha) * (modulating * binary_cross_entropy_terms(x, y))
    return reduce(np.asarray(losses, dtype=np.float64), reduction)
