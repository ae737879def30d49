"""The article's CIFAR-10 example (``examples/cifar10_walkthrough.py``), as evidence.

The article's chain, on the PyTorch CIFAR-10 tutorial network's 4 x 10 output, in float32 and float64: each softmax
row sums to 1 within (n + 1) u (derived at ``softmax_row_sum_bound``), and NLLLoss(log(softmax(z))) and
NLLLoss(LogSoftmax(z)) equal CrossEntropyLoss(z) within the bounds ``tests/test_identities.py`` uses for those
identities.

Then two float64 trainings of that network from the same weights on the same batches, SGD(lr = 0.001, m = 0.9): run
A driven by nn.CrossEntropyLoss, run B by ``ReferenceCrossEntropy`` (forward ``reference.cross_entropy``, backward
``reference.gradients.cross_entropy_grad``).

Teacher-forced: at the weights run A holds before each step, B's loss equals A's within
``registry.error_bound('cross_entropy', FLOAT64, logits, labels)`` and B's logit gradient equals A's within
``registry.gradient_error_bound(..., grad_output=1.0)``.

Free-running: ||W^B_t - W^A_t||_2 stays within a bound built from the tolerance model and rounding-error analysis,
never from observed errors. With W, v each run's weights and momentum buffer and g its computed gradient, torch's SGD
sets v_1 = g_0 (a copy), v_(t+1) = m v_t + g_t and W_(t+1) = W_t - lr v_(t+1). So the differences d = W^B - W^A and
e = v^B - v^A obey

    e_(t+1) = m e_t + (g^B_t - g^A_t) + both runs' rounding of the buffer update,
    d_(t+1) = d_t - lr e_(t+1) + both runs' rounding of the weight update.

Each run's computed gradient is the exact gradient g* of the exact loss at its own weights plus that run's
computation error, so g^B_t - g^A_t = [g*(W^B_t) - g*(W^A_t)] + (both errors). The first part is H_t d_t to first
order, with H_t the loss's Hessian, so its 2-norm is at most ||H_t||_2 ||d_t||_2. The errors are bounded elementwise,
over every parameter, by the sum of:

(a) the loss's own error, propagated to the parameters: |J_t|^T B_t, with B_t the tolerance model's bound on the
    logit gradient and J_t the 40 x P Jacobian of the logits with respect to the parameters (40 backward passes;
    |J^T x| <= |J|^T |x|). B_t counts torch's float64 rounding and the reference's together (the model adds
    float64's u for the reference), so it covers both runs' logit gradients at once.
(b) each run's rounding in the network's backward pass (so twice): a running error analysis of the chain, stage by
    stage, each stage a sum of products adding gamma_n = n u / (1 - n u) times the magnitudes it sums and passing on
    what it received through |W| (``backward_with_rounding``). The reduction lengths, from the logits down: 10, 84,
    120 and 400 for the input gradients of fc3, fc2, fc1 and conv2, and 4, 4, 4, 400 and 3136 for the weight
    gradients of fc3, fc2, fc1, conv2 and conv1, so conv1's gradient passes through gamma of 10 + 84 + 120 + 400 +
    3136 = 3750 in all. Written as gamma_3750 |J|^T |g| (one gamma for the chain, times |J|^T |g|) it would not be
    a bound: the rounding of a product of matrices is bounded by the product of their absolute values, and here that
    product exceeds |J|^T |g| about 2600-fold for conv1's weights, whose paths cancel in J. Taking that product whole
    (gamma of each parameter's chain length, 3750 for conv1, times |W_L| ... |W_1| applied to |g|) is a bound, but
    about 50 times larger here than the running analysis, which keeps each stage's actual magnitudes.
(e) each run's rounding in the network's forward pass (so twice). Each layer's outputs err by at most
    gamma_(fan_in + 1) (|W||a| + |b|), plus what reaches them from below through the exact Jacobian |d out / d x|
    (``forward_rounding``; passing it up through |W| instead would overstate the logits' rounding 200- to 300-fold).
    The logits' rounding e moves the logit gradient (softmax(z) - one_hot) / N by at most (s e + s (s . e)) / N,
    which reaches the parameters through |J|^T, and a layer's input's rounding enters its weight gradient through
    the outer product with the gradient backpropagated to that layer. Without this term (a) to (d) would not be a
    bound: once the weights differ by one ulp, the two runs' rounding errors are unrelated and each can be as large as
    the rounding of a whole forward and backward pass, while the Hessian term covers only the change of the exact
    gradient. (In float32, where such errors are visible, the inputs' rounding alone makes fc3's weight gradient err
    about 140 times what (b) allows.)
(c) the updates' rounding, in each run: buffer u (m |v_t| + |v_(t+1)|) (none at the first step, a copy), weights
    u (|W_(t+1)| + lr |v_(t+1)|) (the product and the sum; once if fused).
(d) the propagation of what has accumulated, in 2-norms (the 2-norm of an elementwise bound vector bounds the 2-norm
    of any vector within it):

        ||e_(t+1)|| <= m ||e_t|| + ||H_t|| ||d_t|| + ||(a) + (b) + (e) + buffer rounding||
        ||d_(t+1)|| <= ||d_t|| + lr ||e_(t+1)|| + ||weight rounding||

    This replaces a single growth factor (1 + lr (1 + m) ||H_t||) on the accumulated norm. Momentum carries a
    gradient difference into every later update (m^k of it k steps later), which such a factor does not follow
    (its (1 + m) covers one later step), so the buffer's difference is carried as a state of its own.

||H_t||_2 comes from power iteration with Hessian-vector products (``hessian_norm_estimate``), which approaches it
from below. So the test records lr (1 + m) max_t ||H_t|| N and asserts it is below 0.1, and measures the bound's
dependence directly: doubling every ||H_t|| must move the final bound by less than 10%. An estimate that fell short
of ||H|| would then move the bound by a small fraction of itself, not change its order.

First order: products of two rounding terms (relative u^2, about 1e-32) are dropped, and so is the difference
between evaluating (a), (b), (e) and H_t at run A's weights or at run B's (relative ||d|| / ||W||, about 1e-16). All
of this presumes that no ReLU or max-pool decision differs between the runs; then the network is one smooth function
of its weights between them, so J_t and H_t describe both runs. ``largest_stable_weight_change`` checks this
against both runs' forward rounding and the bound's own weight difference (a max-pool tie between entries with
identical receptive fields in the image, as in a flat patch of sky, decides nothing and is exempt). The test requires
a margin above 1.

The machinery is tested too: the written-out backward pass equals autograd's within twice its rounding bound; the
forward and backward rounding bounds hold for float32's rounding, where rounding errors are large enough to measure;
and the premise holds on images with flat regions. A planted bug in the reference's backward pass (scaled by
1 + 1e-9, or missing the batch mean) must make the free-running check fail.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from examples import cifar10_walkthrough as walkthrough
from verification import ledger, registry
from verification.cases import Case
from verification.compare import ParityError, assert_close
from verification.dtypes import FLOAT32, FLOAT64, Dtype
from verification.reproducer import expressions_snippet, gradient_snippet, snippet
from verification.tolerance import identities

SEED = 0
STEPS = walkthrough.DEFAULT_STEPS
NETWORK_DTYPES = pytest.mark.parametrize("dtype", [FLOAT32, FLOAT64], ids=str)
CIFAR_DIR_VARIABLE = "LOSS_PARITY_CIFAR_DIR"
REPRODUCE = f"python -m examples.cifar10_walkthrough --steps {STEPS} --seed {SEED}"


class Run:
    """Both trajectories on one set of batches, and the bound's per-step terms along run A's."""

    def __init__(self, batches: list[walkthrough.Batch]) -> None:
        self.batches = batches
        self.initial = walkthrough.build_net(SEED)
        self.torch_run = walkthrough.run_trajectory(self.initial, batches, nn.CrossEntropyLoss())
        self.reference_run = walkthrough.run_trajectory(self.initial, batches, walkthrough.reference_cross_entropy)
        self.analyses = walkthrough.analyse_trajectory(self.initial, batches, self.torch_run)


@pytest.fixture(scope="module")
def synthetic() -> Run:
    return Run(walkthrough.synthetic_batches(STEPS, SEED))


def _as_numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


# --- the article's chain ------------------------------------------------------------------------------------------


def softmax_row_sum_bound(dtype: Dtype, n_classes: int) -> float:
    """How far a row of torch's softmax, summed in float64, may lie from 1.

    Torch's CPU kernel computes e_j = exp(x_j - max), S = sum_j e_j, r = 1 / S and p_j = e_j * r. Whatever error
    the exps carry, the row is normalised by the sum of the same rounded e_j, so that error cancels. The sum
    rounds to S (1 + theta), |theta| <= gamma_(n-1), and the reciprocal and each product round once (u each), so
    sum_j p_j = (1 + rho)(1 + mean delta_j) / (1 + theta), within (1 + u)^2 / (1 - gamma_(n-1)) - 1, about (n + 1) u,
    of 1. Subnormal results add at most the subnormal spacing eta each: (2n - 1) eta for the n products and the
    n - 1 additions. The check's own float64 sum of the n values adds gamma_(n-1) in float64's u.
    """
    u, eta = dtype.unit_roundoff, dtype.smallest_subnormal
    gamma = (n_classes - 1) * u / (1 - (n_classes - 1) * u)
    in_torch = (1 + u) ** 2 / (1 - gamma) - 1 + (2 * n_classes - 1) * eta
    u64 = FLOAT64.unit_roundoff
    summing = (n_classes - 1) * u64 / (1 - (n_classes - 1) * u64) * (1 + in_torch)
    return in_torch + summing


def _case(chain: walkthrough.ArticleChain, batch: walkthrough.Batch) -> Case:
    return Case("cross_entropy", _as_numpy(chain.outputs), batch.labels, {})


def check_softmax_rows(chain: walkthrough.ArticleChain, dtype: Dtype, source: str, repro: str = REPRODUCE) -> None:
    __tracebackhide__ = True
    n_classes = chain.outputs.shape[1]
    bound = softmax_row_sum_bound(dtype, n_classes)
    errors = (chain.row_sums - 1.0).abs()
    worst = int(errors.argmax())
    error = float(errors[worst])
    if error > bound:
        raise ParityError(
            f"softmax of the tutorial network's {dtype} output on {source}: row {worst} sums to "
            f"{float(chain.row_sums[worst])!r}, {error:.3g} from 1, beyond the derived bound {bound:.3g} "
            f"((n + 1) u for n = {n_classes}) by a factor {error / bound:.3g}\n\nReproduce with:\n\n{repro}\n"
        )
    ledger.record_comparison(error, bound, error / bound, 1.0, dtype.ulp(1.0))


def check_softmax_log_nll(chain: walkthrough.ArticleChain, batch: walkthrough.Batch, dtype: Dtype) -> None:
    __tracebackhide__ = True
    case = _case(chain, batch)
    bound = registry.error_bound("cross_entropy", dtype, case.input, case.target) + (
        identities.softmax_log_nll(dtype, case.input, case.target).error
    )
    assert np.all(np.isfinite(bound)), "the network's logits are moderate: the bound should be finite"
    assert_close(
        chain.nll_of_log_probabilities,
        _as_numpy(chain.cross_entropy),
        bound,
        dtype=dtype,
        what=f"NLL(log(Softmax(x))) against CrossEntropy(x) for the tutorial network's output, {case.describe()}, "
        f"{dtype} on cpu",
        repro=expressions_snippet(
            case,
            dtype,
            "cpu",
            "F.nll_loss(torch.log(torch.softmax(input, 1)), target)",
            "F.cross_entropy(input, target)",
        ),
    )


def check_log_softmax_nll(chain: walkthrough.ArticleChain, batch: walkthrough.Batch, dtype: Dtype) -> None:
    __tracebackhide__ = True
    case = _case(chain, batch)
    assert_close(
        chain.nll_of_log_softmax,
        _as_numpy(chain.cross_entropy),
        2 * registry.error_bound("cross_entropy", dtype, case.input, case.target),
        dtype=dtype,
        what=f"NLL(LogSoftmax(x)) against CrossEntropy(x) for the tutorial network's output, {case.describe()}, "
        f"{dtype} on cpu",
        repro=expressions_snippet(
            case, dtype, "cpu", "F.nll_loss(torch.log_softmax(input, 1), target)", "F.cross_entropy(input, target)"
        ),
    )


@NETWORK_DTYPES
def test_softmax_rows_of_the_network_output_sum_to_one_within_n_plus_one_roundoffs(dtype):
    """Each row of softmax of the tutorial network's 4 x 10 output sums to 1 within (n + 1) u, n = 10 classes: the
    rounding of the normalising sum, its reciprocal and the products, the exps' own errors cancelling."""
    batch = walkthrough.synthetic_batches(1, SEED)[0]
    chain = walkthrough.article_chain(walkthrough.build_net(SEED, dtype.torch), batch)
    assert tuple(chain.outputs.shape) == (walkthrough.BATCH_SIZE, walkthrough.N_CLASSES)
    check_softmax_rows(chain, dtype, "generated images")


