"""Serving benchmark: output tokens/s and time to first token, ondol's server against llama-cpp-python's
(and, given its binary, llama.cpp's own llama-server).

    PYTHONPATH=. .venv/bin/python -m benchmarks.serve             # ~85M-param model, C = 1 4 16 64, 3 repeats
    PYTHONPATH=. .venv/bin/python -m benchmarks.serve --quick     # smoke run: tiny model, C = 1 4, 1 repeat
    PYTHONPATH=. .venv/bin/python -m benchmarks.serve --shape 2048x16 --dtype f32
    PYTHONPATH=. .venv/bin/python -m benchmarks.serve --systems llama.cpp   # one server alone
    PYTHONPATH=. .venv/bin/python -m benchmarks.serve --systems ondol llama.cpp llama-server --llama-server-bin PATH

Needs the ``bench`` extra (``pip install -e '.[bench]'``: llama-cpp-python's OpenAI server).

The model is a random-weight Llama checkpoint written by ``ondol.demo.build`` (no download) and the
same weights converted to GGUF by ``ondol/bench/gguf_writer.py``. ``--dtype f16`` (default) serves the
bfloat16 folder with ``ondol serve --dtype bfloat16`` against the F16 GGUF (2 bytes a weight in
both); ``--dtype f32`` serves float32 against F32.

Each server runs as a subprocess on a free 127.0.0.1 port; all stay up for the whole run and are
measured in turns, the order alternating at every step so drift hits all; before each run the
benchmark waits (``--settle``) for a second in which other processes leave the CPUs alone. For each
concurrency C, C streaming ``/v1/completions`` requests start at once (one connection each, a plain
asyncio HTTP/1.1 client, SSE parsed line by line), each with its own prompt of about 64 tokens (no
prompt is used twice in a run, so no prefix cache helps), ``max_tokens`` 64, temperature 0,
``ignore_eos`` and a -100 ``logit_bias`` on every token that is not printable ASCII on its own
(end tokens included; see ``non_text_token_ids``: without it llama-cpp-python's stream of a random
model overruns ``max_tokens``, sometimes to the end of its context). Every server gets the same body:
ondol and llama-server honour both, llama-cpp-python ignores ``ignore_eos``.
A run during which other processes used more than ``--busy-threshold``
CPUs is discarded and done again with fresh prompts.

Measured per request: time to first token (send -> first SSE chunk with non-empty text) and output
tokens (``usage.completion_tokens`` from ``stream_options.include_usage`` where the server sends it
(ondol, llama-server), else ``max_tokens`` when ``finish_reason`` is "length", else the count of text chunks,
marked as an estimate). For llama-cpp-python the run's total is taken from its own log (one
``eval time = ... / N runs`` line per request, N + 1 tokens), which also gives its decode time per
token. Per run: output tokens / wall time (first send -> last stream closed). Repeated R times; the
table reports medians over the repeats.

llama-cpp-python's server holds one ``Llama`` object behind a lock: it runs one request at a time
(no parallel slots, no batching), so concurrent streams queue. It is started with
``--interrupt_requests False``: its default (True) ends the running stream as soon as another
request waits, which would cut every concurrent stream short. Its pip build uses OpenMP, and each
anyio worker thread that happens to run a request gets an OpenMP team of its own; once two teams
exist on a 2-CPU machine, libgomp stops spinning at barriers and its decode slows by about a third
(see docs/serving-benchmark.md). ``--llama-env PYTHONPATH=DIR`` serves from another build.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SHAPES = {"tiny": (256, 2), "default": (1024, 8), "large": (2048, 16)}  # name -> (hidden, layers)
DTYPES = {  # --dtype -> (checkpoint torch dtype, ondol --dtype, GGUF type)
    "f16": ("bfloat16", "bfloat16", "F16"),
    "f32": ("float32", "float32", "F32"),
}
SYSTEMS = ("ondol", "llama.cpp", "llama-server")  # llama.cpp = llama-cpp-python's server; llama-server = llama.cpp's own


# --- model and prompts -----------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, int]:
    if text in SHAPES:
        return SHAPES[text]
    try:
        hidden, layers = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape is one of {', '.join(SHAPES)} or HIDDENxLAYERS, not {text!r}") from None
    if hidden % 32:
        raise argparse.ArgumentTypeError("hidden must be a multiple of 32 (head_dim 32)")
    return hidden, layers


def prepare_model(workdir: Path, hidden: int, layers: int, dtype_key: str) -> tuple[Path, Path]:
    """The HF folder and its GGUF, built once per shape and dtype and reused."""
    import torch

    from ondol.demo import build
    from ondol.bench.gguf_writer import write_gguf

    torch_dtype, _, qtype = DTYPES[dtype_key]
    folder = workdir / f"llama-{hidden}x{layers}-{torch_dtype}"
    if not (folder / ".complete").exists():
        print(f"building {folder} ...", flush=True)
        build(folder, hidden=hidden, layers=layers, dtype=getattr(torch, torch_dtype))
        (folder / ".complete").write_text("ok\n")
    gguf = workdir / f"{folder.name}-{qtype}.gguf"
    if not gguf.exists():
        print(f"converting to {gguf} ...", flush=True)
        tmp = gguf.with_suffix(".tmp")
        write_gguf(folder, tmp, qtype)
        tmp.rename(gguf)
    return folder, gguf


def make_prompts(folder: Path, n: int, target: int, seed: int) -> list[str]:
    """``n`` distinct prompts of at most ``target`` tokens (BOS included) and close to it: random
    words of the demo tokenizer's training lines, so they tokenize as real text does."""
    from tokenizers import Tokenizer

    from ondol.demo import CORPUS

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    words = [w for line in CORPUS for w in line.split()]
    rng = random.Random(seed)
    prompts: list[str] = []
    seen: set[str] = set()
    while len(prompts) < n:
        text = rng.choice(words)
        while True:
            longer = text + " " + rng.choice(words)
            if len(tok.encode(longer).ids) > target:
                break
            text = longer
        if text not in seen:
            seen.add(text)
            prompts.append(text)
    return prompts


