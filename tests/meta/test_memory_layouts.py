"""How a large case's input lies in memory (``cases.MEMORY``): each layout hands torch the same values with the strides
it promises, an expanded input must repeat along its first axis, the minimiser keeps the layout, and a reproducer
rebuilds it."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from verification.cases import MEMORY, Case, CaseBatch, laid_out, to_torch
from verification.dtypes import FLOAT32
from verification.minimise import minimised
from verification.reproducer import snippet

STRIDES = {"contiguous": (12, 4, 1), "transposed": (1, 2, 6), "strided": (24, 8, 2), "expanded": (0, 4, 1)}


@pytest.mark.parametrize("memory", MEMORY)
def test_each_layout_keeps_the_values_and_has_its_strides(memory):
    values = torch.arange(24.0).reshape(2, 3, 4)
    if memory == "expanded":
        values = values[:1].expand(2, 3, 4).contiguous()
    tensor = laid_out(values, memory)
    assert torch.equal(tensor, values)
    assert tensor.stride() == STRIDES[memory]
    assert tensor.is_contiguous() == (memory == "contiguous")


def test_an_expanded_input_must_repeat_its_first_entry():
    with pytest.raises(ValueError, match="repeat one entry"):
        laid_out(torch.arange(6.0).reshape(2, 3), "expanded")
    nan_rows = torch.tensor([[np.nan, 1.0], [np.nan, 1.0]])
    assert torch.equal(laid_out(nan_rows, "expanded").isnan(), nan_rows.isnan())


def test_a_batch_laid_out_expanded_repeats_each_input_s_first_entry_and_its_cases_keep_the_layout():
    rng = np.random.default_rng(0)
    batch = CaseBatch("cross_entropy", rng.normal(size=(2, 5, 3)), rng.integers(0, 3, size=(2, 5)), {})
    expanded = batch.laid_out("expanded")
    for k in range(2):
        case = expanded.case(k)
        assert case.memory == "expanded"
        assert np.array_equal(case.input, np.repeat(batch.input[k, :1], 5, axis=0))
        input, _, _ = to_torch(case, FLOAT32, "cpu")
        assert input.stride()[0] == 0


def test_the_minimiser_keeps_the_layout():
    case = Case("binary_cross_entropy_with_logits", np.zeros((64, 8)), np.zeros((64, 8)), {}, "transposed")
    tried = []

    def fails(smaller: Case) -> bool:
        tried.append(smaller)
        return smaller.input.size > 16

    assert minimised(case, fails).memory == "transposed"
    assert tried and all(smaller.memory == "transposed" for smaller in tried)


@pytest.mark.parametrize("memory", ["transposed", "strided", "expanded"])
def test_a_reproducer_rebuilds_the_layout(memory):
    batch = CaseBatch.of(Case("nll_loss", -np.arange(1.0, 13.0).reshape(4, 3), np.array([0, 1, 2, 0]), {}))
    case = batch.laid_out(memory).case(0)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(snippet(case, FLOAT32, "cpu", "functional"), "<reproducer>", "exec"), namespace)
    assert not namespace["input"].is_contiguous()
    assert torch.equal(namespace["input"], torch.as_tensor(case.input, dtype=torch.float32))