@NETWORK_DTYPES
def test_softmax_then_log_then_nll_equals_cross_entropy_on_the_network_output(dtype):
    """The article's three steps on the tutorial network's output, NLLLoss(log(Softmax(z))), equal
    CrossEntropyLoss(z) within both computations' tolerance-model bounds."""
    batch = walkthrough.synthetic_batches(1, SEED)[0]
    check_softmax_log_nll(walkthrough.article_chain(walkthrough.build_net(SEED, dtype.torch), batch), batch, dtype)


@NETWORK_DTYPES
def test_log_softmax_then_nll_equals_cross_entropy_on_the_network_output(dtype):
    """NLLLoss(LogSoftmax(z)) on the tutorial network's output equals CrossEntropyLoss(z) within twice the
    cross-entropy bound."""
    batch = walkthrough.synthetic_batches(1, SEED)[0]
    check_log_softmax_nll(walkthrough.article_chain(walkthrough.build_net(SEED, dtype.torch), batch), batch, dtype)


# --- the two trajectories -----------------------------------------------------------------------------------------


def check_teacher_forced(run: Run) -> None:
    """At each step's weights of the torch-driven run, the reference's loss and logit gradient against torch's."""
    __tracebackhide__ = True
    for t, (weights, batch) in enumerate(zip(run.torch_run.weights[:-1], run.batches, strict=True)):
        images, labels = batch.tensors(torch.float64)
        with torch.no_grad():
            logits = walkthrough.net_at(run.initial, weights)(images)
        torch_logits = logits.clone().requires_grad_(True)
        reference_logits = logits.clone().requires_grad_(True)
        torch_loss = nn.CrossEntropyLoss()(torch_logits, labels)
        reference_loss = walkthrough.reference_cross_entropy(reference_logits, labels)
        torch_loss.backward()
        reference_loss.backward()
        case = Case("cross_entropy", _as_numpy(logits), batch.labels, {})
        what = f"step {t + 1} of the torch-driven trajectory: {case.describe()} of the network's logits, float64 on cpu"
        assert_close(
            torch_loss,
            _as_numpy(reference_loss),
            registry.error_bound("cross_entropy", FLOAT64, case.input, case.target),
            what=what,
            dtype=FLOAT64,
            repro=snippet(case, FLOAT64, "cpu", "functional"),
        )
        assert torch_logits.grad is not None and reference_logits.grad is not None
        assert_close(
            torch_logits.grad,
            _as_numpy(reference_logits.grad),
            registry.gradient_error_bound("cross_entropy", FLOAT64, case.input, case.target, np.asarray(1.0)),
            what=f"the gradient at {what}",
            dtype=FLOAT64,
            repro=gradient_snippet(case, np.asarray(1.0), FLOAT64, "cpu", "functional"),
        )