def end_token_ids(folder: Path) -> list[int]:
    cfg = json.loads((folder / "config.json").read_text())
    eos = cfg.get("eos_token_id")
    return sorted(set(eos if isinstance(eos, list) else [eos]))


def non_text_token_ids(folder: Path) -> list[int]:
    """Tokens whose text is not printable ASCII on its own: special tokens (end tokens among them),
    byte tokens of multi-byte characters and Korean pieces. A random model strings such bytes into
    invalid UTF-8, which llama-cpp-python holds back from the stream without counting toward
    ``max_tokens``, so a request may run on to the end of the context. Banned for both servers."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def plain(t: str) -> bool:
        return bool(t) and t.isascii() and all(c.isprintable() or c in "\n\t" for c in t)

    return [i for i in range(tok.get_vocab_size(with_added_tokens=True))
            if not plain(tok.decode([i], skip_special_tokens=True))]


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ondol_command() -> list[str]:
    script = Path(sys.executable).parent / "ondol"
    return [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from ondol.cli import main; sys.exit(main())"]


def ondol_serve_available() -> bool:
    try:
        r = subprocess.run([*ondol_command(), "serve", "--help"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@dataclass
class Server:
    name: str
    cmd: list[str]
    health_paths: tuple[str, ...]
    extra_body: dict[str, Any]
    log_path: Path
    port: int
    env: dict[str, str] | None = None
    counts_in_log: bool = False  # llama-cpp-python (verbose) logs each request's decode count
    proc: subprocess.Popen | None = None
    startup_s: float | None = None

    def start(self, timeout: float) -> None:
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        print(f"starting {self.name}: {shlex.join(self.cmd)}", flush=True)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=ROOT, env=self.env, start_new_session=True)
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            for path in self.health_paths:
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{self.port}{path}", timeout=5) as r:
                        if r.status == 200:
                            self.startup_s = time.perf_counter() - t0
                            print(f"{self.name} ready on port {self.port} after {self.startup_s:.1f} s", flush=True)
                            return
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The server was started in a session of its own: signal that process group (its id is
            # the server's pid), then wait, then force.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None):
            self._log.close()

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process (all its threads) so far."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_size(self) -> int:
        with contextlib.suppress(OSError):
            return self.log_path.stat().st_size
        return 0

    def logged_tokens(self, since: int) -> tuple[int, int, float | None] | None:
        """(requests, generated tokens, ms per decode) that the server logged after byte ``since``:
        llama.cpp's ``llama_perf_context_print: eval time = T ms / N runs`` line after each request,
        where N is the number of single-token decodes, one less than the tokens generated (the last
        one is sampled and never decoded)."""
        if not self.counts_in_log:
            return None
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        found = re.findall(r"^llama_perf_context_print:\s+eval time\s*=\s*([\d.]+) ms\s*/\s*(\d+) runs", text, re.M)
        ms, runs = sum(float(t) for t, _ in found), sum(int(n) for _, n in found)
        return len(found), runs + len(found), ms / runs if runs else None

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


def make_servers(args: argparse.Namespace, folder: Path, gguf: Path, outdir: Path) -> list[Server]:
    _, ondol_dtype, _ = DTYPES[args.dtype]
    banned = end_token_ids(folder) if args.any_output else non_text_token_ids(folder)
    bias = {"logit_bias": {str(i): -100.0 for i in banned}}  # OpenAI's range is -100..100
    usage = {"stream_options": {"include_usage": True}}  # OpenAI's; llama-cpp-python ignores it
    servers = []
    for name in args.systems:
        port = free_port()
        if name == "ondol":
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
            cmd = [*ondol_command(), "serve", str(folder), "--host", HOST, "--port", str(port), "--dtype", ondol_dtype,
                   "--served-model-name", folder.name, *args.ondol_arg]
            servers.append(Server(name, cmd, ("/health",), {"ignore_eos": True, **bias, **usage}, outdir / "ondol.log", port, env))
        elif name == "llama-server":
            if not args.llama_server_bin:
                raise SystemExit("--systems llama-server needs --llama-server-bin PATH")
            slots = max(args.concurrency)
            per_slot = args.prompt_tokens + args.max_tokens + 64
            cmd = [str(args.llama_server_bin), "-m", str(gguf), "--host", HOST, "--port", str(port),
                   "-t", str(args.threads), "-tb", str(args.threads), "-np", str(slots), "-c", str(slots * per_slot),
                   *args.llama_server_arg]
            servers.append(Server(name, cmd, ("/health",), {"ignore_eos": True, **bias, **usage},
                                  outdir / "llama_server.log", port))
        else:
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", HOST, "--port", str(port),
                   "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
                   "--n_ctx", str(args.llama_n_ctx), "--interrupt_requests", "False", "--verbose", "True",
                   *args.llama_arg]
            body = {**bias, **usage}
            servers.append(Server(name, cmd, ("/health", "/v1/models"), body, outdir / "llama_cpp.log", port,
                                  {**os.environ, "PYTHONUNBUFFERED": "1", **dict(e.split("=", 1) for e in args.llama_env)},
                                  counts_in_log=True))
    return servers


# --- client ----------------------------------------------------------------------------------


@dataclass
class Result:
    prompt_index: int
    ok: bool = False
    error: str | None = None
    t_send: float = 0.0
    t_first: float | None = None  # first chunk with text
    t_last: float | None = None  # last chunk with text
    t_end: float | None = None
    text_chunks: int = 0
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    text: str = ""
    tokens: int = 0
    tokens_estimated: bool = False
    done: bool = False  # saw data: [DONE]


async def _body_chunks(reader: asyncio.StreamReader, chunked: bool):
    if not chunked:
        while data := await reader.read(65536):
            yield data
        return
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF after each chunk
        yield data


async def post_json(port: int, path: str, body: dict[str, Any], on_event=None) -> tuple[int, bytes]:
    """POST ``body``; with ``on_event`` the response is read as SSE and each ``data:`` payload is
    passed to it as it arrives (returning True stops reading). Returns (status, non-SSE body)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        payload = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: {'text/event-stream' if on_event else 'application/json'}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status != 200 or on_event is None:
            return status, b"".join([c async for c in _body_chunks(reader, chunked)])
        buf = b""
        data_lines: list[bytes] = []
        async for data in _body_chunks(reader, chunked):
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].removeprefix(b" "))
                elif not line and data_lines:  # blank line: end of an event
                    if on_event(b"\n".join(data_lines)):
                        return status, b""
                    data_lines = []
        if data_lines:
            on_event(b"\n".join(data_lines))
        return status, b""
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def stream_completion(server: Server, model: str, prompt: str, index: int, max_tokens: int,
                            timeout: float) -> Result:
    r = Result(index)
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            **server.extra_body}
    pieces: list[str] = []

    def on_event(data: bytes) -> bool:
        now = time.perf_counter()
        if data.strip() == b"[DONE]":
            r.done = True
            return True
        event = json.loads(data)
        if event.get("usage"):
            r.usage = event["usage"]
        for choice in event.get("choices") or []:
            if choice.get("text"):
                pieces.append(choice["text"])
                r.text_chunks += 1
                r.t_last = now
                if r.t_first is None:
                    r.t_first = now
            if choice.get("finish_reason"):
                r.finish_reason = choice["finish_reason"]
        return False

    r.t_send = time.perf_counter()
    try:
        status, err = await asyncio.wait_for(post_json(server.port, "/v1/completions", body, on_event), timeout)
        if status != 200:
            r.error = f"HTTP {status}: {err[:300].decode(errors='replace')}"
        elif not r.done and r.finish_reason is None:
            r.error = f"stream ended after {r.text_chunks} text chunks without a finish_reason or [DONE]"
    except TimeoutError:
        r.error = f"timeout after {timeout} s"
    except Exception as e:  # noqa: BLE001 - recorded, the run goes on
        r.error = f"{type(e).__name__}: {e}"
    r.t_end = time.perf_counter()
    r.text = "".join(pieces)
    if r.error is None:
        r.ok = True
        if r.usage and r.usage.get("completion_tokens") is not None:
            r.tokens = int(r.usage["completion_tokens"])
        elif r.finish_reason == "length":
            r.tokens = max_tokens
        else:
            r.tokens, r.tokens_estimated = r.text_chunks, True
    return r


