"""The exhaustive sweeps' speed, measured on one chunk of 2^22 consecutive float32 inputs from 1.0 (where every
sweep needs the reference), in this process on one core: inputs per second for torch's kernels, for the correctly
rounded reference and for the whole check, against what NumPy's float64 ufuncs and memory allow on the same chunk
(a pass of np.log1p(np.exp(x)), and a copy)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypedDict

import numpy as np
import torch

from . import engine, floats, sweeps
from .floats import F32, F64


class Throughput(TypedDict):
    """``throughput``'s record: inputs per second, rounded to integers."""

    chunk: str
    sweeps: int
    torch_per_kernel: dict[str, int]
    torch_all_kernels: int
    reference_per_function: dict[str, int]
    reference_all_functions: int
    whole_check: int
    limit_log1p_exp_float64: int
    limit_float64_copy: int


def _best(call: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _run_kernel(kernel: sweeps.Kernel, x: F32) -> tuple[F32, ...]:
    return kernel.run(x, engine._torch(kernel), "cpu")


def _correctly_rounded(exact: sweeps.Exact, x64: F64, x: F32) -> tuple[F32, int]:
    return floats.correctly_rounded(exact.reference(x64), x, exact.mp)


def throughput(chunk_bits: int = engine.CHUNK_BITS, start: float = 1.0) -> Throughput:
    """Inputs per second on one core (the fastest of 3 passes over the chunk)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        low = floats.key_of(start)
        keys = np.arange(low, low + (1 << chunk_bits), dtype=np.uint64).astype(np.uint32)
        x = floats.bits_of_keys(keys).view(np.float32)
        x64 = x.astype(np.float64)
        n = x.size
        logit = tuple(s for s in sweeps.SWEEPS if s.domain is sweeps.LOGITS)
        kernels = {s.kernel.name: s.kernel for s in logit}
        torch_rates = {name: n / _best(functools.partial(_run_kernel, kernel, x)) for name, kernel in kernels.items()}
        all_kernels = n / _best(lambda: [k.run(x, engine._torch(k), "cpu") for k in kernels.values()])
        exacts = {s.exact.name: s.exact for s in logit}
        reference_rates = {
            name: n / _best(functools.partial(_correctly_rounded, exact, x64, x)) for name, exact in exacts.items()
        }
        all_references = n / _best(
            lambda: [floats.correctly_rounded(e.reference(x64), x, e.mp) for e in exacts.values()]
        )
        whole = n / _best(lambda: engine.check_keys(keys, logit, {}, "cpu"), repeats=2)
        ufunc = n / _best(lambda: np.log1p(np.exp(x64)))
        copy = np.empty_like(x64)
        memory = n / _best(lambda: np.copyto(copy, x64))
    finally:
        torch.set_num_threads(threads)
    return {
        "chunk": f"2^{chunk_bits} float32 inputs from {start}",
        "sweeps": len(logit),
        "torch_per_kernel": {k: round(v) for k, v in torch_rates.items()},
        "torch_all_kernels": round(all_kernels),
        "reference_per_function": {k: round(v) for k, v in reference_rates.items()},
        "reference_all_functions": round(all_references),
        "whole_check": round(whole),
        "limit_log1p_exp_float64": round(ufunc),
        "limit_float64_copy": round(memory),
    }


def markdown(record: Throughput) -> str:
    rows = [
        f"Exhaustive sweeps, inputs per second on one core ({record['chunk']}; every input through all "
        f"{record['sweeps']} logit sweeps):\n",
        "| what | inputs / s |",
        "| --- | ---: |",
    ]
    rows += [f"| torch: {name} | {rate:,} |" for name, rate in record["torch_per_kernel"].items()]
    rows.append(f"| torch: every kernel | {record['torch_all_kernels']:,} |")
    rows += [
        f"| correctly rounded reference: {name} | {rate:,} |" for name, rate in record["reference_per_function"].items()
    ]
    rows.append(f"| correctly rounded reference: every function | {record['reference_all_functions']:,} |")
    rows.append(f"| whole check (torch, reference, classification, bound) | {record['whole_check']:,} |")
    rows.append(f"| limit: np.log1p(np.exp(x)) in float64 | {record['limit_log1p_exp_float64']:,} |")
    rows.append(f"| limit: a float64 copy (memory bandwidth) | {record['limit_float64_copy']:,} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(throughput()))
