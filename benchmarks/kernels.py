"""One decode row through each linear kernel, as weight bytes read per second, against this
machine's memory read bandwidth and PyTorch's own kernels in the same run.

    .venv/bin/python -m benchmarks.kernels            # K=2048, N=8192 (a Llama-3.2-1B MLP matrix)
    .venv/bin/python -m benchmarks.kernels --k 8192 --n 2048 --repeats 7

Each kernel runs back to back ``--calls`` times per repeat, cycling through copies of the matrix
that together hold twice the last-level cache (or ``--copies`` of them), so weights come from memory as in a real
decode; the median over repeats is reported.
The bandwidth line is ``ondol bench``'s: a 1 GiB float32 reduction on one thread per physical core.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time
from pathlib import Path

import torch

from ondol.bench.run import read_bandwidth
from ondol.quant.formats import quantize
from ondol.quant.kernels import CompiledKernels, TorchKernels
from ondol.quant.modules import KernelLinear, QuantLinear


def cycle(fns):
    """One callable that calls each of ``fns`` in turn."""
    it = itertools.cycle(fns)
    return lambda: next(it)()


def timed(fn, calls: int, repeats: int) -> float:
    """Median seconds per call."""
    fn()
    per_call = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t) / calls)
    return statistics.median(per_call)


def last_level_cache_bytes() -> int:
    """The largest CPU cache Linux reports (a cloud VM's L3 can be hundreds of MB), or 32 MB."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * unit)
    return max(sizes, default=32 << 20)


def copies_for(nbytes: int, asked: int | None) -> int:
    return asked or max(8, -(-2 * last_level_cache_bytes() // nbytes))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=2048)
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--copies", type=int, help="copies of each matrix cycled through (default: twice the last-level "
                   "cache, at least 8)")
    args = p.parse_args()
    torch.manual_seed(0)
    w = torch.randn(args.n, args.k) * 0.02
    x = torch.randn(args.rows, args.k).to(torch.bfloat16)
    compiled, native = CompiledKernels(), TorchKernels()
    cases = {}
    dense = torch.nn.Linear(args.k, args.n, bias=False).to(torch.bfloat16)
    dense.weight.data.copy_(w)
    denses = [dense] + [copy.deepcopy(dense) for _ in range(copies_for(dense.weight.nbytes, args.copies) - 1)]
    cases["bf16 torch F.linear"] = (cycle([lambda d=d: torch.nn.functional.linear(x, d.weight) for d in denses]),
                                    dense.weight.nbytes)
    for d in denses:
        d.__class__ = KernelLinear
        d.kernels = compiled
    cases["bf16 ondol"] = (cycle([lambda d=d: d(x) for d in denses]), dense.weight.nbytes)
    for bits, group, sym in ((8, args.k, True), (8, 32, True), (4, 32, True), (4, 64, False), (4, 128, False)):
        t = quantize(w, bits, group, sym)
        label = f"int{bits} " + ("per row" if group == args.k else f"g{group}") + ("" if sym else " zeros")
        for kernels in (native, compiled):
            ms = [QuantLinear(copy.deepcopy(t)) for _ in range(copies_for(t.nbytes, args.copies))]
            for m in ms:
                m.kernels = kernels
                kernels.prepare(m)
            if kernels is native and ms[0].packed[0] == "dequantize":
                continue  # PyTorch has no kernel for this layout
            cases[f"{label} {kernels.name}"] = (cycle([lambda m=m: m(x) for m in ms]), t.nbytes)
    bandwidth = read_bandwidth()
    print(f"memory read bandwidth: {bandwidth / 1e9:.1f} GB/s; rows={args.rows} K={args.k} N={args.n}; "
          f"last-level cache {last_level_cache_bytes() >> 20} MB")
    print(f"{'kernel':28} {'us/call':>9} {'GB/s':>7} {'of bw':>6}")
    with torch.inference_mode():
        for name, (fn, nbytes) in cases.items():
            s = timed(fn, args.calls, args.repeats)
            print(f"{name:28} {s * 1e6:9.1f} {nbytes / s / 1e9:7.1f} {nbytes / s / bandwidth:6.0%}")


if __name__ == "__main__":
    main()