def check_trajectories(comparison: walkthrough.TrajectoryComparison, source: str, repro: str = REPRODUCE) -> None:
    """The reference-driven weights stay within the derived bound of the torch-driven ones after every step."""
    __tracebackhide__ = True
    bound = comparison.bound
    if not bound.stability_margin > 1:
        raise ParityError(
            f"the trajectories on {source}: a ReLU or max-pool decision could differ between the two runs (margin "
            f"{bound.stability_margin:.3g}, needs > 1), so the network need not be smooth between them and the "
            f"Hessian term does not bound the gradients' difference\n\nReproduce with:\n\n{repro}\n"
        )
    for t, (difference, limit) in enumerate(zip(comparison.weight_differences, bound.weights, strict=True)):
        if difference > limit:
            raise ParityError(
                f"the trajectories on {source}: after step {t}, the reference-driven network's weights differ from "
                f"the torch-driven network's by {difference:.3g} in the 2-norm, which exceeds the derived bound "
                f"{limit:.3g} by a factor {difference / limit:.3g}\n\nReproduce with:\n\n{repro}\n"
            )


def _record_trajectories(run: Run, comparison: walkthrough.TrajectoryComparison) -> None:
    bound = comparison.bound
    doubled = walkthrough.trajectory_bound(run.analyses, run.torch_run, run.reference_run, hessian_scale=2.0)
    ledger.record_measurement("steps", len(run.batches))
    ledger.record_measurement("largest weight difference", comparison.largest_weight_difference)
    ledger.record_measurement("2-norm of the weight difference", comparison.weight_differences[-1])
    ledger.record_measurement("bound on that 2-norm", bound.weights[-1])
    ledger.record_measurement("lr (1 + momentum) max ||H_t|| N", bound.hessian_feedback)
    ledger.record_measurement("bound's change when every ||H_t|| doubles", doubled.weights[-1] / bound.weights[-1] - 1)
    ledger.record_measurement("decision stability margin", bound.stability_margin)
    ledger.record_measurement("injected terms (2-norms summed over steps)", bound.terms)
    ledger.record_series(
        "trajectory",
        step=list(range(len(run.batches) + 1)),
        weight_difference=comparison.weight_differences,
        bound=bound.weights,
    )
    ledger.record_series(
        "losses",
        step=list(range(1, len(run.batches) + 1)),
        torch=run.torch_run.losses,
        reference=run.reference_run.losses,
    )
    final = float(run.torch_run.weights[-1].norm())
    error, limit = comparison.weight_differences[-1], bound.weights[-1]
    ledger.record_comparison(error, limit, error / limit, final, FLOAT64.ulp(final))


