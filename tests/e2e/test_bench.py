"""``ondol bench``: the quick shape end to end for ondol's systems, and the report's arithmetic."""

from __future__ import annotations

import json

import pytest

from ondol.bench.run import BenchConfig, markdown, summarize
from ondol.cli import main


def fake_run(system: str, decode: float, rss: float, nbytes: float, prefill: float = 100.0) -> dict:
    return {"system": system, "threads": 2, "load_s": 1.0, "ttft_s": 2.0, "prefill_128_tok_s": prefill,
            "prefill_512_tok_s": prefill, "decode_tok_s": decode, "peak_rss_bytes": rss, "weight_bytes_per_token": nbytes}


def test_report_takes_medians_and_judges_each_target_by_its_ratio():
    runs = [fake_run("ondol-int8", d, 1.0e9, 1.3e9) for d in (20.0, 30.0, 25.0)]
    runs += [fake_run("llama.cpp-Q8_0", d, 1.0e9, 1.4e9) for d in (20.0, 21.0, 22.0)]
    runs += [{"system": "ondol-int4", "error": "boom"}]
    cfg = BenchConfig(shape="quick", repeats=3, systems=("ondol-int8", "ondol-int4", "llama.cpp-Q8_0"))
    report = summarize(runs, 39e9, cfg)
    int8 = report["systems"]["ondol-int8"]
    assert int8["decode_tok_s"] == 25.0 and int8["roofline_tok_s"] == pytest.approx(30.0)
    assert int8["of_roofline"] == pytest.approx(25 / 30)
    assert report["systems"]["ondol-int4"] == {"error": "boom"}
    by = {(t["peer"], t["metric"]): t for t in report["targets"] if t["system"] == "ondol-int8"}
    assert by["llama.cpp-Q8_0", "decode_tok_s"]["ratio"] == pytest.approx(25 / 21) and not by["llama.cpp-Q8_0", "decode_tok_s"]["met"]
    assert by["llama.cpp-Q8_0", "peak_rss_bytes"]["met"]  # equal memory: within 1.15x
    assert not by["roofline", "decode_tok_s"]["met"]  # 83 % < 85 %
    table = markdown(report)
    assert "| ondol-int4 | failed: boom" in table and "1.19×" in table and "**no**" in table
    assert "Logits against llama.cpp" not in table  # no GGUF systems, no comparison
    report["parity"] = [{"file": "m-Q8_0.gguf", "tokens": 64, "dtype": "bfloat16", "max_abs_diff": 0.25,
                         "max_abs_logit": 5.0, "relative": 0.05, "mean_kl": 1.3e-3, "top1_agree": 0.86},
                        {"error": "llama_cpp missing"}]
    table = markdown(report)
    assert "| m-Q8_0.gguf | bfloat16 | 0.2500 | 5.00% | 1.30e-03 | 86% |" in table
    assert "| failed: llama_cpp missing" in table


def test_quick_bench_runs_ondol_in_its_own_processes(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "--quick", "--systems", "ondol-bf16", "ondol-int8", "ondol-int4", "--out", str(out),
                 "--cache", str(tmp_path / "models")]) == 0
    assert (tmp_path / "models" / "quick" / "hf" / "model.safetensors").exists()
    report = json.loads((out / "bench.json").read_text())
    systems = report["systems"]
    for name in ("ondol-bf16", "ondol-int8", "ondol-int4"):
        s = systems[name]
        assert "error" not in s, s
        assert s["decode_tok_s"] > 0 and s["prefill_512_tok_s"] > 0 and s["peak_rss_bytes"] > 0
        assert 0 < s["of_roofline"] < 2
    bf16, int8, int4 = (systems[n]["weight_bytes_per_token"] for n in ("ondol-bf16", "ondol-int8", "ondol-int4"))
    assert int4 < int8 < bf16 and int8 == pytest.approx(bf16 / 2, rel=0.05)
    assert (out / "bench.png").stat().st_size > 10_000 and (out / "bench.md").exists()
    assert "| ondol-int4 |" in capsys.readouterr().out
