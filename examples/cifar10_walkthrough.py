"""The article's CIFAR-10 example (section 实际应用/分类问题), run as evidence:

    python -m examples.cifar10_walkthrough [--steps N] [--seed S] [--cifar-dir PATH]

The article trains a small CNN on CIFAR-10 with nn.CrossEntropyLoss and SGD, batch size 4, 10 classes, and on one
batch shows that the rows of softmax(outputs) sum to 1 and that NLLLoss(log(softmax(outputs))) equals
CrossEntropyLoss(outputs). Its picture of the network is missing; the text follows PyTorch's CIFAR-10 tutorial
("Training a Classifier"), so this uses that tutorial's network, Conv2d(3, 6, 5) -> ReLU -> MaxPool2d(2, 2) ->
Conv2d(6, 16, 5) -> ReLU -> MaxPool2d(2, 2) -> flatten -> Linear(400, 120) -> ReLU -> Linear(120, 84) -> ReLU ->
Linear(84, 10), and its optimiser, SGD(lr=0.001, momentum=0.9).

Then it goes a step further than the article. It trains the same network from the same initial weights on the same
batches twice: once with nn.CrossEntropyLoss, and once with ``ReferenceCrossEntropy``, a loss whose forward is
``reference.cross_entropy`` and whose backward is ``reference.gradients.cross_entropy_grad`` (NumPy, float64). The two
trajectories must end within a bound derived from the suite's tolerance model (``verification/tolerance/``), never
from observed errors. ``tests/test_cifar10_walkthrough.py`` states the derivation and asserts it. Everything runs in
float64, so that the comparison shows the loss and not float32 training noise.

Data: nothing can be downloaded here, so by default the batches are generated from the seed: uint8 pixels and labels
0..9 drawn by a NumPy Generator, normalised as the tutorial does (ToTensor, then Normalize with mean 0.5 and standard
deviation 0.5 per channel, giving [-1, 1]). ``--cifar-dir`` reads real images instead, from an extracted
``cifar-10-batches-py`` directory (CIFAR-10's "python version": ``data_batch_1`` holds ``b'data'``, uint8 N x 3072, and
``b'labels'``), with pickle and NumPy only, no torchvision. Generated images are noise, with nothing to learn in a few
steps: what the example shows is the two losses' agreement, not training progress.

No ``torch.set_num_threads``: the bound does not assume that the two runs compute bit-identically, even at equal
weights (its rounding terms count both runs apart), so it holds whatever the number of threads.
"""

from __future__ import annotations

import argparse
import codecs
import copy
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_input, conv2d_weight
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import reference
from reference.gradients import cross_entropy_grad
from verification import registry
from verification.dtypes import FLOAT64

LEARNING_RATE = 0.001
MOMENTUM = 0.9
BATCH_SIZE = 4
N_CLASSES = 10
DEFAULT_STEPS = 5
# Power iteration's estimate ||H v|| (||v|| = 1) rises towards ||H||_2 from below; the test shows the bound barely
# depends on it (see the module docstring of tests/test_cifar10_walkthrough.py).
HESSIAN_POWER_ITERATIONS = 20
U = FLOAT64.unit_roundoff

LossFunction = Callable[[Tensor, Tensor], Tensor]


class Net(nn.Module):
    """The network of PyTorch's CIFAR-10 tutorial."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def build_net(seed: int, dtype: torch.dtype = torch.float64) -> Net:
    """The tutorial's network with torch's default initialisation under ``seed``.

    It is initialised in float32, torch's default dtype as in the tutorial, and then widened exactly, so the float32
    and float64 networks of one seed hold the same weights. The caller's random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Net()
    return net.to(dtype)