def test_reference_loss_and_gradient_match_torch_at_every_step_of_training(synthetic):
    """At the weights of every step of float64 SGD training driven by nn.CrossEntropyLoss, the reference-backed loss
    and its logit gradient equal torch's within the tolerance model's bounds."""
    check_teacher_forced(synthetic)


def test_training_driven_by_the_reference_stays_within_the_derived_bound_of_training_driven_by_torch(synthetic):
    """Float64 SGD training (lr 0.001, momentum 0.9) of the tutorial network, once driven by nn.CrossEntropyLoss and
    once by the reference's loss and gradient, keeps the two networks' weights within a bound derived from the
    tolerance model and rounding-error analysis (see the module docstring) after every step."""
    comparison = walkthrough.compare_trajectories(synthetic.analyses, synthetic.torch_run, synthetic.reference_run)
    _record_trajectories(synthetic, comparison)
    check_trajectories(comparison, "generated images")
    bound = comparison.bound
    assert bound.hessian_feedback < 0.1, (
        f"lr (1 + momentum) ||H|| N = {bound.hessian_feedback:.3g}: the Hessian's share of the bound is not small, so "
        "power iteration's estimate from below could matter"
    )
    doubled = walkthrough.trajectory_bound(
        synthetic.analyses, synthetic.torch_run, synthetic.reference_run, hessian_scale=2.0
    )
    assert doubled.weights[-1] < 1.1 * bound.weights[-1], (
        f"doubling every ||H_t|| moves the bound from {bound.weights[-1]:.3g} to {doubled.weights[-1]:.3g}: more than "
        "the 10% that makes the estimate's shortfall negligible"
    )


