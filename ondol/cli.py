"""``ondol`` command line: generate, chat, info, serve, quantize, bench (and home, train).

User errors (a wrong path, a corrupt file, a prompt too long) print one line to stderr and exit 1;
bad arguments exit 2 (argparse); Ctrl-C exits 130. No traceback reaches the user for any of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ondol.errors import InvalidRequestError, OndolError

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except OndolError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `ondol generate ... | head`
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ondol", description="Run Llama-family models on the devices people live with.")
    p.add_argument("--version", action="version", version=f"ondol {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="complete a prompt and print the text as it is generated")
    g.add_argument("model", help="Hugging Face model folder or .gguf file")
    g.add_argument("prompt", help="the prompt text ('-' reads it from stdin)")
    g.add_argument("--chat", action="store_true", help="wrap the prompt as a user message in the model's chat template")
    g.add_argument("--system", help="system message (with --chat)")
    g.add_argument("--json", action="store_true", help="print one JSON object with text, token ids and finish reason")
    _model_flags(g)
    _sampling_flags(g, max_tokens=256)
    g.set_defaults(run=_generate)

    c = sub.add_parser("chat", help="talk with a model interactively (streaming; /reset, /exit); without a "
                                    "model, talk to the home assistant (ondol's embedded model)")
    c.add_argument("model", nargs="?", help="Hugging Face model folder or .gguf file (default: the home "
                                            "assistant on --home)")
    c.add_argument("--system", help="system message for the conversation")
    c.add_argument("--home", metavar="FILE", help="the home the assistant controls when no model is given "
                                                  "(default: the demo home)")
    _model_flags(c)
    _sampling_flags(c, max_tokens=1024)
    c.set_defaults(run=_chat)

    i = sub.add_parser("info", help="describe a model without loading its weights")
    i.add_argument("model", help="Hugging Face model folder or .gguf file")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(run=_info)

    q = sub.add_parser("quantize", help="write a weight-only int8 or int4 copy of a Hugging Face model folder")
    q.add_argument("model", help="Hugging Face model folder (bf16/fp16/fp32 safetensors)")
    q.add_argument("out", help="the folder to write (must not exist, or be empty)")
    q.add_argument("--to", required=True, choices=["int8", "int4"], help="int8: 8-bit weights; int4: 4-bit weights")
    q.add_argument("--group-size", type=int, choices=[32, 64, 128],
                   help="inputs per scale (default: int8 one scale per output row, int4 64)")
    q.add_argument("--symmetric", action="store_true", help="int4 without zeros (llama.cpp Q4_0's rounding)")
    q.add_argument("--keep-head", action="store_true", help="leave the output head in full precision")
    q.add_argument("--keep-embeddings", action="store_true",
                   help="leave the token embeddings in full precision (tied embeddings follow the head)")
    q.set_defaults(run=_quantize)

    b = sub.add_parser("bench", help="measure ondol against llama.cpp and transformers on this machine")
    b.add_argument("--quick", action="store_true", help="a small model shape: the whole run in about a minute")
    b.add_argument("--repeats", type=_positive_int, help="runs of each system (default 3, --quick 1)")
    b.add_argument("--out", default="bench-results", help="where bench.json, bench.md and bench.png go")
    b.add_argument("--cache", help="where the benchmark's models are kept (default ~/.cache/ondol/bench)")
    b.add_argument("--systems", nargs="+", metavar="SYSTEM",
                   help="only these (ondol-bf16 ondol-int8 ondol-int4 llama.cpp-F16 llama.cpp-Q8_0 llama.cpp-Q4_0 "
                        "transformers-bf16; on request also ondol-gguf-Q8_0 ondol-gguf-Q4_0)")
    b.add_argument("--no-parity", action="store_true", help="skip comparing logits with llama.cpp's on the GGUF files")
    b.set_defaults(run=_bench)

    from ondol.server.keys import SERVE_MAX_BODY, add_access_flags, add_home_serve_parser

    v = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    v.add_argument("model", help="Hugging Face model folder or .gguf file")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    v.add_argument("--served-model-name", help="the model name clients send (default: MODEL as given)")
    v.add_argument("--max-waiting", type=_positive_int, default=256,
                   help="requests allowed to wait before new ones get 429 (default 256)")
    v.add_argument("--shutdown-grace", type=float, default=10.0,
                   help="seconds requests in flight get to finish on SIGTERM (default 10)")
    v.add_argument("--kv-cache-memory", type=_size, help="KV-cache memory, e.g. 512M or 2G (default 1G)")
    v.add_argument("--max-num-seqs", type=_positive_int, help="requests generated at once (default 64)")
    v.add_argument("--max-num-batched-tokens", type=_positive_int, help="tokens per forward (default 512)")
    v.add_argument("--no-prefix-caching", action="store_true", help="do not reuse KV blocks of shared prompt prefixes")
    v.add_argument("--template-timeout", type=_positive_float, metavar="SECONDS",
                   help="seconds a chat template may run before it is stopped (default 2; docs/security.md)")
    v.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _home_flags(v)
    _model_flags(v)
    add_access_flags(v, body_default=SERVE_MAX_BODY)
    v.set_defaults(run=_serve)

    from ondol.home.cli import add_parser as add_home_parser

    home_commands, assistant_flags = add_home_parser(sub)
    add_home_serve_parser(home_commands, assistant_flags)

    from ondol.train.cli import add_parser as add_train_parser

    add_train_parser(sub)
    return p


def _home_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="FILE", help="also serve this home's devices under /v1/homes (docs/home.md)")
    p.add_argument("--home-store", metavar="URL", help="the home's state store: sqlite:///path.db or postgresql://... "
                                                       "(default: sqlite under ~/.local/share/ondol/homes)")
    p.add_argument("--mqtt", metavar="URL", help="reach the home's devices over MQTT (mqtt://host:1883) instead of "
                                                 "the in-process simulator")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(value)


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="runtime dtype (default: auto = as stored; float16 and quantized run as bfloat16)")
    p.add_argument("--quant", choices=["int8", "int4"], help="quantize a full-precision model's weights as it loads "
                                                             "(quantized files run as stored)")
    p.add_argument("--max-model-len", type=int, help="cap the context length (default: the model's)")
    p.add_argument("--threads", type=_positive_int, help="CPU threads (default: one per physical core)")


def _sampling_flags(p: argparse.ArgumentParser, max_tokens: int) -> None:
    s = p.add_argument_group("sampling (defaults: the model's generation_config.json)")
    s.add_argument("-n", "--max-tokens", type=int, default=max_tokens, help=f"new tokens at most (default {max_tokens})")
    s.add_argument("-t", "--temperature", type=float, help="0 = greedy")
    s.add_argument("--top-k", type=int)
    s.add_argument("--top-p", type=float)
    s.add_argument("--min-p", type=float)
    s.add_argument("--repetition-penalty", type=float)
    s.add_argument("--presence-penalty", type=float)
    s.add_argument("--frequency-penalty", type=float)
    s.add_argument("--seed", type=int, help="same seed, same output")
    s.add_argument("--stop", action="append", default=[], help="stop before this string (repeatable)")
    s.add_argument("--stop-token-id", type=int, action="append", default=[], dest="stop_token_ids")
    s.add_argument("--ignore-eos", action="store_true", help="keep going past end tokens")
    s.add_argument("--logprobs", type=int, help="with --json: log-probabilities and N alternatives per token")
    x = p.add_argument_group("structure (docs/structured-output.md)").add_mutually_exclusive_group()
    x.add_argument("--json-schema", metavar="SCHEMA",
                   help="output one JSON document valid under SCHEMA: a file, or the schema's JSON text")
    x.add_argument("--grammar-file", metavar="FILE", help="output matching this Lark grammar (llguidance's dialect)")


def _sampling(llm, args: argparse.Namespace):
    from ondol.constrained import Grammar

    fields = {f.name for f in dataclasses.fields(llm.default_sampling_params())}
    # Only flags the user gave: None, [] and False mean "not given" (compared by identity, as 0 == False).
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None and v is not False and v != []}
    if getattr(args, "json_schema", None):
        given["grammar"] = Grammar.json_schema(_text_or_file(args.json_schema, "--json-schema"))
    elif getattr(args, "grammar_file", None):
        given["grammar"] = Grammar.lark(_text_or_file(args.grammar_file, "--grammar-file", inline=False))
    return dataclasses.replace(llm.default_sampling_params(), **given)


def _text_or_file(value: str, flag: str, inline: bool = True) -> str:
    """The flag's value as text: a file's contents, or (``inline``) the value itself when it is not a file."""
    path = Path(value)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidRequestError(f"{flag}: cannot read {path}: {e}.") from None
    if inline and value.lstrip().startswith("{"):
        return value
    raise InvalidRequestError(f"{flag}: no such file: {value}.")


def _serve(args: argparse.Namespace) -> int:
    import logging

    from ondol.loaders import open_checkpoint
    from ondol.server import create_app, serve
    from ondol.server.dashboard import announce_key
    from ondol.server.keys import access_from_args, key_path_for, resolve_key

    open_checkpoint(args.model)  # a wrong path or a corrupt file fails here, before a server starts
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    wanted = {"dtype": args.dtype, "quant": args.quant, "max_model_len": args.max_model_len, "threads": args.threads,
              "kv_cache_bytes": args.kv_cache_memory,
              "max_num_seqs": args.max_num_seqs, "max_num_batched_tokens": args.max_num_batched_tokens,
              "template_timeout": args.template_timeout,
              "enable_prefix_caching": False if args.no_prefix_caching else None, "progress": False}
    options = {k: v for k, v in wanted.items() if v is not None}
    home = assistant = None
    if args.home:
        from ondol.home.assistant import Assistant
        from ondol.home.drivers.mqtt import MqttDriver
        from ondol.home.home import Home

        home = Home.load(args.home, store=args.home_store, driver=MqttDriver(args.mqtt) if args.mqtt else None)
        # /commands speaks through the embedded model: small, instant, and the served model stays
        # free for chat (`ondol home serve --model` gives the assistant another model).
        assistant = Assistant(home)
    # A server that can move devices never runs without a key (one is generated beside the store).
    key = resolve_key(args, generate_at=key_path_for(home.id, home.store) if home is not None else None)
    app = create_app(args.model, served_model_name=args.served_model_name, access=access_from_args(args, key),
                     max_waiting=args.max_waiting, shutdown_grace_seconds=args.shutdown_grace, home=home,
                     assistant=assistant, **options)
    name = app.state.ondol.model_name

    def started(address: str) -> None:
        if home is not None:
            sessions = app.state.sessions
            announce_key(key.where, key.generated, f"{address}/login?once={sessions.one_time_token()}" if sessions else None)
        elif key.key is not None:
            print(f"the API key comes from {key.where}", flush=True)

    def ready(address: str) -> None:
        print(f"ondol is serving {name} at {address}/v1", flush=True)

    def failed(message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)

    app.state.ondol.on_failed.append(failed)
    return serve(app, args.host, args.port, log_level=args.log_level, on_ready=ready, on_started=started)


def _quantize(args: argparse.Namespace) -> int:
    from ondol.quant.convert import quantize_folder
    from ondol.quant.formats import QuantSpec

    options = {"head": not args.keep_head, "embeddings": not args.keep_embeddings}
    if args.symmetric:
        options["symmetric"] = True
    spec = QuantSpec.named(args.to, args.group_size, **options)
    r = quantize_folder(args.model, args.out, spec, progress=sys.stderr.isatty())
    print(f"wrote {r.out}: {r.tensors_quantized} weights as {spec.describe()}, "
          f"{r.bytes_in / 1e6:,.1f} MB -> {r.bytes_out / 1e6:,.1f} MB in {r.seconds:.1f} s")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ondol.bench.run import SYSTEMS, BenchConfig, bench, markdown

    cfg = BenchConfig(shape="quick" if args.quick else "llama-3.2-1b", repeats=args.repeats or (1 if args.quick else 3),
                      out=Path(args.out), systems=tuple(args.systems or SYSTEMS), parity=not args.no_parity,
                      **({"cache": Path(args.cache)} if args.cache else {}))
    report = bench(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(markdown(report))
    print(f"wrote {cfg.out / 'bench.json'}, bench.md and bench.png")
    return 0


def _load(args: argparse.Namespace):
    from ondol.llm import LLM

    return LLM(args.model, dtype=args.dtype, quant=args.quant, max_model_len=args.max_model_len, threads=args.threads)


def _generate(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    llm = _load(args)
    params = _sampling(llm, args)
    if args.chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": prompt}]
        ids = llm.chat_prompt(messages)
    else:
        ids = llm.encode(prompt)
    gen = llm.engine.stream(ids, params)
    if args.json:
        for _ in gen:
            pass
        c = gen.completion
        out = {"text": c.text, "token_ids": c.token_ids, "finish_reason": c.finish_reason,
               "prompt_tokens": len(c.prompt_token_ids)}
        if c.logprobs is not None:
            out["logprobs"] = [{"token_id": lp.token_id, "logprob": lp.logprob, "top": lp.top} for lp in c.logprobs]
        print(json.dumps(out, ensure_ascii=False))
        return 0
    for piece in gen:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


CHAT_HELP = """Type a message and press Enter. Commands:
  /reset   forget the conversation        /exit or /bye   leave (Ctrl-D works too)
  \"\"\"      start and end a multi-line message (pasted text keeps its lines)
  a line ending in \\ continues on the next line
