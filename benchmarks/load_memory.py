"""Peak memory while loading a checkpoint, against the model's size in the runtime dtype.

    .venv/bin/python -m benchmarks.load_memory            # ~1.1 GB bf16 model, writes docs/loading-memory.md
    .venv/bin/python -m benchmarks.load_memory --small    # a quick run on a ~50 MB model

Each case loads in a fresh process, runs one forward pass (memory-mapped weights are only read when
first used) and reads the kernel's peak resident set (VmHWM);
"over baseline" subtracts the process's resident set just before loading (Python + torch + ondol).
Cases: bf16 file as bf16 (zero copy), fp32 file as bf16 (convert + release), fp32 as fp32,
and a sharded bf16 checkpoint.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

CASES = {  # name -> (stored dtype, runtime dtype, shard bytes)
    "bf16 file -> bf16": (torch.bfloat16, "bfloat16", None),
    "fp32 file -> bf16": (torch.float32, "bfloat16", None),
    "fp32 file -> fp32": (torch.float32, "float32", None),
    "bf16 sharded -> bf16": (torch.bfloat16, "bfloat16", 256 * 2**20),
}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _child(path: str, dtype: str) -> None:
    # Import what loading imports lazily, so the baseline holds the libraries and only the
    # model's own memory is measured above it.
    import ondol.loaders.gguf  # noqa: F401
    import ondol.loaders.safetensors  # noqa: F401
    import ondol.tokenizer  # noqa: F401
    from ondol.loaders import load

    baseline = _status_kb("VmRSS")
    loaded = load(path, dtype=dtype, progress=False)
    # Memory-mapped weights are read on first use, so "after loading" would flatter zero-copy
    # loading: run one forward over a short prompt, which touches every weight, then read the peak.
    from ondol.engine.kv_cache import ContiguousKVCache

    model = loaded.model
    model(torch.tensor([[1, 2, 3, 4]]), torch.arange(4)[None], ContiguousKVCache(model.config, 4, model.dtype))
    size = sum(p.nbytes for p in model.parameters())
    print(json.dumps({"baseline": baseline, "peak": _status_kb("VmHWM"), "model_bytes": size}))


def measure(path: Path, dtype: str) -> dict:
    """Load ``path`` in a fresh process; returns baseline, peak and model bytes plus the ratio."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.load_memory", "--child", str(path), dtype],
                         check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["ratio_over_baseline"] = (r["peak"] - r["baseline"]) / r["model_bytes"]
    r["ratio_total"] = r["peak"] / r["model_bytes"]
    return r


def run(root: Path, hidden: int, layers: int) -> list[tuple[str, dict]]:
    from ondol.demo import build

    results = []
    for name, (stored, runtime, shard) in CASES.items():
        folder = root / f"h{hidden}-l{layers}-{str(stored)[6:]}-{shard or 'single'}"
        if not (folder / "config.json").exists():
            build(folder, hidden=hidden, layers=layers, dtype=stored, shard_bytes=shard)
        results.append((name, measure(folder, runtime)))
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2, metavar=("PATH", "DTYPE"))
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--root", type=Path, default=Path(".cache/bench-load"))
    args = ap.parse_args()
    if args.child:
        return _child(*args.child)
    hidden, layers = (512, 8) if args.small else (2048, 14)
    rows = run(args.root, hidden, layers)
    lines = ["| case | model (runtime dtype) | baseline | peak RSS | peak − baseline | ratio |", "|---|---|---|---|---|---|"]
    mib = 2**20
    for name, r in rows:
        lines.append(f"| {name} | {r['model_bytes'] / mib:.0f} MiB | {r['baseline'] / mib:.0f} MiB | {r['peak'] / mib:.0f} MiB "
                     f"| {(r['peak'] - r['baseline']) / mib:.0f} MiB | {r['ratio_over_baseline']:.2f}× |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