class _BackwardScaledByOnePlus1e9(walkthrough.ReferenceCrossEntropy):
    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        gradient, _ = walkthrough.ReferenceCrossEntropy.backward(ctx, grad_output)
        return gradient * (1 + 1e-9), None


class _BackwardWithoutTheBatchMean(walkthrough.ReferenceCrossEntropy):
    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        gradient, _ = walkthrough.ReferenceCrossEntropy.backward(ctx, grad_output)
        return gradient * walkthrough.BATCH_SIZE, None


PLANTED = {
    "backward_scaled_by_1_plus_1e-9": _BackwardScaledByOnePlus1e9,
    "backward_without_the_batch_mean": _BackwardWithoutTheBatchMean,
}


@pytest.mark.parametrize("bug", PLANTED, ids=str)
def test_the_trajectory_check_fails_on_a_planted_bug_in_the_reference_backward(synthetic, bug):
    """A planted bug in the reference loss's backward pass (its gradient scaled by 1 + 1e-9, or not divided by the
    batch size) drives the trajectory outside the derived bound, and the free-running check fails."""
    planted = walkthrough.run_trajectory(synthetic.initial, synthetic.batches, PLANTED[bug].apply)
    comparison = walkthrough.compare_trajectories(synthetic.analyses, synthetic.torch_run, planted)
    ledger.record_measurement(
        "final weight difference over its bound", comparison.weight_differences[-1] / comparison.bound.weights[-1]
    )
    ledger.record_example()
    with pytest.raises(ParityError, match="exceeds the derived bound"):
        check_trajectories(comparison, f"generated images, with the planted bug {bug}")