Ctrl-C stops a reply in progress."""


def _chat(args: argparse.Namespace) -> int:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    if args.model is None:
        return _home_chat(args)
    llm = _load(args)
    params = _sampling(llm, args)
    if llm.tokenizer.chat_template is None:
        raise OndolError("This model has no chat template; use `ondol generate` for plain completion.")
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    print(f"ondol chat · {Path(args.model).name} · /help for commands", file=sys.stderr)
    while True:
        text = _read_message()
        if text is None or text.strip() in ("/exit", "/bye", "/quit"):
            return 0
        command = text.strip()
        if command == "/reset":
            history.clear()
            print("(conversation cleared)", file=sys.stderr)
            continue
        if command in ("/help", "/?"):
            print(CHAT_HELP, file=sys.stderr)
            continue
        if not command:
            continue
        history.append({"role": "user", "content": text})
        gen = llm.engine.stream(llm.chat_prompt(system + history), params)
        reply = []
        try:
            for piece in gen:
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
        sys.stdout.write("\n\n")
        history.append({"role": "assistant", "content": "".join(reply)})


def _home_chat(args: argparse.Namespace) -> int:
    """`ondol chat` with no model: each line is a request to the home assistant."""
    from ondol.home.assistant import Assistant
    from ondol.home.cli import DEMO_HOME
    from ondol.home.home import Home

    with Home.load(args.home or DEMO_HOME) as home:
        assistant = Assistant(home)
        print(f"ondol chat · home {home.id} · the embedded assistant · /exit to leave", file=sys.stderr)
        while True:
            text = _read_message()
            if text is None or text.strip() in ("/exit", "/bye", "/quit"):
                return 0
            if text.strip():
                print(assistant.handle(text, source="chat").reply + "\n")


def _read_message() -> str | None:
    """One user message: a line, a \\-continued line, or a \"\"\"-fenced block. None at EOF."""
    try:
        line = input(">>> ")
        if line.lstrip().startswith('"""'):
            body = line.lstrip()[3:]
            if body.strip() and body.rstrip().endswith('"""'):  # """one line"""
                return body.rstrip()[:-3]
            lines = [body]
            while not (nxt := input("... ")).rstrip().endswith('"""'):
                lines.append(nxt)
            lines.append(nxt.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        parts = [line]
        while parts[-1].endswith("\\"):
            parts[-1] = parts[-1][:-1]
            parts.append(input("... "))
        return "\n".join(parts)
    except EOFError:
        print(file=sys.stderr)
        return None


def _info(args: argparse.Namespace) -> int:
    from ondol.loaders import open_checkpoint, runtime_dtype

    ck = open_checkpoint(args.model)
    cfg = ck.config
    dtype = runtime_dtype(ck)
    # Runtime weights: every parameter in the runtime dtype; quantized files stay quantized, about
    # their size on disk (Q6_K/Q4_K blocks take 10-40 % more as ondol's layouts).
    weights = ck.size_bytes if ck.quantized else cfg.num_parameters * dtype.itemsize
    kv = cfg.kv_bytes_per_token(dtype.itemsize) * cfg.max_position_embeddings
    info = {
        "path": str(ck.path),
        "format": ck.format,
        "architecture": cfg.architecture,
        "parameters": cfg.num_parameters,
        "stored_types": ck.tensor_types,
        "quantization": ck.quant.to_json() if ck.quant else None,
        "runtime_dtype": str(dtype).removeprefix("torch."),
        "size_on_disk_bytes": ck.size_bytes,
        "memory_weights_bytes": weights,
        "memory_kv_cache_full_context_bytes": kv,
        "context_length": cfg.max_position_embeddings,
        "layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "heads": cfg.num_attention_heads,
        "kv_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "rope": {"type": cfg.rope.type, "theta": cfg.rope.theta, "factor": cfg.rope.factor},
        "tied_embeddings": cfg.tie_word_embeddings,
        "sliding_window": cfg.sliding_window,
    }
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("model", info["path"]),
        ("format", ck.format + "  (" + ", ".join(f"{k}×{v}" for k, v in ck.tensor_types.items()) + ")"
         + (f"  ·  ondol {ck.quant.describe()}" if ck.quant else "")),
        ("architecture", f"{cfg.architecture}  ·  {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
                         f"{cfg.num_attention_heads} heads / {cfg.num_key_value_heads} kv, head_dim {cfg.head_dim}"),
        ("parameters", _count(cfg.num_parameters)),
        ("vocabulary", f"{cfg.vocab_size:,}"),
        ("context", f"{cfg.max_position_embeddings:,} tokens  ·  rope {cfg.rope.type}, theta {cfg.rope.theta:g}"
                    + (f", factor {cfg.rope.factor:g}" if cfg.rope.type != "default" else "")),
        ("size on disk", _bytes(ck.size_bytes)),
        ("runtime dtype", info["runtime_dtype"]),
        ("memory needed", f"{_bytes(weights)} weights + {_bytes(cfg.kv_bytes_per_token(dtype.itemsize))} KV cache per "
                          f"token ({_bytes(kv)} at the full context)"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)
    return 0


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit} ({n:,})"
    return f"{n:,}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n}"


def _version() -> str:
    from ondol import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
