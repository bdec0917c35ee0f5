"""``ondol home``: show a home, ask its assistant, serve its dashboard.

    ondol home show [FILE] [--apply JSON] [--json]      check a home file, list devices, apply actions
    ondol home ask "거실 에어컨 24도로 맞춰줘" [--home FILE] [--model M] [--json] [--dry-run]
    ondol home serve [--home FILE] [--model M] [--port 8080]

Without ``--home`` (or FILE) the demo home shipped with ondol is used; without ``--model`` the
assistant runs ondol's embedded on-device model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from ondol.errors import InvalidRequestError

EXIT_USER_ERROR = 1
DEMO_HOME = Path(__file__).with_name("demo-home.yaml")


def add_parser(sub: argparse._SubParsersAction) -> tuple[argparse._SubParsersAction, Callable]:
    h = sub.add_parser("home", help="a home's devices, its assistant and its dashboard (docs/home.md)")
    cmds = h.add_subparsers(dest="home_command", required=True, metavar="COMMAND")

    show = cmds.add_parser("show", help="check a home file and show its devices, or apply actions to it")
    show.add_argument("home", nargs="?", default=str(DEMO_HOME), help="home file (YAML or JSON); default: the demo home")
    show.add_argument("--apply", metavar="JSON", help="apply one action or a list of them and print the results")
    show.add_argument("--json", action="store_true", help="print JSON")
    _store_flag(show)
    show.set_defaults(run=_show)

    ask = cmds.add_parser("ask", help="say one request to the home's assistant and print its reply")
    ask.add_argument("text", help='what a person says, e.g. "거실 에어컨 24도로 맞춰줘" (\'-\' reads stdin)')
    ask.add_argument("--json", action="store_true",
                     help='print one JSON object: {"actions": [...], "reply": str, "answer": {...} or null}')
    ask.add_argument("--dry-run", action="store_true", help="resolve and validate the actions without applying them")
    _assistant_flags(ask)
    ask.set_defaults(run=_ask)

    ev = cmds.add_parser("eval", help="score the assistant: exact match, schema validity and latency (docs/assistant.md)")
    ev.add_argument("--model", metavar="M", help="model to score (default: the embedded model)")
    ev.add_argument("--generated", metavar="DIR", help="score a recipe's held-out generated split (DIR/data/eval.jsonl) "
                                                       "instead of the hand-written set")
    ev.add_argument("--fixture", metavar="DIR", help="a hand-written set: DIR/eval-home.yaml and DIR/commands.jsonl "
                                                     "(default: tests/fixtures/assistant in ondol's source tree)")
    ev.add_argument("--limit", type=int, help="score only the first N items")
    ev.add_argument("--misses", type=int, default=10, help="show up to N misses (default 10)")
    ev.add_argument("--json", action="store_true", help="print the full report as JSON")
    ev.set_defaults(run=_eval)

    # `ondol home serve` is the server's (ondol/server/dashboard.py), registered by ondol/cli.py:
    # the home layer does not import the server.
    return cmds, _assistant_flags


def _store_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="where state and audit live: sqlite:///path.db or postgresql://... "
                                   "(default: sqlite under ~/.local/share/ondol/homes)")


def _assistant_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="FILE", default=str(DEMO_HOME), help="home file (default: the demo home)")
    p.add_argument("--model", metavar="M", help="a Llama-family model folder or .gguf with a tool-calling chat "
                                                "template (default: ondol's embedded on-device model)")
    _store_flag(p)


def _show(args: argparse.Namespace) -> int:
    from ondol.home.home import Home
    from ondol.home.homefile import load_home_file

    spec = load_home_file(args.home)  # a bad file fails here, before any store is opened
    if args.apply is None and not args.store:
        if args.json:
            print(json.dumps(spec.to_dict(), ensure_ascii=False, indent=2))
            return 0
        _print_home(spec)
        return 0
    try:
        actions = json.loads(args.apply) if args.apply is not None else None
    except json.JSONDecodeError as e:
        raise InvalidRequestError(f"--apply: not valid JSON: {e}.") from None
    with Home(spec, store=args.store) as home:
        if actions is None:
            print(json.dumps(home.devices(), ensure_ascii=False, indent=2))
            return 0
        result = home.apply(actions, source="cli")
        print(json.dumps({"ok": result.ok, "seq": result.seq, "error": result.error, "results": result.results},
                         ensure_ascii=False, indent=2))
        return 0 if result.ok else EXIT_USER_ERROR


def _print_home(spec) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"home {spec.home} ({spec.language}): {len(spec.devices)} devices in {len(spec.areas)} areas")
    for column in ("area", "device", "type", "names"):
        table.add_column(column)
    areas = {a.id: a.names[0] if a.names else a.id for a in spec.areas}
    for d in spec.devices:
        kind = d.type + (f" ({d.device_class})" if d.device_class else "")
        table.add_row(areas.get(d.area, "-") if d.area else "-", d.id, kind, ", ".join(d.names))
    Console().print(table)


def _assistant(args: argparse.Namespace, home):
    from ondol.home.assistant import Assistant

    return Assistant(home, model=args.model)


def _ask(args: argparse.Namespace) -> int:
    import sys

    from ondol.home.home import Home

    text = sys.stdin.read() if args.text == "-" else args.text
    with Home.load(args.home, store=args.store) as home:
        result = _assistant(args, home).handle(text, dry_run=args.dry_run, source="cli")
        if args.json:
            print(json.dumps(result.to_json(), ensure_ascii=False))
        else:
            print(result.reply)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ondol.home.assistant import EMBEDDED_MODEL
    from ondol.home.evaluate import FIXTURE, evaluate_fixture, evaluate_generated

    model = args.model or EMBEDDED_MODEL
    if args.generated:
        data = Path(args.generated) / "data"
        report = evaluate_generated(model, data / "eval.jsonl", data / "eval-homes.json", limit=args.limit)
    else:
        report = evaluate_fixture(model, Path(args.fixture) if args.fixture else FIXTURE, limit=args.limit)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"exact match {report['exact_match']:.1%} on {report['examples']} items; "
          f"schema-valid {report['schema_valid']:.1%}")
    if "latency_ms" in report:
        lat = report["latency_ms"]
        print(f"latency per command: p50 {lat['p50']} ms, p95 {lat['p95']} ms, max {lat['max']} ms")
    for key, value in report["by"].items():
        print(f"  {key:<18} {value:.1%}")
    for miss in report["misses"][: args.misses]:
        print(f"  miss: {miss['text']!r}: expected {miss['outcome']}, got {miss['got']}: {miss['calls']}")
    return 0
