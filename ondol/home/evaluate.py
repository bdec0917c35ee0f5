"""Scoring the assistant: exact match of outcomes and actions, schema validity, latency.

Two sets (docs/assistant.md):
* the held-out split of ondol's generated data (other homes, other seeds than training): the gold
  calls and the model's calls both go through the assistant, and must lead to the same outcome,
  the same actions and the same devices read;
* the hand-written set in tests/fixtures/assistant/ (never trained on): 434 commands and questions
  over a home that is not the demo home, each with its expected outcome and actions.

An item matches when the outcome is the same and, for ``done``, the (device, action, params)
multiset is the same; for ``answer``, the set of devices read is the same. Every item runs as a
dry run against the home's initial state, so items do not depend on each other.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ondol.home.assistant import Assistant, AssistantResult
from ondol.home.home import Home
from ondol.home.homefile import load_home_file, parse_home
from ondol.home.intent import ACTIONS, PARAM_KEYS, parse_calls
from ondol.home.interpret import Interpreted

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "assistant"


def signature(outcome: str, actions: Iterable[Mapping[str, Any]], read: Iterable[str]) -> tuple:
    acts = sorted(json.dumps([a["device"], a["action"], dict(a["params"])], sort_keys=True) for a in actions)
    return outcome, tuple(acts), tuple(sorted(read))


def result_signature(r: AssistantResult) -> tuple:
    read = list((r.answer or {}).get("devices", {})) if r.outcome == "answer" else []
    return signature(r.outcome, r.actions if r.outcome == "done" else [], read)


def schema_valid(raw: str | None) -> bool:
    """The model's output is a well-formed call line using only known actions and parameters."""
    if raw is None:
        return False
    try:
        calls = parse_calls(raw.strip())
    except Exception:
        return False
    return all(c.action in ACTIONS and set(c.params) <= set(PARAM_KEYS) for c in calls)


class _Gold:
    """An interpreter that returns the calls a generated example was labelled with."""

    def __init__(self) -> None:
        self.calls = ""

    def interpret(self, text: str) -> Interpreted:
        return Interpreted(parse_calls(self.calls), self.calls)


def _summary(rows: list[dict[str, Any]], latencies: list[float]) -> dict[str, Any]:
    by: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        for key in ("lang", "outcome"):
            by[f"{key}:{r[key]}"]["n"] += 1
            by[f"{key}:{r[key]}"]["ok"] += r["match"]
    out = {"examples": len(rows), "exact_match": sum(r["match"] for r in rows) / max(1, len(rows)),
           "schema_valid": sum(r["valid"] for r in rows) / max(1, len(rows)),
           "by": {k: round(c["ok"] / c["n"], 4) for k, c in sorted(by.items())}}
    if latencies:
        q = statistics.quantiles(latencies, n=20)
        out["latency_ms"] = {"p50": round(statistics.median(latencies) * 1000, 1), "p95": round(q[18] * 1000, 1),
                             "max": round(max(latencies) * 1000, 1)}
    return out


def evaluate_generated(model: Path | Any, eval_jsonl: Path, homes_json: Path, limit: int | None = None) -> dict[str, Any]:
    """Exact match on the held-out generated split: the model's outcome vs the gold calls' outcome."""
    homes_data = json.loads(Path(homes_json).read_text(encoding="utf-8"))
    rows_in = [json.loads(line) for line in Path(eval_jsonl).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows_in = rows_in[:limit] if limit else rows_in
    from ondol.home.interpret import interpreter_for

    llm = None
    homes: dict[int, tuple[Home, Assistant, Assistant, _Gold]] = {}
    rows, latencies = [], []
    for item in rows_in:
        h = item["home"]
        if h not in homes:
            home = Home(parse_home(json.dumps(homes_data[h]), f"eval-home-{h}"), store="sqlite:///:memory:")
            interp = interpreter_for(model if llm is None else llm, home)
            llm = interp.llm
            gold = _Gold()
            homes[h] = (home, Assistant(home, interpreter=interp), Assistant(home, interpreter=gold), gold)
        home, assistant, gold_assistant, gold = homes[h]
        text = item["prompt"].removeprefix("<|user|>").removesuffix("<|calls|>").strip()
        gold.calls = item["completion"].removesuffix("<|end|>")
        expected = gold_assistant.handle(text, dry_run=True)
        started = time.perf_counter()
        got = assistant.handle(text, dry_run=True)
        latencies.append(time.perf_counter() - started)
        rows.append({"text": text, "lang": item["lang"], "outcome": expected.outcome, "got": got.outcome,
                     "match": result_signature(got) == result_signature(expected), "valid": schema_valid(got.calls),
                     "calls": got.calls, "gold": gold.calls, "intent": item.get("intent")})
    for home, *_ in homes.values():
        home.close()
    summary = _summary(rows, latencies)
    summary["misses"] = [r for r in rows if not r["match"]][:50]
    return summary


def evaluate_fixture(model: Path | Any | None = None, fixture: Path = FIXTURE, limit: int | None = None) -> dict[str, Any]:
    """Exact match on the hand-written set, with per-command latency (utterance -> validated actions)."""
    fixture = Path(fixture)
    if not (fixture / "commands.jsonl").exists():
        from ondol.home.errors import HomeError

        raise HomeError(f"No evaluation set in {fixture}: it lives in ondol's source tree (tests/fixtures/assistant/); "
                        "run from a checkout or give --fixture DIR.")
    spec = load_home_file(fixture / "eval-home.yaml")
    items = [json.loads(line) for line in (fixture / "commands.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    items = items[:limit] if limit else items
    with Home(spec, store="sqlite:///:memory:") as home:
        assistant = Assistant(home, model)
        getattr(assistant.interpreter, "warm_up", lambda: None)()
        rows, latencies = [], []
        for item in items:
            started = time.perf_counter()
            got = assistant.handle(item["text"], dry_run=True)
            latencies.append(time.perf_counter() - started)
            want = signature(item["outcome"], item["actions"], item.get("answer_devices", []))
            rows.append({"id": item["id"], "text": item["text"], "lang": item["lang"], "outcome": item["outcome"],
                         "got": got.outcome, "match": result_signature(got) == want, "valid": schema_valid(got.calls),
                         "calls": got.calls, "actions": got.actions, "reply": got.reply})
    summary = _summary(rows, latencies)
    summary["misses"] = [r for r in rows if not r["match"]]
    return summary


__all__ = ["FIXTURE", "evaluate_fixture", "evaluate_generated", "result_signature", "schema_valid", "signature"]
