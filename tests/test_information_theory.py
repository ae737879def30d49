"""The information theory the article builds the losses from: entropy, cross-entropy and KL divergence of discrete
distributions (reference/information.py), their identities, and torch's agreement with them.

Reference-level identities are checked in float64 with a bound from the standard model: each of the n terms
p log q costs one log (TRANSCENDENTAL_ULPS units of roundoff, the judgement NumPy's vectorised log is allowed in
tests/test_reference_oracle.py) and one product, and summing n terms adds (n - 1) u times their magnitudes; so a
sum of such terms errs by at most (n + TRANSCENDENTAL_ULPS + 2) u times the sum of |p| (|log p| + |log q|), and an
identity between three such sums by three times that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference
from reference import information
from verification import ledger, registry, strategies
from verification.cases import Case, to_torch
from verification.compare import assert_close
from verification.dtypes import FLOAT64, PARITY_DTYPES, Dtype
from verification.reproducer import array_literal, expressions_snippet

U = FLOAT64.unit_roundoff
ETA = FLOAT64.smallest_subnormal
TRANSCENDENTAL_ULPS = 8  # NumPy's float64 log and exp are allowed 4 ulps = 8u (see tests/test_reference_oracle.py)
MAX_OUTCOMES = 8


@st.composite
def distributions(draw: st.DrawFn, outcomes: int, normalised: bool = True) -> np.ndarray:
    """A probability vector over ``outcomes`` outcomes, with exact zeros and near-zeros among its entries."""
    mass = draw(strategies.float_arrays(FLOAT64, (outcomes,), strategies.PROBABILITIES), label="mass")
    if not normalised:
        return mass
    total = mass.sum()
    return mass / total if total > 0 else np.full(outcomes, 1.0 / outcomes)


def _scale(p: np.ndarray, q: np.ndarray) -> float:
    """sum |p| (|log p| + |log q|) over the terms that exist (p > 0)."""
    with np.errstate(divide="ignore"):
        logs = np.where(p > 0, np.abs(np.log(np.where(p > 0, p, 1.0))) + np.abs(np.log(np.where(p > 0, q, 1.0))), 0.0)
    return float(np.sum(p * logs))


def _bound(p: np.ndarray, q: np.ndarray) -> float:
    n = p.size
    return 3 * ((n + TRANSCENDENTAL_ULPS + 2) * U * _scale(p, q) + 3 * n * ETA)


def _record(error: float, bound: float, expected: float) -> None:
    ledger.record_comparison(error, bound, error / bound if bound else 0.0, expected, FLOAT64.ulp(expected))


@given(data=st.data())
def test_cross_entropy_is_entropy_plus_kl_divergence(data):
    """H(p, q) = H(p) + KL(p || q) for any distributions p and q (zeros included: a term with p = 0 vanishes, one
    with p > 0 = q makes both sides inf), within the float64 bound of the module docstring."""
    n = data.draw(st.integers(1, MAX_OUTCOMES), label="outcomes")
    p, q = data.draw(distributions(n), label="p"), data.draw(distributions(n), label="q")
    left = float(information.cross_entropy(p, q))
    right = float(information.entropy(p) + information.kl_divergence(p, q))
    if math.isinf(left) or math.isinf(right):
        assert left == right == math.inf, f"p = {array_literal(p)}, q = {array_literal(q)}: {left} != {right}"
        ledger.record_example()
        return
    bound = _bound(p, q)
    error = abs(left - right)
    assert error <= bound, f"p = {array_literal(p)}, q = {array_literal(q)}: H(p, q) = {left!r}, H + KL = {right!r}"
    _record(error, bound, left)


@given(data=st.data())
def test_kl_divergence_is_never_negative_and_zero_only_for_equal_distributions(data):
    """Gibbs' inequality, termwise and quantitative: for any non-negative p and q (normalised or not),
    sum p log(p / q) - sum p + sum q >= sum (p - q)^2 / (2 max(p, q)) >= 0, so KL(p || q) >= 0 for distributions,
    with equality only where p = q; and KL(p || p) is exactly 0."""
    n = data.draw(st.integers(1, MAX_OUTCOMES), label="outcomes")
    p = data.draw(distributions(n, normalised=False), label="p")
    q = data.draw(distributions(n, normalised=False), label="q")
    assert float(information.kl_divergence(p, p)) == 0.0
    divergence = float(information.kl_divergence(p, q))
    if math.isinf(divergence):
        assert np.any((p > 0) & (q == 0)), "KL is inf only where p has mass that q lacks"
        ledger.record_example()
        return
    generalised = divergence - float(np.sum(p)) + float(np.sum(q))
    with np.errstate(invalid="ignore"):
        floor = float(np.sum(np.where(p == q, 0.0, (p - q) ** 2 / (2 * np.maximum(p, q)))))
    bound = _bound(p, q) + 2 * n * U * float(np.sum(p) + np.sum(q))
    shortfall = max(0.0, floor - generalised)
    assert shortfall <= bound, (
        f"p = {array_literal(p)}, q = {array_literal(q)}: generalised KL {generalised!r} < {floor!r}, the lower bound"
    )
    _record(shortfall, bound, generalised)


@given(data=st.data())
def test_entropy_is_at_most_log_n_and_reaches_it_for_the_uniform_distribution(data):
    """0 <= H(p) <= log n for a distribution over n outcomes, and H of the uniform distribution is log n."""
    n = data.draw(st.integers(1, MAX_OUTCOMES), label="outcomes")
    p = data.draw(distributions(n), label="p")
    uniform = np.full(n, 1.0 / n)
    bound = _bound(uniform, uniform) + 2 * n * U * math.log(n)  # p sums to 1 within n u: H moves by n u log n
    h = float(information.entropy(p))
    assert -bound <= h <= math.log(n) + bound, f"p = {array_literal(p)}: H(p) = {h!r}, log n = {math.log(n)!r}"
    error = abs(float(information.entropy(uniform)) - math.log(n))
    assert error <= bound, f"the uniform distribution over {n} outcomes has entropy {information.entropy(uniform)!r}"
    _record(error, bound, math.log(n))


def no_underflow_logit_bound(dtype: Dtype) -> float:
    """Logits in [-R, R] keep every softmax probability a normal number of the dtype (as in test_identities.py)."""
    return (-math.log(dtype.smallest_normal) - 1.0 - math.log(strategies.MAX_CLASSES)) / 2.0


@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@given(data=st.data())
def test_torch_cross_entropy_with_probability_targets_is_the_distribution_cross_entropy(data, dtype, device):
    """F.cross_entropy(x, p, reduction='none') is H(p, softmax(x)) per position, the cross-entropy of the
    distributions, wherever softmax(x) does not underflow; within the tolerance model's bound for torch plus the
    float64 rounding of H(p, softmax(x))."""
    n = data.draw(st.integers(1, strategies.MAX_BATCH), label="positions")
    c = data.draw(st.integers(1, strategies.MAX_CLASSES), label="classes")
    r = no_underflow_logit_bound(dtype)
    x = data.draw(strategies.float_arrays(dtype, (n, c), strategies.within(-r, r)), label="logits")
    p = np.stack([data.draw(distributions(c), label=f"p[{i}]") for i in range(n)])
    p = dtype.snap(p)
    case = Case("cross_entropy", x, p, {"reduction": "none"})
    q = reference.softmax(x, 1)
    want = information.cross_entropy(p, q, axis=1)
    with np.errstate(divide="ignore"):
        scale = np.sum(p * (1 + np.abs(np.log(q))), axis=1)
    own_rounding = (2 * TRANSCENDENTAL_ULPS + c + 5) * U * scale
    bound = registry.error_bound("cross_entropy", dtype, x, p, reduction="none") + own_rounding
    input, target, kwargs = to_torch(case, dtype, device)
    assert_close(
        torch.nn.functional.cross_entropy(input, target, **kwargs),
        want,
        bound,
        dtype=dtype,
        what=f"cross_entropy(x, p) against H(p, softmax(x)), {dtype} on {device}",
        repro=expressions_snippet(
            case,
            dtype,
            device,
            "F.cross_entropy(input, target, reduction='none')",
            "reference.information.cross_entropy(t, reference.softmax(x, 1), axis=1)",
        ),
    )


# The article's example (its figures are lost, so the probabilities are stated here): before his 2019 move, Kawhi
# Leonard joins the Lakers with probability 0.4, each of the 30 other teams but one with probability 0.02 ("for
# convenience"), and the Raptors with probability 0: 32 outcomes. He joined the Clippers, one of the 0.02 teams.
KAWHI = np.array([0.4] + [0.02] * 30 + [0.0])
CLIPPERS = 1


@pytest.mark.parametrize("dtype", [d for d in PARITY_DTYPES if d.name in ("float64", "float32")], ids=str)
def test_the_article_s_entropy_example(dtype, device):
    """The article's transfer example has entropy -0.4 ln 0.4 - 30 (0.02 ln 0.02) = 2.7136 nats, which
    torch.distributions.Categorical(probs).entropy() gives too; the move that happened (p = 0.02) carried
    -ln 0.02 = 3.912 nats, more than the entropy expected, as the article says."""
    closed_form = -0.4 * math.log(0.4) - 30 * 0.02 * math.log(0.02)
    ours = float(information.entropy(KAWHI))
    assert abs(ours - closed_form) <= _bound(KAWHI, KAWHI), f"reference {ours!r}, closed form {closed_form!r}"
    categorical = torch.distributions.Categorical(probs=torch.as_tensor(KAWHI, dtype=dtype.torch, device=device))
    theirs = float(categorical.entropy())
    # torch normalises probs (sum within n u of 1), takes log and sums 32 terms in the dtype.
    torch_bound = (KAWHI.size + 2 * TRANSCENDENTAL_ULPS + 4) * dtype.unit_roundoff * _scale(KAWHI, KAWHI)
    assert abs(theirs - ours) <= torch_bound, f"Categorical.entropy() gave {theirs!r}, the reference {ours!r}"
    surprise = float(information.information_content(KAWHI[CLIPPERS]))
    assert surprise == pytest.approx(-math.log(0.02), rel=4 * U) and surprise > ours
    assert -float(categorical.log_prob(torch.tensor(CLIPPERS, device=device))) == pytest.approx(surprise, rel=1e-6)
    ledger.record_comparison(abs(theirs - ours), torch_bound, abs(theirs - ours) / torch_bound, ours, dtype.ulp(ours))
