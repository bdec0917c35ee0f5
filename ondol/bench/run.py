"""``ondol bench``: ondol against llama.cpp and transformers on this machine, as ratios in one run.

Each system runs in its own process (worker.py); the systems alternate order between repetitions
so drift on a noisy machine falls on all of them alike; medians are reported. The memory read
bandwidth is measured in a process of its own, and with the weight bytes each system reads per
token gives its roofline (bandwidth / bytes per token): the decode speed nothing can beat.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ondol.bench.models import SHAPES, build
from ondol.errors import OndolError

# system -> the model file it runs ("hf" or a GGUF type). The default run: ondol quantizing the HF
# folder at load against llama.cpp on its own files and transformers.
SYSTEMS = {"ondol-bf16": "hf", "ondol-int8": "hf", "ondol-int4": "hf", "llama.cpp-F16": "F16",
           "llama.cpp-Q8_0": "Q8_0", "llama.cpp-Q4_0": "Q4_0", "transformers-bf16": "hf"}
# on request (--systems): ondol running llama.cpp's own GGUF files, blocks as stored
EXTRA_SYSTEMS = {"ondol-gguf-Q8_0": "Q8_0", "ondol-gguf-Q4_0": "Q4_0"}
ALL_SYSTEMS = {**SYSTEMS, **EXTRA_SYSTEMS}
METRICS = ("load_s", "ttft_s", "prefill_128_tok_s", "prefill_512_tok_s", "decode_tok_s", "peak_rss_bytes",
           "weight_bytes_per_token")
# ondol's systems and llama.cpp's at the same bits; the issue's targets as (ondol system, its peer,
# what is compared, the target ratio, higher is better)
PEERS = {"ondol-int8": "llama.cpp-Q8_0", "ondol-int4": "llama.cpp-Q4_0", "ondol-bf16": "llama.cpp-F16"}
DECODE_TARGETS = {"ondol-int8": 1.2, "ondol-int4": 1.0, "ondol-bf16": 1.0}
TARGETS = [(ours, peer, "decode_tok_s", DECODE_TARGETS[ours], True) for ours, peer in PEERS.items()] + \
    [(ours, peer, metric, 1.0, True) for metric in ("prefill_128_tok_s", "prefill_512_tok_s")
     for ours, peer in PEERS.items()] + \
    [("ondol-bf16", "transformers-bf16", "decode_tok_s", 5.0, True)] + \
    [(ours, peer, "peak_rss_bytes", 1.15, False) for ours, peer in PEERS.items()]
ROOFLINE_TARGET = 0.85


@dataclass
class BenchConfig:
    shape: str = "llama-3.2-1b"
    repeats: int = 3
    out: Path = Path("bench-results")
    cache: Path = Path.home() / ".cache" / "ondol" / "bench"
    systems: tuple[str, ...] = tuple(SYSTEMS)
    parity: bool = True  # also compare logits with llama.cpp's on the GGUF files


def measure_bandwidth() -> float:
    code = "from ondol.bench.run import read_bandwidth; print(read_bandwidth())"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def read_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second a reduction over all cores reads from memory (1 GiB, best of five)."""
    import torch

    from ondol.cpu import physical_cores

    torch.set_num_threads(physical_cores())
    data = torch.ones(nbytes // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - t)
    return nbytes / best


def run_worker(system: str, model: Path) -> dict:
    started = time.time()
    args = [str(model)] if system == "parity" else [str(model), repr(started)]
    proc = subprocess.run([sys.executable, "-m", "ondol.bench.worker", system, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"system": system, "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(cfg: BenchConfig, log=print) -> dict:
    if cfg.shape not in SHAPES:
        raise OndolError(f"Unknown shape {cfg.shape!r}; use one of {', '.join(SHAPES)}.")
    unknown = [s for s in cfg.systems if s not in ALL_SYSTEMS]
    if unknown:
        raise OndolError(f"Unknown systems {', '.join(unknown)}; use {', '.join(ALL_SYSTEMS)}.")
    shape = SHAPES[cfg.shape]
    needs_gguf = any(ALL_SYSTEMS[s] != "hf" for s in cfg.systems)
    paths = build(shape, cfg.cache, log=log, gguf=needs_gguf)
    log("measuring memory read bandwidth")
    bandwidths = [measure_bandwidth() for _ in range(3)]
    runs: list[dict] = []
    for r in range(cfg.repeats):
        order = list(cfg.systems) if r % 2 == 0 else list(reversed(cfg.systems))
        for system in order:
            log(f"[{r + 1}/{cfg.repeats}] {system}")
            result = run_worker(system, paths[ALL_SYSTEMS[system]])
            if "error" in result:
                log(f"  {system} failed: {result['error']}")
            runs.append(result)
    report = summarize(runs, statistics.median(bandwidths), cfg)
    if needs_gguf and cfg.parity:
        log("comparing logits with llama.cpp's on each GGUF file")
        report["parity"] = [run_worker("parity", paths[kind]) for kind in ("F16", "Q8_0", "Q4_0")]
    write(report, cfg.out)
    return report


def summarize(runs: list[dict], bandwidth: float, cfg: BenchConfig) -> dict:
    systems: dict[str, dict] = {}
    for name in cfg.systems:
        ok = [r for r in runs if r["system"] == name and "error" not in r]
        if not ok:
            errors = [r["error"] for r in runs if r["system"] == name]
            systems[name] = {"error": errors[0] if errors else "not run"}
            continue
        med = {m: statistics.median(r[m] for r in ok) for m in METRICS}
        med["roofline_tok_s"] = bandwidth / med["weight_bytes_per_token"]
        med["of_roofline"] = med["decode_tok_s"] / med["roofline_tok_s"]
        med["runs"] = len(ok)
        systems[name] = med
    targets = []
    for ours, peer, metric, goal, higher in TARGETS:
        a, b = systems.get(ours, {}), systems.get(peer, {})
        if metric not in a or metric not in b:
            continue
        ratio = a[metric] / b[metric]
        targets.append({"system": ours, "peer": peer, "metric": metric, "ratio": ratio, "target": goal,
                        "met": ratio >= goal if higher else ratio <= goal})
    for name, s in systems.items():
        if name.startswith("ondol") and "of_roofline" in s:
            targets.append({"system": name, "peer": "roofline", "metric": "decode_tok_s", "ratio": s["of_roofline"],
                            "target": ROOFLINE_TARGET, "met": s["of_roofline"] >= ROOFLINE_TARGET})
    shape = SHAPES[cfg.shape]
    return {"shape": cfg.shape, "parameters": shape.parameters(), "repeats": cfg.repeats,
            "bandwidth_bytes_s": bandwidth, "systems": systems, "targets": targets, "runs": runs,
            "command": "ondol bench" + (" --quick" if cfg.shape == "quick" else "") + f" --repeats {cfg.repeats}"
                       + ("" if cfg.systems == tuple(SYSTEMS) else " --systems " + " ".join(cfg.systems))}


def markdown(report: dict) -> str:
    bw = report["bandwidth_bytes_s"]
    lines = [f"Model: random weights, {report['shape']} shape ({report['parameters'] / 1e9:.2f} B parameters); "
             f"memory read bandwidth {bw / 1e9:.1f} GB/s; medians of {report['repeats']} runs; "
             f"`{report['command']}`.", "",
             "| system | load s | first token s (cold) | prefill 128 tok/s | prefill 512 tok/s | decode tok/s "
             "| roofline tok/s | of roofline | weights/token MB | peak RSS GB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in report["systems"].items():
        if "error" in s:
            lines.append(f"| {name} | failed: {s['error']} |||||||||")
            continue
        lines.append(f"| {name} | {s['load_s']:.2f} | {s['ttft_s']:.2f} | {s['prefill_128_tok_s']:.1f} | "
                     f"{s['prefill_512_tok_s']:.1f} | {s['decode_tok_s']:.1f} | {s['roofline_tok_s']:.1f} | "
                     f"{s['of_roofline']:.0%} | {s['weight_bytes_per_token'] / 1e6:.0f} | {s['peak_rss_bytes'] / 1e9:.2f} |")
    lines += ["", "| ondol | against | measure | ratio | target | met |", "|---|---|---|---|---|---|"]
    for t in report["targets"]:
        sign = "≥" if t["metric"] != "peak_rss_bytes" else "≤"
        lines.append(f"| {t['system']} | {t['peer']} | {t['metric']} | {t['ratio']:.2f}× | {sign} {t['target']} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    if report.get("parity"):
        lines += ["", "Logits against llama.cpp's on the same file and a 64-token prompt:", "",
                  "| file | ondol dtype | max abs diff | of largest logit | mean KL | top-1 agrees |", "|---|---|---|---|---|---|"]
        for p in report["parity"]:
            if "error" in p:
                lines.append(f"| failed: {p['error']} ||||||")
                continue
            lines.append(f"| {p['file']} | {p['dtype']} | {p['max_abs_diff']:.4f} | {p['relative']:.2%} | "
                         f"{p['mean_kl']:.2e} | {p['top1_agree']:.0%} |")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, s in report["systems"].items() if "error" not in s]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, metric, title in zip(axes, ("decode_tok_s", "prefill_128_tok_s", "peak_rss_bytes"),
                                 ("decode tokens/s (bar) and roofline (line)", "prefill tokens/s, 128-token prompt",
                                  "peak RSS, GB")):
        values = [report["systems"][n][metric] / (1e9 if metric == "peak_rss_bytes" else 1) for n in names]
        colors = ["tab:orange" if n.startswith("ondol") else "tab:blue" if n.startswith("llama") else "tab:gray"
                  for n in names]
        ax.bar(range(len(names)), values, color=colors)
        if metric == "decode_tok_s":
            for i, n in enumerate(names):
                ax.hlines(report["systems"][n]["roofline_tok_s"], i - 0.4, i + 0.4, colors="black")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"ondol bench: {report['shape']} ({report['parameters'] / 1e9:.2f} B), "
                 f"{report['bandwidth_bytes_s'] / 1e9:.1f} GB/s memory")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    (out / "bench.md").write_text(markdown(report))
    chart(report, out / "bench.png")
