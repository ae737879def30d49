"""The suite's one tolerance model: a running rounding-error analysis of each loss.

How a bound is derived
----------------------
Inputs are exact (they are drawn in the dtype under test). Each loss is replayed here, step
by step in the order torch computes it, on ``Tracked`` numbers: a float64 value together
with a bound on the absolute error that the same step accumulates when torch performs it in
the dtype. Every step obeys the standard model of floating-point arithmetic (Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 2.2):

    fl(a op b) = (a op b)(1 + d) + e,   |d| <= u,   |e| <= eta

with u the dtype's unit roundoff and eta the spacing of its subnormals (the absolute floor:
an operation that underflows loses at most that much). Errors already present in the
operands are propagated through each operation's exact first-order-free sensitivity (for a
product |a| e_b + |b| e_a + e_a e_b, for log the exact -log(1 - e/v), and so on). A sum adds
gamma_h = h u / (1 - h u) times the sum of its terms' magnitudes, with h the height of the tree of
additions torch's kernel on that path builds and u its accumulator's (float32 for float16 and
bfloat16 wherever torch accumulates in its "opmath" type), plus u of the storage dtype times
whatever is rounded back to it (``summation.py`` says, path by path, what torch's code does; the
any-order model, h = n - 1 in the storage dtype, is the one for an implementation that declares
another accumulator). The result is a rigorous worst-case bound whose scale follows from the
computation itself: it grows with max|logit| and C for log-softmax losses, with |x| for
BCEWithLogits, with the number of elements for reductions, and it becomes infinite when a
'mean' divides by a total weight that rounding could drive to zero, or when a result, a partial
sum or an exponential may leave the dtype's finite range, and for a sum with such a term (problems
that no finite bound describes: the properties exclude them, counted under the rule that made the
bound infinite, below). A NaN operand makes a product an exact NaN (compared as NaN), not an
unbounded one.

Gradients are replayed the same way, in the order of torch's backward formulas (aten's
``*_backward`` kernels, and autograd's chain through log_softmax for cross-entropy), with the
same per-operation rules. An operand whose error is unbounded may itself be inf in torch, so
an exact zero times it is unbounded too (0 * inf is NaN), never exactly 0.

Where no finite bound holds, each element records the rule that made its bound infinite
(``Tracked.unbounded_by``, a code of ``tracked.RULES``): the rule that fired there, or, for an
operation on an operand that already had no finite bound, that operand's rule (the root cause, so an
exact 0 times an unbounded factor keeps the factor's rule). An excluded example is counted under its
rule's reason, so the run's summary counts exclusions per rule, in this order: ``divisor_near_zero``
(a divisor is within rounding error of 0: a mean's total weight that rounding could cancel, or the
max(p (1 - p), 1e-12) of BCE's gradient in float16), ``log_near_zero`` (a logarithm's argument
is within rounding error of 0), ``power_base_near_zero`` (a power's base is within rounding error of
0 or below it), ``exp_overflow`` (e^x of a finite x is past float64's range), ``partial_sum_overflow``
(a partial sum of a sum's positive or of its negative terms may pass the dtype's largest value),
``overflow`` (a result, with its error bound, may pass the dtype's largest value), ``nan_term`` (a sum
with a NaN term has a NaN error bound, which the division of a 'mean' or 'batchmean', or a product,
after it takes as unbounded), ``nonfinite_operand`` (an operand of a product, exponential,
quotient, logarithm or power is inf or NaN) and ``too_many_terms`` (a sum's tree is too tall for its
accumulator, h u >= 1: the any-order model in float16 past 2048 terms, in bfloat16 past 256).
Where an example's infinite elements fall under several rules, the first in this order is the one
counted.

The constants, each in a sentence:

* ``u`` and ``eta`` come from ``torch.finfo`` of the dtype (eps / 2, and smallest_normal * eps),
  and float64's are added to them for the reference's own rounding; for float16 and bfloat16 float32's u
  too, since torch's CPU kernels compute them in float32 and round that result to the dtype (a double
  rounding). For an implementation whose
  arithmetic flushes subnormal results to zero in a dtype (an adapter's ``FLUSHES_SUBNORMALS``: XLA
  on the CPU), eta is that dtype's smallest normal number instead: what a flushed result loses
  (``tracked.flushing_subnormals``); the evidence report names the dtypes it was used for.
* ``TRANSCENDENTAL_ERROR = 4``: exp, log and log1p are accurate to 1 ulp (at most 2u) in libm and
  in torch's vectorised kernels; 4u leaves room for 2-ulp implementations on other backends.
* ``SIGMOID_ERROR = TRANSCENDENTAL_ERROR + 2``: sigmoid is one exp, one addition and one division.
* ``x ** gamma`` (the focal loss's modulating factor) is bounded exactly over the interval of its
base, where
  it is monotone, plus its own rounding of TRANSCENDENTAL_ERROR units (std::pow is a 1-ulp libm
function), or
  one unit for gamma = 2, which torch computes as a single product.
* Sigmoid's absolute floor is the dtype's smallest normal number, not eta: torch evaluates
  1 / (1 + e^-x), and once e^-x overflows the result is 0 where sigmoid(x) is a subnormal.
* ``BCE_GRAD_EPSILON = 1e-12``: the floor torch's BCE backward puts under p (1 - p).
* gamma_h = h u / (1 - h u) for a sum whose tree of additions has height h (Higham, chapter 4): h = n - 1
  for any order; the heights of torch's paths (``summation.py``) follow its kernels' loops, each level
  taken at its fullest; a sum also gets h eta for subnormal partial sums.
* Log-softmax is bounded in both of the orders torch's kernels use, (x - m) - log s and
  x - (m + log s), keeping the larger bound.

Nothing here is fitted to observed errors. Two choices are judgement, both stated:
``TRANSCENDENTAL_ERROR`` and the second evaluation order for log-softmax. The meta tests in
``tests/meta/test_tolerance.py`` show the bounds are tight: on ordinary inputs the median bound
is a few ulps, and torch's largest error reaches a sizeable fraction of it.

The reference computes in float64 with its own rounding; the model covers it by adding
float64's unit roundoff and subnormal spacing to the dtype's (the reference performs the same
kind and number of operations as the torch order modelled here, and is at least as well
conditioned: it uses the same log-sum-exp and cancellation-free softplus forms). The subnormal
term matters: a float64 probability of 5e-324 times a weight of 0.5 underflows to 0 in the
reference itself.

The model is split by concern: ``tracked`` (the arithmetic on numbers that carry an error bound and the
rules that leave one unbounded), ``summation`` (how torch's kernels add up a sum, path by path),
``forward`` and ``backward`` (the pieces the losses' value and gradient replays share),
``identities`` (the compositions the article's identities compare). Each loss's own replays, in
torch's order, are in its module under ``verification/losses/``, whose registry entry names them.
"""