# --- data --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    images: np.ndarray  # (4, 3, 32, 32) float64, normalised to [-1, 1]
    labels: np.ndarray  # (4,) int64, classes 0..9

    def tensors(self, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(self.images).to(dtype), torch.from_numpy(self.labels)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """The tutorial's ToTensor (to [0, 1]) then Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) (to [-1, 1])."""
    return (pixels.astype(np.float64) / 255.0 - 0.5) / 0.5


def synthetic_batches(steps: int, seed: int) -> list[Batch]:
    """``steps`` CIFAR-shaped batches drawn from ``seed``: random uint8 pixels and labels, normalised like real ones.

    Each batch is drawn in turn, so the first k batches are the same whatever ``steps`` is.
    """
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps):
        pixels = rng.integers(0, 256, size=(BATCH_SIZE, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, N_CLASSES, size=BATCH_SIZE).astype(np.int64)
        batches.append(Batch(normalise(pixels), labels))
    return batches


class CifarDataError(ValueError):
    """The directory given is not a readable, extracted CIFAR-10 python version."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickling calls whatever a file names, so only what CIFAR-10's batch files need is let through: NumPy's array
    reconstruction (and the codec Python 3 uses to pickle bytes at protocol 2)."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy", "_reconstruct"): np.zeros(0).__reduce__()[0],  # NumPy's own, under whichever module path it lives
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".")[0]
        if (root, name) in self.ALLOWED:
            return self.ALLOWED[(root, name)]
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch file never holds")


def cifar_batches(directory: str | Path, steps: int, seed: int) -> list[Batch]:
    """``steps`` batches of real images from ``directory``/data_batch_1, chosen by a permutation drawn from ``seed``
    (the tutorial shuffles too)."""
    where = Path(directory)
    expected = "an extracted cifar-10-batches-py directory (CIFAR-10's python version)"
    if not where.is_dir():
        raise CifarDataError(f"{where} is not a directory: point --cifar-dir at {expected}")
    path = where / "data_batch_1"
    if not path.is_file():
        raise CifarDataError(f"{where} has no data_batch_1: point --cifar-dir at {expected}")
    try:
        with path.open("rb") as file:
            content = _ArraysOnlyUnpickler(file, encoding="bytes").load()
    except Exception as error:
        raise CifarDataError(f"{path} could not be read as a CIFAR-10 batch file: {error}") from error
    if not isinstance(content, dict) or b"data" not in content or b"labels" not in content:
        raise CifarDataError(f"{path} is not a CIFAR-10 batch file: it should hold a dict with b'data' and b'labels'")
    data, labels = content[b"data"], np.asarray(content[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        found = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarDataError(f"{path}: b'data' should be uint8 N x 3072 (32 x 32 RGB images), found {found}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise CifarDataError(f"{path}: b'labels' should be {data.shape[0]} integers, one per image")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise CifarDataError(f"{path}: b'labels' should lie in 0..{N_CLASSES - 1}")
    if data.shape[0] < steps * BATCH_SIZE:
        raise CifarDataError(f"{path} holds {data.shape[0]} images, fewer than {steps} batches of {BATCH_SIZE}")
    chosen = np.random.default_rng(seed).permutation(data.shape[0])[: steps * BATCH_SIZE]
    images = normalise(data[chosen].reshape(-1, 3, 32, 32))
    picked = labels[chosen].astype(np.int64)
    return [Batch(images[i : i + BATCH_SIZE], picked[i : i + BATCH_SIZE]) for i in range(0, len(chosen), BATCH_SIZE)]


# --- the article's chain -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleChain:
    outputs: Tensor  # the network's 4 x 10 output
    probabilities: Tensor  # nn.Softmax(dim=1) of it
    row_sums: Tensor  # each row of probabilities summed, in float64 so that the sum's own rounding is float64's
    nll_of_log_probabilities: Tensor  # nn.NLLLoss()(torch.log(probabilities), labels): the article's three steps
    nll_of_log_softmax: Tensor  # nn.NLLLoss()(nn.LogSoftmax(dim=1)(outputs), labels)
    cross_entropy: Tensor  # nn.CrossEntropyLoss()(outputs, labels)


def article_chain(net: Net, batch: Batch) -> ArticleChain:
    """What the article shows on one batch, computed in the network's dtype."""
    images, labels = batch.tensors(next(net.parameters()).dtype)
    with torch.no_grad():
        outputs = net(images)
        probabilities = nn.Softmax(dim=1)(outputs)
        return ArticleChain(
            outputs=outputs,
            probabilities=probabilities,
            row_sums=probabilities.to(torch.float64).sum(dim=1),
            nll_of_log_probabilities=nn.NLLLoss()(torch.log(probabilities), labels),
            nll_of_log_softmax=nn.NLLLoss()(nn.LogSoftmax(dim=1)(outputs), labels),
            cross_entropy=nn.CrossEntropyLoss()(outputs, labels),
        )


# --- the two trajectories ----------------------------------------------------------------------------------------


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


class ReferenceCrossEntropy(torch.autograd.Function):
    """Cross-entropy (the mean over the batch) computed by the float64 NumPy reference, forward and backward."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor) -> Tensor:
        ctx.save_for_backward(logits, labels)
        return torch.as_tensor(reference.cross_entropy(_numpy(logits), labels.numpy()), dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        logits, labels = ctx.saved_tensors
        gradient = cross_entropy_grad(_numpy(logits), labels.numpy(), grad_output=float(grad_output))
        return torch.as_tensor(gradient, dtype=logits.dtype), None


def reference_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    loss: Tensor = ReferenceCrossEntropy.apply(logits, labels)
    return loss


@dataclass(frozen=True)
class Trajectory:
    losses: list[float]  # the loss of each step's batch, before that step's update
    weights: list[Tensor]  # every parameter, flattened: before the first step, then after each step
    buffers: list[Tensor]  # SGD's momentum buffers, flattened, after each step


def run_trajectory(initial: Net, batches: Sequence[Batch], loss: LossFunction) -> Trajectory:
    """One SGD step per batch on a copy of ``initial``, driven by ``loss``."""
    net = copy.deepcopy(initial)
    optimiser = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    dtype = next(net.parameters()).dtype
    losses, weights, buffers = [], [parameters_to_vector(net.parameters()).detach().clone()], []
    for batch in batches:
        images, labels = batch.tensors(dtype)
        optimiser.zero_grad()
        value = loss(net(images), labels)
        value.backward()
        optimiser.step()
        losses.append(value.item())
        weights.append(parameters_to_vector(net.parameters()).detach().clone())
        buffers.append(torch.cat([optimiser.state[p]["momentum_buffer"].reshape(-1) for p in net.parameters()]))
    return Trajectory(losses, weights, buffers)


def net_at(initial: Net, weights: Tensor) -> Net:
    """A copy of ``initial`` holding ``weights`` (flattened, in parameter order)."""
    net = copy.deepcopy(initial)
    vector_to_parameters(weights.clone(), net.parameters())
    return net


# --- the bound (derived in the docstring of tests/test_cifar10_walkthrough.py) ------------------------------------


def _gamma(n: int, unit_roundoff: float = U) -> float:
    """gamma_n = n u / (1 - n u): a sum of n products errs by at most gamma_n times the sum of their magnitudes, in
    any order (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., chapter 3)."""
    return n * unit_roundoff / (1 - n * unit_roundoff)


LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


@dataclass(frozen=True)
class Forward:
    """The network's values on one batch: each layer's outputs (its pre-activations) and the max-pool choices."""

    images: Tensor
    conv1: Tensor
    pool1: Tensor
    choice1: Tensor
    conv2: Tensor
    pool2: Tensor
    choice2: Tensor
    fc1: Tensor
    fc2: Tensor
    fc3: Tensor  # the logits

    def outputs(self, name: str) -> Tensor:
        output: Tensor = getattr(self, name)
        return output

    def inputs(self, name: str) -> Tensor:
        """What the layer multiplies its weights by."""
        return {
            "conv1": self.images,
            "conv2": self.pool1,
            "fc1": self.pool2.flatten(1),
            "fc2": F.relu(self.fc1),
            "fc3": F.relu(self.fc2),
        }[name]


def forward(net: Net, images: Tensor) -> Forward:
    """Net.forward, keeping what it computes on the way (with autograd's graph, unless under no_grad)."""
    conv1 = net.conv1(images)
    pool1, choice1 = F.max_pool2d(F.relu(conv1), 2, 2, return_indices=True)
    conv2 = net.conv2(pool1)
    pool2, choice2 = F.max_pool2d(F.relu(conv2), 2, 2, return_indices=True)
    fc1 = net.fc1(pool2.flatten(1))
    fc2 = net.fc2(F.relu(fc1))
    return Forward(images, conv1, pool1, choice1, conv2, pool2, choice2, fc1, fc2, net.fc3(F.relu(fc2)))


def _layer(layer: nn.Module, inputs: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return F.conv2d(inputs, weight, bias) if isinstance(layer, nn.Conv2d) else F.linear(inputs, weight, bias)


def _routed(values: Tensor, choice: Tensor) -> Tensor:
    """``values`` (N, C, H, W) at the positions a 2 x 2 max-pool chose (``choice``, from return_indices)."""
    return values.flatten(2).gather(2, choice.flatten(2)).reshape(choice.shape)


def injected_rounding(net: Net, fw: Forward, unit_roundoff: float = U) -> dict[str, Tensor]:
    """A bound on the rounding each layer adds to its own outputs: each is a bias plus fan_in products, a sum of
    fan_in + 1 terms, so it errs by at most gamma_(fan_in + 1) times |W||a| + |b|. (Float64 convolution on CPU is
    im2col and a matrix product, never Winograd or FFT, whose errors are not of this form.)"""
    bounds = {}
    with torch.no_grad():
        for name in LAYERS:
            layer = getattr(net, name)
            fan_in = int(layer.weight[0].numel())  # in_features, or in_channels x kh x kw
            magnitude = _layer(layer, fw.inputs(name).abs(), layer.weight.abs(), layer.bias.abs())
            bounds[name] = _gamma(fan_in + 1, unit_roundoff) * magnitude
    return bounds


def _through_jacobian(output: Tensor, lower: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """sum_i |d output[n, j] / d x_i| e_i for every sample n and feature j, over the pairs (x, e) of ``lower``: one
    backward pass per feature, each serving the whole batch (samples do not interact)."""
    flat = output.reshape(output.shape[0], -1)
    result = torch.zeros_like(flat, requires_grad=False)
    for j in range(flat.shape[1]):
        selector = torch.zeros_like(flat)
        selector[:, j] = 1.0
        grads = torch.autograd.grad(flat, [x for x, _ in lower], grad_outputs=selector, retain_graph=True)
        with torch.no_grad():
            result[:, j] = sum((g.abs() * e).flatten(1).sum(1) for g, (_, e) in zip(grads, lower, strict=True))
    return result.reshape(output.shape)


def forward_rounding(net: Net, fw: Forward, unit_roundoff: float = U) -> dict[str, Tensor]:
    """A bound on the rounding error of each layer's outputs, for ``fw`` computed with autograd's graph.

    What a layer adds (``injected_rounding``) reaches a later layer through the exact Jacobian between them, taken in
    absolute value: |d out / d x| e. Passing it up through |W| instead would drop the cancellation between paths and
    overstate the logits' rounding 200- to 300-fold here. This is a bound, to first order, where no ReLU or max-pool
    decision changes (``largest_stable_weight_change`` checks that), since the network is then linear in what the
    layers add. One layer apart, |d out / d x| is |W| itself, which conv2's bound uses."""
    injected = injected_rounding(net, fw, unit_roundoff)
    with torch.no_grad():
        conv2 = F.conv2d(_routed(injected["conv1"], fw.choice1), net.conv2.weight.abs()) + injected["conv2"]
    bounds = {"conv1": injected["conv1"], "conv2": conv2}
    lower = [(fw.conv1, injected["conv1"]), (fw.conv2, injected["conv2"])]
    for name in ("fc1", "fc2", "fc3"):
        bounds[name] = _through_jacobian(fw.outputs(name), lower) + injected[name]
        lower.append((fw.outputs(name), injected[name]))
    return bounds


def input_rounding(fw: Forward, rounding: dict[str, Tensor]) -> dict[str, Tensor]:
    """A bound on the rounding error of each layer's input (the images are exact; ReLU passes an error on unchanged
    or zeroes it; a max-pool passes on its chosen entry's)."""
    return {
        "conv1": torch.zeros_like(fw.images),
        "conv2": _routed(rounding["conv1"], fw.choice1),
        "fc1": _routed(rounding["conv2"], fw.choice2).flatten(1),
        "fc2": rounding["fc1"],
        "fc3": rounding["fc2"],
    }


def _windows(values: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H/2, W/2, 4): the 2 x 2 max-pool windows."""
    n, c, h, w = values.shape
    return values.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


def _weight_sensitivity(net: Net, fw: Forward) -> dict[str, Tensor]:
    """How far each layer's outputs can move per unit of the largest change of any weight or bias: the change
    within the layer (the sum of |a| over its fan-in, plus 1) and what arrives from below through |W|."""
    sensitivity: dict[str, Tensor] = {}
    below: Tensor | None = None
    for name in LAYERS:
        layer = getattr(net, name)
        move = _layer(layer, fw.inputs(name).abs(), torch.ones_like(layer.weight), torch.ones_like(layer.bias))
        if below is not None:
            move = move + _layer(layer, below, layer.weight.abs(), torch.zeros_like(layer.bias))
        sensitivity[name] = move
        below = F.max_pool2d(move, 2, 2) if name.startswith("conv") else move
        below = below.flatten(1) if name == "conv2" else below
    return sensitivity


# The image region each conv layer's output sees: its side, and how far apart neighbouring outputs' regions start.
RECEPTIVE_FIELDS = {"conv1": (5, 1), "conv2": (14, 2)}


def _equivalent_in_window(images: Tensor, name: str) -> Tensor:
    """(N, H/2, W/2, 4, 4): whether two entries of a max-pool window over ``name``'s outputs see identical image
    receptive fields. Such entries are the same function of the weights (a flat patch of sky, say), and a gradient
    routed to either reaches every weight alike, so a tie between them decides nothing."""
    size, stride = RECEPTIVE_FIELDS[name]
    patches = F.unfold(images, size, stride=stride)
    side = (images.shape[2] - size) // stride + 1
    windows = _windows(patches.reshape(images.shape[0], -1, side, side))
    return (windows.unsqueeze(-1) == windows.unsqueeze(-2)).all(dim=1)


def largest_stable_weight_change(net: Net, fw: Forward, rounding: dict[str, Tensor]) -> float:
    """The largest change of every weight (each by at most this much) under which no ReLU and no max-pool decision can
    differ between the two runs, both runs' forward rounding (``rounding``) included; negative if rounding alone could
    flip one. Where no decision changes, the network is one smooth (multilinear) function of its weights between the
    two runs: the Hessian term of the bound needs that."""
    with torch.no_grad():
        sensitivity = _weight_sensitivity(net, fw)
        limits = []
        for name in ("conv1", "conv2", "fc1", "fc2"):
            # Both runs' rounding and the weights' change must not carry a pre-activation across 0.
            value = fw.outputs(name)
            limits.append(((value.abs() - 2 * rounding[name]) / sensitivity[name]).min())
        for name in ("conv1", "conv2"):
            outputs = _windows(F.relu(fw.outputs(name)))
            leader, chosen = outputs.max(dim=-1)
            equivalent = _equivalent_in_window(fw.images, name).unsqueeze(1).expand(*outputs.shape, 4)
            like_leader = equivalent.gather(-2, chosen[..., None, None].expand(*chosen.shape, 1, 4)).squeeze(-2)
            runner_up = outputs.masked_fill(like_leader, -torch.inf).amax(-1)
            move = _windows(rounding[name]).amax(-1)
            per_unit = _windows(sensitivity[name]).amax(-1)
            # A window whose largest output is positive must keep its leader (or an entry equivalent to it), though
            # both values move, each by both runs' rounding and the weights' change. A window of zeros holds only
            # negative pre-activations (which stay negative, by the ReLU limit): the gradient is masked to 0 there.
            gap_limit = (leader - runner_up - 4 * move) / (2 * per_unit)
            limits.append(torch.where(leader > 0, gap_limit, torch.inf).min())
        return float(torch.stack(limits).min())


def backward_with_rounding(
    net: Net,
    fw: Forward,
    upstream: Tensor,
    layer_input_rounding: dict[str, Tensor] | None = None,
    unit_roundoff: float = U,
) -> tuple[Tensor, Tensor, Tensor]:
    """The network's backward pass written out, from the logits' gradient ``upstream`` to every parameter, with the
    ReLU masks and max-pool choices of ``fw``, as a running error analysis (the tolerance model's method): each
    quantity carries its value and a bound on the error a float64 backward pass makes computing it.

    Each stage is a sum of products: it adds gamma_n times the sum of the magnitudes it sums (n its reduction length)
    and passes the error it received on through |W| or |a|. The stages: each layer's input gradient (a sum over its
    outputs: 10 for fc3, 84 for fc2, 120 for fc1, 16 channels x 5 x 5 kernel positions = 400 for conv2), and each
    layer's weight and bias gradients (a sum over the batch, times a convolution's output positions: 4 for the linear
    layers, 4 x 10 x 10 for conv2, 4 x 28 x 28 for conv1). ReLU masks and max-pool routing are exact.

    ``layer_input_rounding`` bounds the rounding of each layer's input, which its weight gradient multiplies; what
    that adds is returned apart. Returns, flattened in parameter order: the gradient, the bound on the backward
    pass's own rounding, and the bound on what the inputs' rounding adds.
    """
    n = upstream.shape[0]
    results: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    def parameter_gradients(name: str, value: Tensor, error: Tensor) -> None:
        layer, a = getattr(net, name), fw.inputs(name)
        a_rounding = layer_input_rounding[name] if layer_input_rounding is not None else torch.zeros_like(a)
        if isinstance(layer, nn.Conv2d):
            dims, length = (0, 2, 3), n * value.shape[2] * value.shape[3]

            def products(inputs: Tensor, grads: Tensor) -> Tensor:
                return conv2d_weight(inputs, layer.weight.shape, grads)
        else:
            dims, length = (0,), n

            def products(inputs: Tensor, grads: Tensor) -> Tensor:
                return grads.T @ inputs

        gamma = _gamma(length, unit_roundoff)
        weight_rounding = products(a.abs(), error) + gamma * products(a.abs(), value.abs())
        bias_rounding = error.sum(dims) + gamma * value.abs().sum(dims)
        from_inputs = products(a_rounding, value.abs() + error)
        results[name] = (
            torch.cat([products(a, value).reshape(-1), value.sum(dims)]),
            torch.cat([weight_rounding.reshape(-1), bias_rounding]),
            torch.cat([from_inputs.reshape(-1), torch.zeros_like(bias_rounding)]),
        )

    def input_gradient(name: str, value: Tensor, error: Tensor) -> tuple[Tensor, Tensor]:
        weight = getattr(net, name).weight
        if name == "conv2":
            length = weight.shape[0] * weight.shape[2] * weight.shape[3]

            def products(w: Tensor, grads: Tensor) -> Tensor:
                return conv2d_input(fw.pool1.shape, w, grads)
        else:
            length = weight.shape[0]

            def products(w: Tensor, grads: Tensor) -> Tensor:
                return grads @ w

        rounding = products(weight.abs(), error) + _gamma(length, unit_roundoff) * products(weight.abs(), value.abs())
        return products(weight, value), rounding

    def down_through(mask_of: Tensor, choice: Tensor | None, value: Tensor, error: Tensor) -> tuple[Tensor, Tensor]:
        """Back through a max-pool (to the chosen entry) and a ReLU (masked): both exact."""
        mask = mask_of > 0
        if choice is None:
            return value * mask, error * mask
        size = list(mask_of.shape[2:])

        def unpooled(t: Tensor) -> Tensor:
            return F.max_unpool2d(t, choice, (2, 2), (2, 2), output_size=size) * mask

        return unpooled(value), unpooled(error)

    with torch.no_grad():
        value, error = upstream, torch.zeros_like(upstream)
        for name, below, choice in (("fc3", "fc2", None), ("fc2", "fc1", None), ("fc1", "conv2", fw.choice2)):
            parameter_gradients(name, value, error)
            value, error = input_gradient(name, value, error)
            if choice is not None:
                value, error = value.reshape(fw.pool2.shape), error.reshape(fw.pool2.shape)
            value, error = down_through(fw.outputs(below), choice, value, error)
        parameter_gradients("conv2", value, error)
        value, error = down_through(fw.conv1, fw.choice1, *input_gradient("conv2", value, error))
        parameter_gradients("conv1", value, error)
    gradient, rounding, from_inputs = (torch.cat([results[name][i] for name in LAYERS]) for i in range(3))
    return gradient, rounding, from_inputs


def logit_jacobian(net: Net, fw: Forward) -> Tensor:
    """d(logits)/d(parameters), for ``fw`` computed with autograd's graph: one row per logit (4 x 10 = 40 backward
    passes), one column per parameter."""
    params = list(net.parameters())
    logits = fw.fc3.reshape(-1)
    rows = []
    for k in range(logits.numel()):
        row = torch.autograd.grad(logits[k], params, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in row]))
    return torch.stack(rows)


def hessian_norm_estimate(net: Net, batch: Batch, iterations: int = HESSIAN_POWER_ITERATIONS, seed: int = 0) -> float:
    """||H v|| after power iteration with Hessian-vector products (double backward) on the cross-entropy of
    ``batch``: at most ||H||_2, since ||v|| = 1, and approaching it."""
    params = list(net.parameters())
    images, labels = batch.tensors(torch.float64)
    gradient = torch.autograd.grad(F.cross_entropy(net(images), labels), params, create_graph=True)
    flat_gradient = torch.cat([g.reshape(-1) for g in gradient])
    v = torch.randn(flat_gradient.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    v = v / v.norm()
    estimate = 0.0
    for _ in range(iterations):
        hv = torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat_gradient @ v, params, retain_graph=True)])
        estimate = float(hv.norm())
        v = hv / estimate
    return estimate


@dataclass(frozen=True)
class StepAnalysis:
    """The bound's terms for one step, at the torch-driven trajectory's weights before that step. The gradient terms
    are elementwise bounds over every parameter (flattened) and cover both runs together."""

    logits: np.ndarray
    labels: np.ndarray
    logit_gradient_bound: np.ndarray  # B_t = registry.gradient_error_bound("cross_entropy", float64, ...)
    propagated_logit_gradient_bound: Tensor  # (a) |J_t|^T B_t
    backward_rounding: Tensor  # (b) both runs' backward passes
    forward_rounding: Tensor  # (e) both runs' forward passes, through the loss and through the weight gradients
    hessian_norm: float  # power iteration's estimate of ||H_t||_2
    largest_stable_weight_change: float


def analyse_step(net: Net, batch: Batch, seed: int = 0) -> StepAnalysis:
    """The per-step terms of the bound, for ``net`` holding the weights before the step, on ``batch``."""
    images, labels = batch.tensors(torch.float64)
    fw = forward(net, images)
    logits = fw.fc3.detach().clone().requires_grad_(True)
    F.cross_entropy(logits, labels).backward()
    logit_gradient = logits.grad.detach() if logits.grad is not None else torch.zeros_like(logits)
    logit_np = _numpy(fw.fc3)
    bound = registry.gradient_error_bound("cross_entropy", FLOAT64, logit_np, batch.labels, np.asarray(1.0))
    jacobian = logit_jacobian(net, fw).abs()
    rounding = forward_rounding(net, fw)
    hessian_norm = hessian_norm_estimate(net, batch, seed=seed)
    with torch.no_grad():
        # The logits' rounding e moves the exact logit gradient (softmax - one_hot) / N by at most
        # (s_k e_k + s_k sum_j s_j e_j) / N: the softmax Jacobian's entries are s_k ([k = j] - s_j).
        s, e = torch.softmax(fw.fc3, 1), rounding["fc3"]
        moved = (s * e + s * (s * e).sum(1, keepdim=True)) / images.shape[0]
        _, backward_term, from_inputs = backward_with_rounding(net, fw, logit_gradient, input_rounding(fw, rounding))
        return StepAnalysis(
            logits=logit_np,
            labels=batch.labels,
            logit_gradient_bound=bound,
            propagated_logit_gradient_bound=torch.from_numpy(bound).reshape(-1) @ jacobian,
            backward_rounding=2 * backward_term,
            forward_rounding=2 * (moved.reshape(-1) @ jacobian + from_inputs),
            hessian_norm=hessian_norm,
            largest_stable_weight_change=largest_stable_weight_change(net, fw, rounding),
        )


def analyse_trajectory(initial: Net, batches: Sequence[Batch], torch_run: Trajectory) -> list[StepAnalysis]:
    steps = enumerate(zip(torch_run.weights[:-1], batches, strict=True))
    return [analyse_step(net_at(initial, weights), batch, seed=t) for t, (weights, batch) in steps]


@dataclass(frozen=True)
class TrajectoryBound:
    weights: list[float]  # a bound on ||W_reference - W_torch||_2 before the first step and after each step
    buffers: list[float]  # a bound on ||v_reference - v_torch||_2 after each step
    hessian_feedback: float  # lr (1 + momentum) max_t ||H_t|| N
    terms: dict[str, float]  # the 2-norm of each injected term, summed over the steps
    stability_margin: float  # min over steps of largest_stable_weight_change / the weights' bound (> 1 needed)


def trajectory_bound(
    analyses: Sequence[StepAnalysis], torch_run: Trajectory, reference_run: Trajectory, hessian_scale: float = 1.0
) -> TrajectoryBound:
    """The bound derived in tests/test_cifar10_walkthrough.py's docstring, step by step, in the 2-norm over all
    parameters. ``hessian_scale`` multiplies every ||H_t|| estimate (to show how little the bound depends on them)."""
    weight_bound, buffer_bound = 0.0, 0.0
    weights, buffers, margins = [0.0], [], []
    terms = dict.fromkeys(("a", "b", "e", "momentum rounding", "update rounding"), 0.0)
    previous = torch.zeros_like(torch_run.weights[0])
    for t, step in enumerate(analyses):
        stable = step.largest_stable_weight_change
        if stable <= 0:  # rounding alone could flip a decision
            margins.append(0.0)
        elif weight_bound > 0:
            margins.append(stable / weight_bound)
        new = torch_run.buffers[t].abs() + reference_run.buffers[t].abs()
        injected = {
            "a": step.propagated_logit_gradient_bound,
            "b": step.backward_rounding,
            "e": step.forward_rounding,
            # At the first step torch clones the gradient into the buffer (exact); later m v, then + g: two roundings.
            "momentum rounding": U * (MOMENTUM * previous + new) if t else torch.zeros_like(new),
        }
        # W + (-lr) v: the product and the sum may each round (once, if fused).
        update = torch_run.weights[t + 1].abs() + reference_run.weights[t + 1].abs()
        update_rounding = float((U * (update + LEARNING_RATE * new)).norm())
        for name, term in injected.items():
            terms[name] += float(term.norm())
        terms["update rounding"] += update_rounding
        gradient_terms = float(torch.stack(list(injected.values())).sum(0).norm())
        buffer_bound = MOMENTUM * buffer_bound + hessian_scale * step.hessian_norm * weight_bound + gradient_terms
        weight_bound = weight_bound + LEARNING_RATE * buffer_bound + update_rounding
        weights.append(weight_bound)
        buffers.append(buffer_bound)
        previous = new
    largest_hessian = max((step.hessian_norm for step in analyses), default=0.0)
    feedback = LEARNING_RATE * (1 + MOMENTUM) * hessian_scale * largest_hessian * len(analyses)
    return TrajectoryBound(weights, buffers, feedback, terms, float(min(margins, default=np.inf)))


@dataclass(frozen=True)
class TrajectoryComparison:
    weight_differences: list[float]  # ||W_reference - W_torch||_2 before the first step and after each step
    largest_weight_difference: float  # max |W_reference - W_torch| over all parameters, after the last step
    bound: TrajectoryBound


def compare_trajectories(
    analyses: Sequence[StepAnalysis], torch_run: Trajectory, reference_run: Trajectory
) -> TrajectoryComparison:
    differences = [float((r - w).norm()) for w, r in zip(torch_run.weights, reference_run.weights, strict=True)]
    largest = float((reference_run.weights[-1] - torch_run.weights[-1]).abs().max())
    return TrajectoryComparison(differences, largest, trajectory_bound(analyses, torch_run, reference_run))


# --- the command line --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="SGD steps per trajectory (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the data (default 0)")
    parser.add_argument("--cifar-dir", help="an extracted cifar-10-batches-py directory, to use real images")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    try:
        batches = (
            cifar_batches(args.cifar_dir, args.steps, args.seed)
            if args.cifar_dir
            else synthetic_batches(args.steps, args.seed)
        )
    except CifarDataError as error:
        parser.error(str(error))
    source = (
        f"real CIFAR-10 images from {args.cifar_dir}" if args.cifar_dir else f"images generated from seed {args.seed}"
    )
    print(f"The tutorial's network, initialised from seed {args.seed}, on {args.steps} batches of 4 {source}.\n")

    for dtype in (torch.float32, torch.float64):
        chain = article_chain(build_net(args.seed, dtype), batches[0])
        name = str(dtype).removeprefix("torch.")
        sums = ", ".join(f"{float(s):.17g}" for s in chain.row_sums)
        print(f"In {name}, the network's output is a 4 x 10 matrix whose softmax rows sum to {sums}.")
        print(
            f"NLLLoss(log(softmax(outputs))) is {float(chain.nll_of_log_probabilities):.17g}, "
            f"NLLLoss(LogSoftmax(outputs)) is {float(chain.nll_of_log_softmax):.17g} and "
            f"CrossEntropyLoss(outputs) is {float(chain.cross_entropy):.17g}.\n"
        )

    initial = build_net(args.seed)
    torch_run = run_trajectory(initial, batches, nn.CrossEntropyLoss())
    reference_run = run_trajectory(initial, batches, reference_cross_entropy)
    comparison = compare_trajectories(analyse_trajectory(initial, batches, torch_run), torch_run, reference_run)
    print("Training in float64 with SGD(lr=0.001, momentum=0.9), the loss at each step was:")
    for t, (a, b) in enumerate(zip(torch_run.losses, reference_run.losses, strict=True)):
        print(f"  step {t + 1}: {a:.17g} with nn.CrossEntropyLoss, {b:.17g} with the reference's loss")
    bound = comparison.bound
    steps_within = zip(comparison.weight_differences, bound.weights, strict=True)
    met = all(difference <= limit for difference, limit in steps_within) and bound.stability_margin > 1
    print(
        f"\nAfter {args.steps} steps the largest difference between corresponding weights of the two networks is "
        f"{comparison.largest_weight_difference:.3g}; the 2-norm of all {torch_run.weights[-1].numel()} differences "
        f"is {comparison.weight_differences[-1]:.3g}, {'within' if met else 'NOT within'} the derived bound "
        f"{bound.weights[-1]:.3g} on it."
    )
    print(
        f"The Hessian's share of the bound is measured by lr (1 + momentum) max ||H|| N = {bound.hessian_feedback:.3g} "
        f"(the test requires it below 0.1). A ReLU or max-pool decision could differ between the runs only if the "
        f"weights moved {bound.stability_margin:.3g} times the bound (the bound needs more than 1)."
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