# --- the bound's machinery ----------------------------------------------------------------------------------------


def _assert_within(got: Tensor, want: Tensor, bound: Tensor, what: str, dtype: Dtype) -> float:
    """``got`` (computed in ``dtype``) within ``bound`` of ``want`` elementwise; returns the largest error / bound."""
    __tracebackhide__ = True
    got, want, bound = got.to(torch.float64).reshape(-1), want.reshape(-1), bound.reshape(-1)
    error = (got - want).abs()
    ratios = torch.where(bound > 0, error / bound, torch.where(error > 0, torch.inf, 0.0))
    i = int(ratios.argmax())
    if error[i] > bound[i]:
        raise ParityError(
            f"{what}: element {i} is {float(got[i])!r} where {float(want[i])!r} was expected; the error "
            f"{float(error[i]):.3g} exceeds the bound {float(bound[i]):.3g} by a factor {float(ratios[i]):.3g}"
        )
    expected = float(want[i])
    ledger.record_comparison(float(error[i]), float(bound[i]), float(ratios[i]), expected, dtype.ulp(expected))
    return float(ratios[i])


def test_the_written_out_backward_pass_equals_autograds_within_its_rounding_bound(synthetic):
    """The backward pass the bound's rounding analysis follows, written out layer by layer, gives autograd's gradient
    of the tutorial network within twice its rounding bound (both are float64 computations of one quantity)."""
    images, labels = synthetic.batches[0].tensors(torch.float64)
    net = walkthrough.net_at(synthetic.initial, synthetic.torch_run.weights[0])
    fw = walkthrough.forward(net, images)
    logits = fw.fc3.detach().clone().requires_grad_(True)
    nn.CrossEntropyLoss()(logits, labels).backward()
    assert logits.grad is not None
    written_out, rounding, _ = walkthrough.backward_with_rounding(net, fw, logits.grad)
    nn.CrossEntropyLoss()(net(images), labels).backward()
    autograd = torch.cat([p.grad.reshape(-1) for p in net.parameters() if p.grad is not None])
    _assert_within(written_out, autograd, 2 * rounding, "the written-out backward pass against autograd's", FLOAT64)


