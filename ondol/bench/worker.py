"""One system measured in its own process: ``python -m ondol.bench.worker SYSTEM MODEL START``
prints one JSON object. START is the parent's ``time.time()`` just before it started this process,
so the time to first token counts the cold start: interpreter, imports, loading, the prompt.

Systems: ``ondol-bf16``/``ondol-int8``/``ondol-int4`` (ondol's engine, the path the server runs;
``ondol-gguf-Q8_0``/``-Q4_0`` run llama.cpp's files),
``llama.cpp-F16``/``-Q8_0``/``-Q4_0`` (llama-cpp-python) and ``transformers-bf16``. Every system
gets the same token ids, the physical cores as threads, greedy decoding that never stops early.

Measured: load seconds; first token of a 128-token prompt from the cold process; prefill tokens/s
for 128 and 512 tokens (a fresh context each, the median of a few); decode tokens/s over 128 new
tokens after a 128-token prompt; the process's peak resident memory (VmHWM) at the end.

``python -m ondol.bench.worker parity FILE.gguf`` compares ondol's logits with llama.cpp's.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from ondol.cpu import physical_cores

PROMPT, LONG_PROMPT, NEW_TOKENS = 128, 512, 128


def prompt_ids(n: int, vocab: int, seed: int = 0) -> list[int]:
    """The same ids for every system: plain tokens of the 4,096-token tokenizer, past its specials."""
    import random

    rng = random.Random(seed)
    return [rng.randrange(16, min(vocab, 4096)) for _ in range(n)]


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Ondol:
    def __init__(self, model: Path, quant: str | None) -> None:
        from ondol.llm import LLM

        self.llm = LLM(model, quant=quant, progress=False, max_model_len=1024, kv_cache_bytes=256 << 20,
                       enable_prefix_caching=False)
        self.vocab = self.llm.config.vocab_size

    def run(self, ids: list[int], new: int) -> tuple[float, float]:
        """(seconds to the first token, seconds for the rest) of one greedy request."""
        from ondol.engine.sampler import SamplingParams

        engine = self.llm.engine
        start = time.perf_counter()
        engine.add_request(ids, SamplingParams(max_tokens=new, temperature=0, ignore_eos=True))
        first = None
        while engine.has_unfinished_requests():
            for out in engine.step():
                if first is None and out.token_ids:
                    first = time.perf_counter()
        return first - start, time.perf_counter() - first


class LlamaCpp:
    def __init__(self, model: Path, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(str(model), n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=threads,
                         n_threads_batch=threads, verbose=False)
        self.vocab = self.llm.n_vocab()

    def run(self, ids: list[int], new: int) -> tuple[float, float]:
        import numpy as np

        self.llm.reset()
        start = time.perf_counter()
        self.llm.eval(ids)
        token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
        first = time.perf_counter()
        for _ in range(new - 1):
            self.llm.eval([token])
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
        return first - start, time.perf_counter() - first


class Transformers:
    def __init__(self, model: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).eval()
        self.vocab = self.model.config.vocab_size

    def run(self, ids: list[int], new: int) -> tuple[float, float]:
        times: list[float] = []

        class Clock:  # generate's streamer: put() gets the prompt, then each new token
            def put(self, value) -> None:
                times.append(time.perf_counter())

            def end(self) -> None:
                pass

        with self.torch.inference_mode():
            start = time.perf_counter()
            self.model.generate(self.torch.tensor([ids]), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                pad_token_id=0, streamer=Clock())
        end = time.perf_counter()
        return times[1] - start, end - times[1]


def measure(system: str, model: Path, started: float) -> dict:
    threads = physical_cores()
    import torch

    torch.set_num_threads(threads)
    t = time.perf_counter()
    family, _, kind = system.partition("-")
    if family == "ondol":
        runner = Ondol(model, kind if kind in ("int8", "int4") else None)  # bf16, or a GGUF file as stored
    elif family == "llama.cpp":
        runner = LlamaCpp(model, threads)
    else:
        runner = Transformers(model)
    load = time.perf_counter() - t
    ids = prompt_ids(PROMPT, runner.vocab)
    prefill, _ = runner.run(ids, 1)
    ttft = time.time() - started  # the cold start, this first prompt included
    short = [prefill] + [runner.run(prompt_ids(PROMPT, runner.vocab, s), 1)[0] for s in (1, 2)]
    long = [runner.run(prompt_ids(LONG_PROMPT, runner.vocab, s), 1)[0] for s in (3, 4)]
    _, decode = runner.run(ids, NEW_TOKENS)
    return {"system": system, "threads": threads, "load_s": load, "ttft_s": ttft,
            "prefill_128_tok_s": PROMPT / statistics.median(short), "prefill_512_tok_s": LONG_PROMPT / statistics.median(long),
            "decode_tok_s": (NEW_TOKENS - 1) / decode, "peak_rss_bytes": peak_rss(),
            "weight_bytes_per_token": weight_bytes(runner, model)}


def weight_bytes(runner, model: Path) -> int:
    """Bytes of weights one decode step reads: every matrix but the embeddings (one row each), the
    output head included (with tied embeddings it is the embedding table)."""
    if isinstance(runner, LlamaCpp):
        from gguf import GGUFReader

        tensors = {t.name: int(t.n_bytes) for t in GGUFReader(model).tensors if len(t.shape) == 2}
        tied = "output.weight" not in tensors
        return sum(n for name, n in tensors.items() if name != "token_embd.weight" or tied)
    import torch

    net = runner.llm.model if isinstance(runner, Ondol) else runner.model
    seen, total = set(), 0
    for name, m in net.named_modules():
        parts = [getattr(m, a) for a in ("qweight", "scales", "zeros") if getattr(m, a, None) is not None]
        if not parts and isinstance(m, torch.nn.Linear):
            parts = [m.weight]
        if "embed" in name:
            continue
        for t in parts:
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.nbytes
    return total


PARITY_TOKENS = 64


def parity(gguf: Path) -> dict:
    """ondol's logits against llama.cpp's on the same GGUF file and prompt (llama-cpp-python with
    logits_all=True): the largest difference relative to the largest logit, the mean KL divergence
    of llama.cpp's next-token distribution from ondol's, and how often the top tokens agree."""
    import numpy as np
    import torch
    from llama_cpp import Llama

    from ondol.engine.kv_cache import ContiguousKVCache
    from ondol.loaders import load

    threads = physical_cores()
    torch.set_num_threads(threads)
    cpp = Llama(str(gguf), n_ctx=256, n_batch=256, logits_all=True, n_threads=threads, verbose=False)
    ids = prompt_ids(PARITY_TOKENS, cpp.n_vocab(), seed=7)
    cpp.eval(ids)
    theirs = torch.from_numpy(np.array(cpp.scores[: len(ids)], dtype=np.float32))
    del cpp
    model = load(gguf, progress=False).model
    with torch.inference_mode():
        cache = ContiguousKVCache(model.config, len(ids), model.dtype)
        ours = model(torch.tensor([ids]), torch.arange(len(ids))[None], cache)[0].float()
    kl = torch.nn.functional.kl_div(ours.log_softmax(-1), theirs.log_softmax(-1), log_target=True, reduction="none")
    return {"file": gguf.name, "tokens": len(ids), "dtype": str(model.dtype).removeprefix("torch."),
            "max_abs_diff": float((ours - theirs).abs().max()), "max_abs_logit": float(theirs.abs().max()),
            "relative": float((ours - theirs).abs().max() / theirs.abs().max()),
            "mean_kl": float(kl.sum(-1).mean()), "top1_agree": float((ours.argmax(-1) == theirs.argmax(-1)).float().mean())}


if __name__ == "__main__":
    if sys.argv[1] == "parity":
        print(json.dumps(parity(Path(sys.argv[2]))), flush=True)
    else:
        print(json.dumps(measure(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]))), flush=True)
