"""Information theory of discrete distributions, in float64: the quantities the article builds the losses from.

For distributions p and q over the same outcomes (along ``axis``), in nats:

* information content of an outcome of probability p: I(p) = -log p (inf for p = 0);
* entropy: H(p) = -sum_i p_i log p_i, with 0 log 0 = 0 (its limit);
* cross-entropy: H(p, q) = -sum_i p_i log q_i, where a term with p_i = 0 is 0 even if q_i = 0, and a term with
  p_i > 0 = q_i is inf;
* KL divergence: KL(p || q) = sum_i p_i (log p_i - log q_i), with the same limits.

Probabilities must be non-negative (NaN rejected too); they need not sum to 1 (the identities hold termwise).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


def _probabilities(name: str, values: ArrayLike) -> F64:
    array = np.asarray(values, dtype=np.float64)
    if array.size and not np.all(array >= 0):  # written so that NaN fails too
        raise ValueError(f"{name} must hold non-negative probabilities")
    return array


def _p_log(p: F64, log_of: F64) -> F64:
    """p * log(of), with the term taken as 0 wherever p = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p == 0, 0.0, p * np.log(log_of))


def information_content(p: ArrayLike) -> F64:
    """-log p: the surprise of an outcome of probability p."""
    with np.errstate(divide="ignore"):
        return np.asarray(-np.log(_probabilities("p", p)))


def entropy(p: ArrayLike, axis: int = -1) -> F64:
    """H(p) = -sum p log p."""
    probabilities = _probabilities("p", p)
    return np.asarray(-np.sum(_p_log(probabilities, probabilities), axis=axis))


def cross_entropy(p: ArrayLike, q: ArrayLike, axis: int = -1) -> F64:
    """H(p, q) = -sum p log q."""
    return np.asarray(-np.sum(_p_log(_probabilities("p", p), _probabilities("q", q)), axis=axis))


def kl_divergence(p: ArrayLike, q: ArrayLike, axis: int = -1) -> F64:
    """KL(p || q) = sum p (log p - log q), each term 0 where p = 0."""
    probabilities, others = _probabilities("p", p), _probabilities("q", q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probabilities == 0, 0.0, probabilities * (np.log(probabilities) - np.log(others)))
    return np.asarray(np.sum(terms, axis=axis))