def test_the_rounding_bounds_cover_float32s_rounding_of_the_network(synthetic):
    """The forward and backward rounding bounds the trajectory bound is built from, evaluated with float32's unit
    roundoff, contain the difference between the float32 and the float64 network's logits and weight gradients
    (given the same images and the same logit gradient), where rounding errors are large enough to see."""
    net64 = synthetic.initial
    net32 = walkthrough.build_net(SEED, torch.float32)
    images32 = torch.from_numpy(synthetic.batches[0].images).to(torch.float32)
    fw32, fw64 = walkthrough.forward(net32, images32), walkthrough.forward(net64, images32.to(torch.float64))
    decisions_agree = all(
        bool(((fw32.outputs(name) > 0) == (fw64.outputs(name) > 0)).all()) for name in ("conv1", "conv2", "fc1", "fc2")
    ) and bool((fw32.choice1 == fw64.choice1).all() and (fw32.choice2 == fw64.choice2).all())
    assert decisions_agree, "the float32 and float64 networks take different ReLU or max-pool decisions on this batch"
    unit_roundoff = FLOAT32.unit_roundoff + FLOAT64.unit_roundoff  # each computation within its own u
    rounding = walkthrough.forward_rounding(net64, fw64, unit_roundoff)
    forward_ratio = _assert_within(
        fw32.fc3.detach(), fw64.fc3.detach(), rounding["fc3"], "float32 logits against float64 logits", FLOAT32
    )
    labels = torch.from_numpy(synthetic.batches[0].labels)
    upstream = torch.softmax(fw64.fc3.detach(), 1)
    upstream[torch.arange(len(labels)), labels] -= 1.0
    upstream = (upstream / len(labels)).to(torch.float32)  # exactly representable in both dtypes
    gradients = []
    for net, fw in ((net32, fw32), (net64, fw64)):
        grads = torch.autograd.grad(fw.fc3, list(net.parameters()), grad_outputs=upstream.to(fw.fc3.dtype))
        gradients.append(torch.cat([g.reshape(-1) for g in grads]))
    _, backward, from_inputs = walkthrough.backward_with_rounding(
        net64, fw64, upstream.to(torch.float64), walkthrough.input_rounding(fw64, rounding), unit_roundoff
    )
    backward_ratio = _assert_within(
        gradients[0], gradients[1], backward + from_inputs, "float32 weight gradients against float64 ones", FLOAT32
    )
    ledger.record_measurement("float32 logits: largest error / bound", forward_ratio)
    ledger.record_measurement("float32 weight gradients: largest error / bound", backward_ratio)


def test_the_smoothness_premise_holds_on_images_with_flat_regions(synthetic):
    """On images with flat regions (a saturated sky, a plain ground), where max-pool windows hold exact ties, no ReLU
    or max-pool decision that reaches the gradient can be flipped by both runs' rounding: ties between entries with
    identical receptive fields are recognised as deciding nothing."""
    images = synthetic.batches[0].images.copy()
    images[:, :, :12, :] = 1.0
    images[:, :, 20:, :] = images[:, :, 20:21, :1]
    net = synthetic.initial
    fw = walkthrough.forward(net, torch.from_numpy(images))
    stable = walkthrough.largest_stable_weight_change(net, fw, walkthrough.forward_rounding(net, fw))
    ledger.record_measurement("largest stable weight change", stable)
    ledger.record_example()
    assert stable > 0, f"rounding alone could flip a decision on images with flat regions (limit {stable:.3g})"


# --- data and the command line ------------------------------------------------------------------------------------


def _write_batch_file(directory, content: object) -> None:
    directory.mkdir(exist_ok=True)
    with (directory / "data_batch_1").open("wb") as file:
        pickle.dump(content, file, protocol=2)  # the protocol of the distributed (Python 2) files


