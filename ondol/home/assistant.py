"""The home assistant: what a person says -> validated actions on the home -> a short reply.

    assistant = Assistant(home)                       # ondol's embedded on-device model
    assistant = Assistant(home, model="path/to/llama-3.2-1b-instruct")   # any tool-calling Llama
    result = assistant.handle("거실 에어컨 24도로 맞춰줘")
    result.reply          # "거실 에어컨을 24도로 맞췄어요."
    result.to_json()      # {"actions": [{"device": "ac.living", "action": "set_temperature",
                          #   "params": {"temperature": 24}}], "reply": ..., "answer": None}

Two ways in, one way out. The embedded model writes compact calls (ondol/home/intent.py) under a
grammar built from this home; a chat model calls the home's tools (ondol/home/tools.py) through its
own chat template. Either way the calls become ``Call`` objects, and from there one path resolves
targets (docs/assistant-conventions.md), validates every action against the device types, applies
them all or none through ``Home.apply`` (which audits), and writes the reply (ondol/home/replies.py).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ondol.home import replies
from ondol.home.errors import HomeError, TargetError
from ondol.home.home import Home
from ondol.home.intent import ASK, COLORS, Call
from ondol.home.korean import has_hangul
from ondol.home.resolve import Resolver

EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "models" / "home-tiny"

# Generic verbs a person (or a model) uses for a device whose own action has another name.
ACTION_ALIASES: dict[str, dict[str, str]] = {
    "lock": {"open": "unlock", "close": "lock", "turn_off": "lock"},
    "robot_vacuum": {"turn_on": "start", "turn_off": "stop"},
    "scene": {"turn_on": "activate", "start": "activate"},
    "cover": {"turn_on": "open", "turn_off": "close"},
}


@dataclass(frozen=True)
class AssistantResult:
    """What one utterance led to. ``outcome``: done | answer | clarify | refused | none."""

    text: str
    language: str
    outcome: str
    reply: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    applied: bool = False
    seq: int | None = None
    calls: str | None = None  # what the model wrote, for the audit and for debugging
    reason: str | None = None  # why it was refused, as the home layer said it (the reply may be Korean)

    def to_json(self) -> dict[str, Any]:
        """The stable interface of ``ondol home ask --json`` and ``POST /commands``."""
        return {"actions": self.actions, "reply": self.reply, "answer": self.answer}


def detect_language(text: str) -> str:
    return "ko" if has_hangul(text) else "en"


class Assistant:
    def __init__(self, home: Home, model: str | Path | Any | None = None, *, interpreter: Any | None = None) -> None:
        """``model``: None for ondol's embedded model, a path, or a loaded ``LLM``. Models with
        ondol's compact format (a ``home-calls.json`` beside the weights) are driven by their
        grammar; any other model through its chat template's tool calls."""
        from ondol.home.interpret import interpreter_for

        self.home = home
        self.resolver = Resolver(home)
        self.interpreter = interpreter or interpreter_for(model if model is not None else EMBEDDED_MODEL, home)
        self._lock = threading.Lock()

    def handle(self, text: str, *, dry_run: bool = False, source: str = "assistant") -> AssistantResult:
        """Carry out one utterance (all or nothing) and say what happened. Thread-safe: one at a time."""
        text = text.strip()
        lang = detect_language(text)
        if not text:
            return AssistantResult(text, lang, "none", replies.not_a_request(lang))
        with self._lock:
            interpreted = self.interpreter.interpret(text)
            return self._carry_out(text, lang, interpreted, dry_run=dry_run, source=source)

    # --- from calls to an outcome -------------------------------------------------------------

    def _carry_out(self, text: str, lang: str, interpreted: Any, *, dry_run: bool, source: str) -> AssistantResult:
        calls: list[Call] = interpreted.calls
        raw = interpreted.raw
        if interpreted.missing is not None:
            return AssistantResult(text, lang, "refused", replies.missing(interpreted.missing, lang), calls=raw,
                                   reason=f"The home has no device called '{interpreted.missing}'.")
        if not calls:
            reply = interpreted.chat_reply or replies.not_a_request(lang)
            return AssistantResult(text, lang, "none", reply, calls=raw)
        queries = [c for c in calls if c.is_query]
        if queries and len(queries) == len(calls):
            return self._answer(text, lang, queries, raw)
        actions: list[dict[str, Any]] = []
        for call in (c for c in calls if not c.is_query):
            try:
                actions.extend(self._expand(call))
            except TargetError as e:
                return self._target_failure(text, lang, call, e, raw)
            except HomeError as e:
                return AssistantResult(text, lang, "refused", replies.refuse(str(e), None, lang), calls=raw,
                                       reason=str(e))
        # Resolved once, here: the home takes these device actions as they are (the shape --json
        # prints and POST /actions takes), without resolving names again.
        if dry_run:
            result = self.home.check(actions)
        else:
            result = self.home.apply(actions, source=source, utterance=text)
        if not result.ok:
            failed = next((r for r in result.results if not r["ok"] and "another part" not in (r["error"] or "")),
                          result.results[0])
            device = failed.get("device")
            name = replies.display_name(self.home.spec.device(device), lang) if device else None
            return AssistantResult(text, lang, "refused", replies.refuse(failed["error"] or "", name, lang),
                                   seq=None if dry_run else result.seq, calls=raw, reason=failed["error"])
        states = {r["device"]: {**self.home.state(r["device"]), **r["changed"]} for r in result.results if "device" in r}
        changed = any(r["changed"] for r in result.results)
        if changed or dry_run:
            reply = replies.done(self.home.spec, actions, states, lang)
        else:
            reply = replies.nothing_changed(self.home.spec, actions, lang)
        return AssistantResult(text, lang, "done", reply, actions, None, applied=not dry_run,
                               seq=None if dry_run else result.seq, calls=raw)

    def _target_failure(self, text: str, lang: str, call: Call, e: TargetError, raw: str | None) -> AssistantResult:
        """A target that fits several devices is a question back; one that fits none, a refusal."""
        if len(e.candidates) > 1 and e.ambiguous:
            return AssistantResult(text, lang, "clarify", replies.clarify(self.home.spec, e.candidates, lang), calls=raw)
        name = call.target if isinstance(call.target, str) else None
        return AssistantResult(text, lang, "refused", replies.refuse(str(e), name, lang), calls=raw, reason=str(e))

    def _expand(self, call: Call) -> list[dict[str, Any]]:
        """One call -> one action per device, with the device type's own action name and params."""
        ids = self.resolver.targets(call.target, every=call.every, action=call.action)
        out = []
        for device_id in ids:
            dtype = self.home.types[device_id]
            action = ACTION_ALIASES.get(dtype.name, {}).get(call.action, call.action)
            out.append({"device": device_id, "action": action, "params": _params(action, call.params)})
        return out

    def _answer(self, text: str, lang: str, queries: Sequence[Call], raw: str | None) -> AssistantResult:
        facts: dict[str, dict[str, Any]] = {}
        asked = None
        for q in queries:
            ask = q.params.get(ASK) if isinstance(q.params.get(ASK), str) else None
            asked = asked or ask
            try:
                ids = self.resolver.query_targets(q.target, every=q.every, ask=ask)
            except TargetError as e:
                return self._target_failure(text, lang, q, e, raw)
            for i in ids:
                state = self.home.state(i)
                attr = _attribute(ask, state)
                facts[i] = {attr: state[attr]} if attr else state
        reply = replies.answer(self.home.spec, facts, asked, lang)
        return AssistantResult(text, lang, "answer", reply, [], {"devices": facts}, calls=raw)


def _attribute(ask: str | None, state: Mapping[str, Any]) -> str | None:
    """The state attribute a question is about ("temperature" of an AC is its current temperature)."""
    if ask is None:
        return None
    if ask in state:
        return ask
    alternatives = {"temperature": ("current_temperature", "target_temperature", "fridge_temperature"),
                    "current_temperature": ("temperature",), "target_temperature": ("fridge_temperature",),
                    "position": ("contact",), "power": ("operational_state", "lock_state", "playback"),
                    "operational_state": ("power",)}
    return next((a for a in alternatives.get(ask, ()) if a in state), None)


def _params(action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if k != ASK}
    if action == "set_color" and isinstance(out.get("color"), str) and out["color"].lower() in COLORS:
        out["color"] = COLORS[out["color"].lower()]
    if action == "mute" and "muted" not in out:
        out["muted"] = True
    return out


__all__ = ["ACTION_ALIASES", "Assistant", "AssistantResult", "EMBEDDED_MODEL", "detect_language"]