async def non_streaming(server: Server, model: str, prompt: str, max_tokens: int, timeout: float) -> dict[str, Any]:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, **server.extra_body}
    status, data = await asyncio.wait_for(post_json(server.port, "/v1/completions", body), timeout)
    if status != 200:
        raise RuntimeError(f"{server.name}: HTTP {status}: {data[:300].decode(errors='replace')}")
    out = json.loads(data)
    return {"text": out["choices"][0]["text"], "finish_reason": out["choices"][0].get("finish_reason"),
            "usage": out.get("usage")}


# --- measuring -------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def busy_cpu_seconds() -> float:
    """CPU time all CPUs spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(servers: list[Server]) -> float:
    return time.process_time() + sum(s.cpu_seconds() or 0.0 for s in servers)


async def settle(servers: list[Server], max_wait: float, threshold: float = 0.3) -> tuple[float, float]:
    """Wait (at most ``max_wait`` s) for a second in which processes other than the servers and
    this client use under ``threshold`` CPUs; returns (seconds waited, last foreign load)."""
    t0 = time.perf_counter()
    while True:
        b0, o0, w0 = busy_cpu_seconds(), own_cpu_seconds(servers), time.perf_counter()
        await asyncio.sleep(1.0)
        foreign = (busy_cpu_seconds() - b0 - (own_cpu_seconds(servers) - o0)) / (time.perf_counter() - w0)
        waited = time.perf_counter() - t0
        if foreign < threshold or waited >= max_wait:
            return waited, foreign


async def run_level(server: Server, servers: list[Server], model: str, prompts: list[tuple[int, str]],
                    max_tokens: int, timeout: float, max_settle: float = 0.0) -> dict[str, Any]:
    others = [o for o in servers if o is not server]
    settled = await settle(servers, max_settle) if max_settle > 0 else (0.0, None)
    cpu0, idle0, log0 = server.cpu_seconds(), {o.name: o.cpu_seconds() for o in others}, server.log_size()
    busy0, own0 = busy_cpu_seconds(), own_cpu_seconds(servers)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(stream_completion(server, model, p, i, max_tokens, timeout) for i, p in prompts))
    wall = max(r.t_end for r in results) - t0
    foreign = (busy_cpu_seconds() - busy0 - (own_cpu_seconds(servers) - own0)) / wall
    cpu1 = server.cpu_seconds()
    ok = [r for r in results if r.ok]
    client_tokens = sum(r.tokens for r in ok)
    logged = server.logged_tokens(log0)
    tokens = logged[1] if logged and logged[0] == len(ok) else client_tokens
    ttft = [r.t_first - r.t_send for r in ok if r.t_first is not None]
    decode = [(r.tokens - 1) / (r.t_last - r.t_first) for r in ok
              if r.t_first is not None and r.t_last is not None and r.t_last > r.t_first and r.tokens > 1]
    return {
        "system": server.name, "concurrency": len(prompts), "wall_s": wall, "output_tokens": tokens,
        "client_counted_tokens": client_tokens, "server_logged": logged,
        "server_ms_per_decode": logged[2] if logged else None,
        "output_tok_s": tokens / wall if wall > 0 else None,
        "ttft_p50_s": pct(ttft, 0.5), "ttft_p90_s": pct(ttft, 0.9), "ttft_max_s": max(ttft, default=None),
        "stream_decode_tok_s_p50": pct(decode, 0.5),
        "errors": [f"#{r.prompt_index}: {r.error}" for r in results if not r.ok],
        "tokens_estimated": sum(r.tokens_estimated for r in ok),
        "finish_reasons": {str(k): sum(r.finish_reason == k for r in ok) for k in {r.finish_reason for r in ok}},
        "server_cpu_s": None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        "idle_other_cpu_s": {o.name: (c - idle0[o.name]) if (c := o.cpu_seconds()) is not None and idle0[o.name] is not None
                             else None for o in others},
        "foreign_cpu_load": foreign, "settle_wait_s": settled[0], "foreign_load_before": settled[1],
        "requests": [{k: v for k, v in asdict(r).items() if k != "text"} | {"text_chars": len(r.text)} for r in results],
    }


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]], systems: list[str], levels: list[int]) -> list[dict[str, Any]]:
    rows = []
    for c in levels:
        row: dict[str, Any] = {"concurrency": c}
        for s in systems:
            mine = [r for r in runs if r["system"] == s and r["concurrency"] == c]
            row[s] = {key: median([r[key] for r in mine]) for key in
                      ("output_tok_s", "ttft_p50_s", "ttft_p90_s", "ttft_max_s", "stream_decode_tok_s_p50", "wall_s",
                       "output_tokens")}
            row[s]["errors"] = sum(len(r["errors"]) for r in mine)
            row[s]["runs"] = len(mine)
        a = systems[0]  # ratios: the first system (ondol) over each other one
        for b in systems[1:]:
            if row[a]["output_tok_s"] and row[b]["output_tok_s"]:
                row.setdefault("ratio_tok_s", {})[b] = row[a]["output_tok_s"] / row[b]["output_tok_s"]
            if row[a]["ttft_p50_s"] and row[b]["ttft_p50_s"]:
                row.setdefault("ratio_ttft_p50", {})[b] = row[a]["ttft_p50_s"] / row[b]["ttft_p50_s"]
        rows.append(row)
    return rows


# --- facts and report ------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
            "python": platform.python_version()}


def versions(llama_server_bin: Path | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if llama_server_bin:
        with contextlib.suppress(Exception):
            r = subprocess.run([str(llama_server_bin), "--version"], capture_output=True, text=True, timeout=30)
            out["llama_server"] = " ".join((r.stdout + r.stderr).split("\n")[0:2]).strip()
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("ondol", "torch", "llama_cpp_python", "uvicorn", "fastapi"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    with contextlib.suppress(Exception):
        import torch

        out["torch_threads"] = torch.get_num_threads()
    with contextlib.suppress(Exception):
        import llama_cpp

        out["llama_cpp_system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        out["ondol_git"] = commit + ("+dirty" if dirty else "")
    return out


def check_tokenization(folder: Path, gguf: Path, prompts: list[str]) -> dict[str, Any]:
    """Prompt lengths by the HF tokenizer (ondol) and by llama.cpp's GGUF vocabulary."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = [len(tok.encode(p).ids) for p in prompts]
    out: dict[str, Any] = {"hf_prompt_tokens": {"min": min(hf), "max": max(hf), "mean": statistics.mean(hf)}}
    try:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        lc = [len(llm.tokenize(p.encode(), add_bos=True, special=True)) for p in prompts]
        out["llama_cpp_prompt_tokens"] = {"min": min(lc), "max": max(lc), "mean": statistics.mean(lc)}
        out["same_token_counts"] = sum(a == b for a, b in zip(hf, lc))
        out["prompts"] = len(prompts)
    except Exception as e:  # noqa: BLE001
        out["llama_cpp_error"] = f"{type(e).__name__}: {e}"
    return out


def fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(report: dict[str, Any]) -> str:
    systems, rows, cfg = report["systems"], report["summary"], report["config"]
    m, v = report["machine"], report["versions"]
    lines = [
        f"## {report['date']} — {cfg['shape']} ({cfg['params_m']:.0f}M params), {cfg['compare']}",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, {m['memory']}, Linux {m['kernel']}, Python {m['python']}; "
        f"shared with other work: each run waits (up to {cfg['settle']:.0f} s) for a quiet second, and the CPU "
        f"load of other processes during each run is in the JSON and summarized below.",
        "",
        "Versions: " + ", ".join(f"{k} {v[k]}" for k in ("ondol", "ondol_git", "torch", "llama_cpp_python", "uvicorn", "llama_server")
                                if k in v) + f"; torch threads {v.get('torch_threads', '?')}, llama.cpp n_threads {cfg['threads']}.",
        "",
        f"Per request: ~{cfg['prompt_tokens']} prompt tokens, max_tokens {cfg['max_tokens']}, temperature 0, "
        + ("end tokens banned" if cfg["any_output"] else "logit_bias -100 on every token that is not printable ASCII "
           "(end tokens included)") + f", ignore_eos. {cfg['repeats']} repeats, medians shown.",
        "",
    ]
    head = ["C"]
    for s in systems:
        head += [f"{s} tok/s"]
    head += [f"{systems[0]}/{b} tok/s" for b in systems[1:]]
    for s in systems:
        head += [f"{s} TTFT p50 (s)", f"{s} TTFT max (s)"]
    for s in systems:
        head += [f"{s} per-stream tok/s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["concurrency"])]
        cells += [fmt(row[s]["output_tok_s"], ".1f") for s in systems]
        cells += [fmt(row.get("ratio_tok_s", {}).get(b), ".2f") for b in systems[1:]]
        for s in systems:
            cells += [fmt(row[s]["ttft_p50_s"], ".3f"), fmt(row[s]["ttft_max_s"], ".3f")]
        cells += [fmt(row[s]["stream_decode_tok_s_p50"], ".1f") for s in systems]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for row in rows:
        for s in systems:
            if row[s]["errors"]:
                notes.append(f"C={row['concurrency']} {s}: {row[s]['errors']} failed requests (see JSON).")
    est = sum(r["tokens_estimated"] for r in report["runs"])
    if est:
        notes.append(f"{est} requests had no usage and did not finish by length: their token counts are text-chunk counts.")
    reasons: dict[str, dict[str, int]] = {}
    for r in report["runs"]:
        for k, n in r["finish_reasons"].items():
            reasons.setdefault(r["system"], {}).setdefault(str(k), 0)
            reasons[r["system"]][str(k)] += n
    notes.append("finish reasons: " + "; ".join(f"{s} {d}" for s, d in reasons.items()) + ".")
    if report.get("discarded_runs"):
        notes.append(f"{len(report['discarded_runs'])} runs were discarded and done again with fresh prompts because other "
                     f"processes used more than {cfg['busy_threshold']} CPUs meanwhile (kept in the JSON).")
    if report.get("llama_env"):
        notes.append("llama_cpp.server ran with " + ", ".join(f"`{e}`" for e in report["llama_env"]) + ".")
    tk = report.get("tokenization") or {}
    if "same_token_counts" in tk:
        notes.append(f"prompt lengths: HF tokenizer {tk['hf_prompt_tokens']['min']}–{tk['hf_prompt_tokens']['max']} tokens, "
                     f"llama.cpp's GGUF vocabulary gives the same count for {tk['same_token_counts']}/{tk['prompts']} prompts.")
    for s in systems:
        mine = [r for r in report["runs"] if r["system"] == s and r["server_logged"]]
        if mine:
            logged, asked = sum(r["server_logged"][1] for r in mine), sum(r["client_counted_tokens"] for r in mine)
            notes.append(f"{s}: tokens counted from its log ({logged} generated where the client asked for {asked}).")
            ms = [r["server_ms_per_decode"] for r in mine if r["server_ms_per_decode"]]
            if ms:
                notes.append(f"{s}: its own log's decode time per token ranged {min(ms):.1f}–{max(ms):.1f} ms over the runs "
                             f"(median {statistics.median(ms):.1f}).")
    foreign = [r["foreign_cpu_load"] for r in report["runs"]]
    if foreign:
        notes.append(f"CPU load of other processes during the runs (busy CPU time from /proc/stat less the servers' "
                     f"and the client's, per second; ±0.2 of tick noise): median {statistics.median(foreign):.2f}, "
                     f"max {max(foreign):.2f} CPUs (of {report['machine']['nproc']}).")
    idle = [x for r in report["runs"] for x in r["idle_other_cpu_s"].values() if x is not None]
    if idle:
        notes.append(f"CPU time the idle server used while the other was measured: at most {max(idle):.2f} s a run.")
    lines += [""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


DOC_INTRO = """# Serving benchmark

`benchmarks/serve.py` measures ondol's OpenAI-compatible server (`ondol serve`) against
llama-cpp-python's (`python -m llama_cpp.server`) on the same random-weight Llama checkpoint: the
Hugging Face folder for ondol, the same weights as GGUF for llama.cpp. The module docstring has the
method. Columns:

- **tok/s**: output tokens of all C streams / wall time from the first request sent to the last
  stream closed (median of the repeats);
- **TTFT p50 / max**: time from sending a request to its first streamed text, median and worst
  stream of a run (median of the repeats);
- **per-stream tok/s**: one stream's decode rate after its first text, (tokens − 1) / (last text
  chunk − first text chunk), median stream (median of the repeats).

llama-cpp-python's server serves one request at a time (a lock around one `Llama`; no parallel
slots or batching), so at C > 1 its streams queue: its throughput stays at the single-stream rate
and its TTFT grows with the queue. It runs with `--interrupt_requests False`, without which a
waiting request ends the running stream.

"""


def write_doc(path: Path, report: dict[str, Any]) -> None:
    text = path.read_text() if path.exists() else DOC_INTRO
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n\n" + markdown(report))


# --- main ------------------------------------------------------------------------------------


def param_count(folder: Path) -> int:
    from safetensors import safe_open

    n = 0
    for f in folder.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            n += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118
    return n


async def benchmark(args: argparse.Namespace, servers: list[Server], prompts: list[str], model: str) -> tuple[list, dict, list]:
    levels, reps = args.concurrency, args.repeats
    warm_n = min(4, max(levels))
    warm = list(enumerate(prompts[:warm_n + 1]))
    pool = iter(enumerate(prompts[warm_n + 1:], start=warm_n + 1))
    sanity = {}
    for s in servers:  # warm-up (not recorded) and one non-streamed request to compare the systems
        await run_level(s, servers, model, warm[:1], args.max_tokens, args.timeout)
        await run_level(s, servers, model, warm[1:], args.max_tokens, args.timeout)
        sanity[s.name] = await non_streaming(s, model, prompts[0], args.max_tokens, args.timeout)
    runs: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    step = 0
    for rep in range(reps):
        for c in levels:
            batch = [next(pool) for _ in range(c)]
            order = servers if step % 2 == 0 else servers[::-1]
            step += 1
            for s in order:
                prompts_now = batch
                for attempt in range(args.retry_busy + 1):
                    run = await run_level(s, servers, model, prompts_now, args.max_tokens, args.timeout, args.settle)
                    run["repeat"], run["attempt"] = rep, attempt
                    busy = run["foreign_cpu_load"] > args.busy_threshold
                    print(f"rep {rep} C={c:>3} {s.name:>12}: {fmt(run['output_tok_s'], '7.1f')} tok/s, "
                          f"TTFT p50 {fmt(run['ttft_p50_s'], '.3f')} s max {fmt(run['ttft_max_s'], '.3f')} s, "
                          f"{run['output_tokens']} tokens in {run['wall_s']:.1f} s, other load {run['foreign_cpu_load']:.2f} "
                          f"CPUs, errors {len(run['errors'])}" + (" -> discarded, again" if busy and attempt < args.retry_busy
                                                                   else ""), flush=True)
                    if not busy or attempt == args.retry_busy:
                        break
                    discarded.append(run)
                    prompts_now = [next(pool) for _ in range(c)]  # fresh prompts: no prefix cache from the discarded run
                runs.append(run)
    return runs, sanity, discarded


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny model, C = 1 4, 1 repeat, no doc")
    p.add_argument("--shape", type=parse_shape, help=f"{', '.join(f'{k}={h}x{n}' for k, (h, n) in SHAPES.items())} or HIDDENxLAYERS (default: default)")
    p.add_argument("--dtype", choices=DTYPES, default="f16", help="f16: ondol bfloat16 vs F16 GGUF (default); f32: float32 vs F32")
    p.add_argument("--systems", nargs="+", choices=SYSTEMS,
                   help="default: ondol llama.cpp (llama.cpp = llama-cpp-python's server; llama-server = llama.cpp's own, "
                        "with --llama-server-bin)")
    p.add_argument("--concurrency", type=int, nargs="+", help="default 1 4 16 64")
    p.add_argument("--repeats", type=int, help="default 3")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--any-output", action="store_true",
                   help="ban only the end tokens, not every token that is not printable ASCII (see non_text_token_ids)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length in tokens, BOS included (at most; default 64)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp n_threads and ondol's OMP_NUM_THREADS (default nproc)")
    p.add_argument("--llama-n-ctx", type=int, default=2048)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a request may take, queueing included")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=30.0,
                   help="before each run, wait up to this many seconds for other processes to leave the CPUs (0: don't)")
    p.add_argument("--busy-threshold", type=float, default=0.35,
                   help="a run during which other processes used more CPUs than this is discarded and done again")
    p.add_argument("--retry-busy", type=int, default=2, help="how many times a run is done again (default 2)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ondol-serve-bench"), help="models, server logs, JSON")
    p.add_argument("--json", type=Path, help="default WORKDIR/serve-<shape>-<dtype>.json")
    p.add_argument("--doc", type=Path, help="append the table here (default docs/serving-benchmark.md; none with --quick)")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--ondol-arg", action="append", default=[], help="extra argument for `ondol serve` (repeatable)")
    p.add_argument("--llama-arg", action="append", default=[], help="extra argument for llama_cpp.server (repeatable)")
    p.add_argument("--llama-server-bin", type=Path, help="llama.cpp's llama-server binary, for --systems ... llama-server")
    p.add_argument("--llama-server-arg", action="append", default=[], help="extra argument for llama-server (repeatable)")
    p.add_argument("--llama-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for llama_cpp.server (repeatable), e.g. PYTHONPATH=DIR for another build")
    args = p.parse_args(argv)

    hidden, layers = args.shape or (SHAPES["tiny"] if args.quick else SHAPES["default"])
    args.concurrency = args.concurrency or ([1, 4] if args.quick else [1, 4, 16, 64])
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.doc is None and not args.quick:
        args.doc = ROOT / "docs" / "serving-benchmark.md"
    if args.systems is None:
        args.systems = ["ondol", "llama.cpp"] if ondol_serve_available() else ["llama.cpp"]
        if "ondol" not in args.systems:
            print("`ondol serve` is not available: measuring llama.cpp alone", flush=True)
    args.systems = [s for s in SYSTEMS if s in args.systems]  # fixed order: ratios are ondol / each other

    args.workdir.mkdir(parents=True, exist_ok=True)
    folder, gguf = prepare_model(args.workdir, hidden, layers, args.dtype)
    warm_n = min(4, max(args.concurrency)) + 1
    spare = args.retry_busy * len(args.systems) * sum(args.concurrency)  # fresh prompts for runs done again
    prompts = make_prompts(folder, warm_n + args.repeats * sum(args.concurrency) + spare, args.prompt_tokens, seed=1234)
    tokenization = check_tokenization(folder, gguf, prompts) if {"llama.cpp", "llama-server"} & set(args.systems) else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = args.workdir / f"run-{stamp}"
    outdir.mkdir()
    servers = make_servers(args, folder, gguf, outdir)

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally below, which stops the servers

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    try:
        for s in servers:
            s.start(args.startup_timeout)
        runs, sanity, discarded = asyncio.run(benchmark(args, servers, prompts, folder.name))
    finally:
        for s in servers:
            s.stop()

    compare = {"f16": "ondol bfloat16 vs llama.cpp F16 GGUF", "f32": "ondol float32 vs llama.cpp F32 GGUF"}[args.dtype]
    report = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": "PYTHONPATH=. " + shlex.join([os.path.relpath(sys.executable, ROOT), "-m", "benchmarks.serve",
                                                 *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_facts(), "versions": versions(args.llama_server_bin if "llama-server" in args.systems else None),
        "config": {"shape": f"{hidden}x{layers}", "params_m": param_count(folder) / 1e6, "dtype": args.dtype,
                   "compare": compare, "concurrency": args.concurrency, "repeats": args.repeats,
                   "max_tokens": args.max_tokens, "prompt_tokens": args.prompt_tokens, "threads": args.threads,
                   "settle": args.settle, "busy_threshold": args.busy_threshold, "any_output": args.any_output,
                   "model_folder": str(folder), "gguf": str(gguf)},
        "llama_env": args.llama_env,
        "servers": {s.name: {"cmd": s.cmd, "startup_s": s.startup_s, "extra_body": s.extra_body, "log": str(s.log_path)}
                    for s in servers},
        "systems": args.systems, "tokenization": tokenization, "sanity": sanity,
        "summary": summarize(runs, args.systems, args.concurrency), "runs": runs, "discarded_runs": discarded,
    }
    json_path = args.json or outdir / f"serve-{hidden}x{layers}-{args.dtype}.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print()
    print(markdown(report))
    print(f"JSON: {json_path}")
    if args.doc and not args.no_doc:
        write_doc(args.doc, report)
        print(f"appended to {args.doc}")
    failed = sum(len(r["errors"]) for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