def test_cifar_batches_read_the_standard_python_batch_format(tmp_path):
    """cifar_batches reads a file in CIFAR-10's python format (a pickled dict with b'data', uint8 N x 3072, and
    b'labels') into normalised 3 x 32 x 32 images and their labels, chosen by a seeded permutation."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(16, 3072), dtype=np.uint8)
    labels = [int(k) for k in rng.integers(0, 10, size=16)]
    _write_batch_file(tmp_path, {b"batch_label": b"test", b"labels": labels, b"data": data, b"filenames": [b"x"] * 16})
    batches = walkthrough.cifar_batches(tmp_path, 3, SEED)
    chosen = np.random.default_rng(SEED).permutation(16)[:12]
    assert len(batches) == 3
    images = np.concatenate([b.images for b in batches])
    np.testing.assert_array_equal(images, walkthrough.normalise(data[chosen].reshape(-1, 3, 32, 32)))
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), np.asarray(labels)[chosen])
    assert images.min() >= -1.0 and images.max() <= 1.0
    ledger.record_example()


@pytest.mark.parametrize(
    "problem",
    ["no directory", "no data_batch_1", "not a pickle", "a pickle naming other code", "float data", "too few images"],
)
def test_cifar_batches_refuse_what_is_not_a_cifar_batch_with_a_clear_message(tmp_path, problem):
    """cifar_batches refuses a missing directory or file, an unreadable or foreign pickle, wrongly typed data and too
    few images, with a CifarDataError that says what was expected."""
    directory = tmp_path / "cifar-10-batches-py"
    if problem == "no data_batch_1":
        directory.mkdir()
    elif problem == "not a pickle":
        directory.mkdir()
        (directory / "data_batch_1").write_bytes(b"these bytes are no pickle")
    elif problem == "a pickle naming other code":
        _write_batch_file(directory, OrderedDict(data=1))
    elif problem == "float data":
        _write_batch_file(directory, {b"data": np.zeros((8, 3072)), b"labels": [0] * 8})
    elif problem == "too few images":
        _write_batch_file(directory, {b"data": np.zeros((8, 3072), dtype=np.uint8), b"labels": [0] * 8})
    expected = {
        "no directory": "is not a directory",
        "no data_batch_1": "has no data_batch_1",
        "not a pickle": "could not be read as a CIFAR-10 batch file",
        "a pickle naming other code": "collections.OrderedDict, which a CIFAR-10 batch file never holds",
        "float data": "should be uint8 N x 3072",
        "too few images": "holds 8 images, fewer than 5 batches of 4",
    }[problem]
    with pytest.raises(walkthrough.CifarDataError, match=expected):
        walkthrough.cifar_batches(directory, STEPS, SEED)
    ledger.record_example()


def test_the_example_reports_its_findings_in_sentences(capsys, tmp_path):
    """python -m examples.cifar10_walkthrough prints the article's chain and the trajectories' agreement within the
    bound and exits 0, and a --cifar-dir that is not a CIFAR-10 directory is a usage error naming the problem."""
    assert walkthrough.main(["--steps", "1", "--seed", str(SEED)]) == 0
    printed = capsys.readouterr().out
    assert "softmax rows sum to" in printed and "within the derived bound" in printed
    with pytest.raises(SystemExit) as exit_info:
        walkthrough.main(["--cifar-dir", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "is not a directory" in capsys.readouterr().err
    ledger.record_example()


def test_the_walkthrough_holds_on_real_cifar10_images():
    """On real CIFAR-10 images (data_batch_1 under $LOSS_PARITY_CIFAR_DIR), softmax rows sum to 1 within the derived
    bound, both NLL compositions equal CrossEntropyLoss, and the two trajectories agree step by step and stay within
    the derived bound."""
    directory = os.environ.get(CIFAR_DIR_VARIABLE)
    if not directory:
        pytest.skip(
            f"set {CIFAR_DIR_VARIABLE} to an extracted cifar-10-batches-py directory (CIFAR-10's python version) "
            "to run the walkthrough on real images"
        )
    run = Run(walkthrough.cifar_batches(directory, STEPS, SEED))
    source, repro = f"real CIFAR-10 images from {directory}", f"{REPRODUCE} --cifar-dir {directory}"
    for dtype in (FLOAT32, FLOAT64):
        chain = walkthrough.article_chain(walkthrough.build_net(SEED, dtype.torch), run.batches[0])
        check_softmax_rows(chain, dtype, source, repro)
        check_softmax_log_nll(chain, run.batches[0], dtype)
        check_log_softmax_nll(chain, run.batches[0], dtype)
    check_teacher_forced(run)
    comparison = walkthrough.compare_trajectories(run.analyses, run.torch_run, run.reference_run)
    _record_trajectories(run, comparison)
    check_trajectories(comparison, source, repro)
