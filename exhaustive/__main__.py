"""python -m exhaustive [--out DIR] [--workers N] [--no-resume] [--slice N [--seed S]] [--sweeps A,B]
[--impl LOSS=module:attribute | ADAPTER] [--device D] [--chunk-bits B] [--chunks I,J,...]

Every float32 input of every sweep (exhaustive/sweeps.py), or with --slice N a random N of them, on torch's float32
kernels (or the --impl and --device named); writes DIR/report.json, DIR/report.md and DIR/ulp_error.png (default
DIR: evidence/exhaustive). A full run keeps each chunk's figures in DIR/chunks and resumes from them unless
--no-resume. Exits 1 if any result lies outside the tolerance model's bound.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from verification.implementations import adapter_specs

from . import engine, report
from .sweeps import select


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m exhaustive", description=__doc__.split("\n\n")[1])
    parser.add_argument("--out", default=os.path.join(os.environ.get("LOSS_PARITY_EVIDENCE", "evidence"), "exhaustive"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-resume", dest="resume", action="store_false")
    parser.add_argument("--slice", type=int, default=None, help="a random slice of N inputs per domain, in-process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweeps", default=None, help="comma-separated sweep or kernel names (default: all)")
    parser.add_argument("--impl", action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk-bits", type=int, default=engine.CHUNK_BITS)
    parser.add_argument("--chunks", default=None, help="only these chunk indices (comma-separated)")
    options = parser.parse_args(arguments)
    sweeps = select(options.sweeps.split(",") if options.sweeps else None)
    specs = tuple(spec for given in options.impl for spec in adapter_specs(given))
    started = time.perf_counter()
    if options.slice:
        torch.set_num_threads(1)
        tallies = engine.run_slice(sweeps, options.slice, options.seed, engine.implementations(specs), options.device)
        run = {"mode": f"random slice of {options.slice:,} inputs per domain (seed {options.seed})",
               "wall_seconds": time.perf_counter() - started, "workers": 1}  # fmt: skip
    else:
        only = [int(i) for i in options.chunks.split(",")] if options.chunks else None
        result = engine.run(
            options.out,
            sweeps,
            workers=options.workers,
            resume=options.resume,
            chunk_bits=options.chunk_bits,
            impl_specs=specs,
            device=options.device,
            only=only,
        )
        tallies = result.tallies
        complete = result.chunks_done == result.chunks_total
        run = {
            "mode": ("every input" if complete and only is None else
                     f"{result.chunks_done} of {result.chunks_total} chunks"),
            "wall_seconds": result.wall,
            "workers": options.workers,
            "chunks": result.chunks_total,
            "chunks_computed_by_this_run": result.computed,
            "chunk_inputs": 1 << options.chunk_bits,
            "worker_seconds": result.timings.__dict__,
            "inputs": result.inputs,
            # Per worker (one core each): every input through all of its domain's sweeps; the time in torch's
            # kernels; the time forming the correctly rounded reference (where no closed form gives it).
            "inputs_per_second_per_worker": {
                name: result.inputs / seconds if seconds else 0.0
                for name, seconds in (("whole_check", result.timings.total), ("torch", result.timings.torch),
                                      ("reference", result.timings.reference))
            },
        }  # fmt: skip
    run |= {"device": options.device, "impls": list(specs)}
    written = report.write(options.out, sweeps, tallies, run)
    print(report.table(written))
    print(f"report: {os.path.join(options.out, 'report.md')}; {run['wall_seconds']:.1f} s", file=sys.stderr)
    return 0 if written["every_result_within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
