"""Exact values of five losses and of their input gradients, in arbitrary precision (mpmath): BCE,
BCEWithLogits, NLL, cross-entropy and the KL divergence.

torch is checked against reference/; this module is what reference/ is checked against
(tests/test_reference_oracle.py). It is written from the mathematics and torch's documented
semantics, not from reference/'s code, and imports neither reference/ nor torch.

How the values are exact
------------------------
Every input is a float64, so it is exactly an mpmath number. Every operation is carried out with
``DIGITS`` significant digits in formulas that never subtract two nearly equal quantities:

* -log sigmoid(x) = log1p(e^-x) and -log(1 - sigmoid(x)) = log1p(e^x), for any x (mpmath's
  exponent range is unbounded, so e^10000 is an ordinary number here);
* -log softmax(x)_c = log1p(sum_{k != c} e^(x_k - x_c)), a log1p of a sum of positive terms;
* log(1 - p) = log1p(-p).

Each value is therefore correct to about 10^-55 relative to S, the sum of the magnitudes of the
terms it is made of, 40 digits below anything a float64 comparison can see. Rounded to float64
(``Exact.value``) it is the correctly rounded loss; the error of a float64 result is measured
against the unrounded value (``Exact.error_of``).

How the gradients are exact
---------------------------
A gradient is the numerical derivative of the exact forward, d/dx_j sum(grad_output * loss),
never the analytic formulas of reference/gradients.py. It is taken by the complex step,
f'(x) = Im f(x + ih) / h (Squire and Trapp, SIAM Review 40, 1998): there is no subtraction, so
a derivative of e^-10000 beside a loss of 10^4 (a softmax tail) comes out to full relative
precision, where a central difference (f(x + h) - f(x - h)) / 2h would need thousands of digits.
Its only error is the truncation h^2 f''' / 6, relative 10^-37 or less for these losses with
h = 2^-100 (the largest f'''/f' met is 2/p^2 <= 10^24, at BCE's interior margin p = 2e-12).
The loss is the sum of per-position losses, each depending only on its own position's inputs,
so the derivative with respect to x_j is that of the one position loss containing x_j, times
the reduction's coefficient (grad_output, divided by the mean's denominator).

Magnitudes
----------
Next to each exact value comes its magnitude S (the scale of the bound model in
tests/test_reference_oracle.py): the sum of the absolute values of the terms the value is made
of. A term's coefficient counts with the magnitudes of its own parts (|1 - eps| |t| + eps / C
for a smoothed target), and a 'mean' N / D counts as S(N) S(D) / D^2 (a denominator whose terms
cancel magnifies the relative error of the quotient by S(D) / |D|). Where nothing cancels
(probabilities and targets in [0, 1], non-negative weights) S equals |value|.

Per loss (w the weight, pw the pos_weight, y the target, eps the label smoothing):

* BCE: terms -w y max(log p, -100) and -w (1 - y) max(log(1 - p), -100); gradient terms
  w y / p and w (1 - y) / (1 - p) (a clamped log contributes neither value nor slope).
* BCEWithLogits: terms w pw y softplus(-x) and w (1 - y) softplus(x); gradient terms
  w pw y sigmoid(-x) and w (1 - y) sigmoid(x).
* NLL: the one term -w[y] x[y].
* Cross-entropy: the terms a_c (-log softmax(x)_c), each -log softmax_c >= 0, with a_c =
  (1 - eps) w[y] [c = y] + (eps / C) w_c for index targets and w_c ((1 - eps) t_c + eps / C) for
  probabilities; gradient with respect to x_k, sum_c a_c (softmax_k - [k = c]), made of the terms
  softmax_k a_c (for every c) and a_k.
* KL divergence: l = p (log p - log q) with p = t (or e^t for log targets), the terms p log p and
  p log q (0 where p = 0, NaN where p < 0); gradient term p, summed over the positions an input
  element was broadcast to.

Split by concern: ``exact`` (the exact numbers, their magnitudes, the reductions and the complex step),
then one module per family of losses: ``binary``, ``categorical``, ``kl_div``. The registry
(``verification/registry.py``) names each loss's oracle.
"""
