"""What grammar-constrained decoding costs: decode tokens/s under a device-sized JSON schema (and
under a lazy tool-call grammar in free text) against unconstrained decoding of the same model, the
same prompt and the same number of tokens, in the same run.

    .venv/bin/python -m benchmarks.structured                   # small and 1B-shaped models, 128k vocabulary
    .venv/bin/python -m benchmarks.structured --shapes small --runs 3

Models are random-weight Llama 3.2-style checkpoints with a 128,256-token byte-level BPE tokenizer
trained here (the one benchmarks/grammar_libraries.py builds); the mask covers the whole
vocabulary, so its cost is that of a real Llama 3 model. Pairs run interleaved (constrained, free,
constrained, ...) and the reported ratio is the median of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer

from benchmarks.grammar_libraries import device_schema, prepare
from ondol import LLM, SamplingParams
from ondol.constrained import Grammar
from ondol.demo import build

# name -> build() shape. "small": a few decoder layers under a 128k-row lm_head, the harshest case
# for the mask (the step is short, the vocabulary large); "1b": Llama 3.2 1B's shape.
SHAPES = {
    "small": dict(hidden=512, layers=4, head_dim=64, kv_heads=2, intermediate=1536),
    "1b": dict(hidden=2048, layers=16, head_dim=64, kv_heads=8, intermediate=8192),
}
PROMPT = "거실 에어컨 24도로 맞춰주고 침실 불은 꺼줘. 그리고 TV로 뉴스 틀어줘."


def checkpoint(workdir: Path, shape: str) -> Path:
    out = workdir / f"model-{shape}-128k"
    if not (out / "config.json").is_file():
        folder = prepare(Path("/tmp/ondol-grammar-bench"), ["128k"])["tokenizers"]["128k"]["folder"]
        t0 = time.perf_counter()
        build(out, tokenizer=Tokenizer.from_file(str(Path(folder) / "tokenizer.json")), **SHAPES[shape])
        print(f"built {out} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def decode_run(llm: LLM, jobs: list[tuple[list[int], SamplingParams]]) -> tuple[int, float, list[int]]:
    """Run the requests together; (tokens generated after each request's first, decode seconds,
    tokens per request). Decode time runs from the step that gave the last request its first token
    to the end, so prefill is not counted."""
    reqs = [llm.engine.add_request(ids, p) for ids, p in jobs]
    start = None
    while llm.engine.has_unfinished_requests():
        llm.engine.step()
        if start is None and all(r.num_output_tokens for r in reqs):
            start = time.perf_counter()
            firsts = sum(r.num_output_tokens for r in reqs)
    elapsed = time.perf_counter() - start
    counts = [len(r.output.token_ids) + (r.output.finish_reason == "stop") for r in reqs]
    return sum(r.num_output_tokens for r in reqs) - firsts, elapsed, counts


class GrammarTimer:
    """Time spent in the engine's grammar work (mask, apply, accept) per constrained token."""

    def __init__(self, llm: LLM) -> None:
        self.engine, self.seconds, self.calls = llm.engine, 0.0, 0
        self._inner = llm.engine._sample_constrained

        def timed(*args):
            t0 = time.perf_counter()
            try:
                return self._inner(*args)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        llm.engine._sample_constrained = timed


def compare(llm: LLM, grammar: Grammar, batch: int, runs: int, max_tokens: int) -> dict:
    ids = llm.tokenizer.encode(PROMPT)
    ratios, shaped_tps, free_tps, lengths = [], [], [], []
    for run in range(runs):
        shaped = [(ids, SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=run * 100 + i, grammar=grammar))
                  for i in range(batch)]
        n, secs, counts = decode_run(llm, shaped)
        # The free requests generate exactly as many tokens as their constrained twins did.
        free = [(ids, SamplingParams(max_tokens=max(c, 2), temperature=0.8, seed=run * 100 + i, ignore_eos=True))
                for i, c in enumerate(counts)]
        fn, fsecs, _ = decode_run(llm, free)
        shaped_tps.append(n / secs)
        free_tps.append(fn / fsecs)
        ratios.append(shaped_tps[-1] / free_tps[-1])
        lengths += counts
    return {"ratio": statistics.median(ratios), "ratios": ratios, "shaped_tps": statistics.median(shaped_tps),
            "free_tps": statistics.median(free_tps), "tokens": statistics.median(lengths)}


def tool_grammar() -> Grammar:
    import json

    import llguidance as llg

    schema = device_schema()
    tag = llg.StructTag(trigger="<tool_call>", begin="<tool_call>\n", grammar=json.dumps(schema), end="\n</tool_call>")
    return Grammar.lark(llg.StructTag.to_grammar([tag], assume_special=False), lazy=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="small,1b")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", default="1,8", help="batch sizes to run")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ondol-structured-bench"))
    args = ap.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for shape in args.shapes.split(","):
        llm = LLM(checkpoint(args.workdir, shape), max_model_len=1024, kv_cache_bytes=256 << 20)
        timer = GrammarTimer(llm)
        grammars = {"device JSON schema": Grammar.json_schema(device_schema()),
                    "lazy <tool_call> grammar (auto)": tool_grammar()}
        for g in grammars.values():  # compile (and build the grammar tokenizer) outside the timing
            llm.engine.grammars.compile(g)
        decode_run(llm, [(llm.tokenizer.encode(PROMPT), SamplingParams(max_tokens=8, ignore_eos=True))])  # warm-up
        for name, g in grammars.items():
            for batch in map(int, args.batch.split(",")):
                timer.seconds, timer.calls = 0.0, 0
                r = compare(llm, g, batch, args.runs, args.max_tokens)
                r |= {"shape": shape, "grammar": name, "batch": batch,
                      "grammar_us": 1e6 * timer.seconds / max(timer.calls, 1)}
                rows.append(r)
                print(f"{shape:5} {name:32} batch {batch}: constrained {r['shaped_tps']:.1f} tok/s, free "
                      f"{r['free_tps']:.1f} tok/s, ratio {r['ratio']:.3f} "
                      f"(runs: {', '.join(f'{x:.3f}' for x in r['ratios'])}), {r['tokens']:.0f} tokens/request, "
                      f"constrained sampling {r['grammar_us']:.0f} µs/token", flush=True)
        del llm
    print("\n| model | grammar | batch | constrained tok/s | free tok/s | ratio (median) | tokens/request | "
          "constrained sampling µs/token |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['grammar']} | {r['batch']} | {r['shaped_tps']:.1f} | {r['free_tps']:.1f} | "
              f"**{r['ratio']:.3f}** | {r['tokens']:.0f} | {r['grammar_us']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
