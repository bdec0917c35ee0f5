"""The compact call language the embedded model speaks, and its grammar for one home.

A request becomes one line: ``none`` (not a device request) or calls joined by `` ; ``::

    set_temperature ( 거실 에어컨 ) temperature=24
    turn_off ( * 침실 조명 )                     "*": every device the phrase fits ("다 꺼", "all")
    set_brightness ( 스탠드 ) delta=-10
    get_state ( 현관문 ) ask=lock_state          a question: what to read, and about what
    turn_off ( 거실 불 ) ; turn_on ( tv )

The phrase is what the person said for the target, with particles and spacing set right ("거실불을"
-> "거실 불"); the assistant resolves it against the home (ondol/home/assistant.py). Values are as
said: numbers, enum values, colour words ("red"), ``true``/``false``. The format is short on
purpose: every output token costs a decode step on a device CPU, and the embedded model is small.
The spaces inside the parentheses matter to a byte-level tokenizer: they make a name's words the
same tokens in the calls as in the utterance (" 거실", not "거실"), so copying a name it has never
seen is copying tokens one for one.

``call_grammar(home)`` constrains the phrase to what the home can resolve (its device names, area
names, an area followed by a device name or a kind word, a kind word) and the rest to the format;
ranges are *not* constrained, so "에어컨 10도로" comes out as said and is refused by the home with
its reason, rather than being forced into some valid value the person never asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ondol.home.devices import DEVICE_TYPES
from ondol.home.errors import HomeError

# The embedded model's prompt: `<|user|> utterance<|calls|>`, then the calls and `<|end|>`.
PROMPT_START, PROMPT_END, END = "<|user|>", "<|calls|>", "<|end|>"
NONE = "none"
SEPARATOR = " ; "
ASK = "ask"  # get_state's parameter: the attribute asked about

# Colour words a model may write for set_color, mapped to what the device takes.
COLORS = {"red": "#FF0000", "orange": "#FFA500", "yellow": "#FFFF00", "green": "#00FF00", "blue": "#0000FF",
          "purple": "#800080", "pink": "#FFC0CB", "white": "#FFFFFF"}

_CALL = re.compile(r"^([a-z_]+) \( (\* )?(.+?) \)((?: [a-z_]+=[^ ,;]+(?:,[a-z_]+=[^ ,;]+)*)?)$")


@dataclass(frozen=True)
class Call:
    """One thing to do (or to read): ``action`` on what ``target`` names.

    ``target`` is a phrase (the embedded model) or an object as ``Home.apply`` takes it
    ({"device"}, {"area", "kind"}, {"kind"}, {"area"}: a tool-calling model). ``every`` says the
    person meant all the devices the phrase fits. For ``get_state``, ``params`` may hold ``ask``."""

    action: str
    target: str | Mapping[str, str]
    params: Mapping[str, Any] = field(default_factory=dict)
    every: bool = False

    @property
    def is_query(self) -> bool:
        return self.action == "get_state"

    def to_text(self) -> str:
        if not isinstance(self.target, str):
            raise HomeError("Only a phrase target has a compact form.")
        params = ",".join(f"{k}={_value_text(v)}" for k, v in self.params.items())
        return f"{self.action} ( {'* ' if self.every else ''}{self.target} )" + (f" {params}" if params else "")


def model_prompt(utterance: str) -> str:
    """The embedded model's whole prompt. Number words become digits first ("이십사 도" -> "24 도");
    the tokenizer lowercases; the leading space makes the first word the token it is mid-sentence."""
    from ondol.home.korean import number_words_to_digits

    return f"{PROMPT_START} {number_words_to_digits(utterance.strip())}{PROMPT_END}"


def format_calls(calls: Iterable[Call]) -> str:
    calls = list(calls)
    return SEPARATOR.join(c.to_text() for c in calls) if calls else NONE


def parse_calls(text: str) -> list[Call]:
    """Calls from a compact line; ``none`` is no calls. Raises HomeError naming the bad part."""
    text = text.strip()
    if text == NONE:
        return []
    calls = []
    for part in text.split(SEPARATOR):
        m = _CALL.match(part.strip())
        if m is None:
            raise HomeError(f"Not a call: {part.strip()!r} (expected 'action ( target ) key=value,...').")
        action, every, phrase, params = m.groups()
        values = dict(kv.split("=", 1) for kv in params.strip().split(",")) if params.strip() else {}
        calls.append(Call(action, phrase.strip(), {k: _parse_value(v) for k, v in values.items()}, every is not None))
    return calls


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


# --- the vocabulary: every action, parameter and enum value of every device type ---------------


def _vocabulary() -> tuple[list[str], list[str], list[str], list[str]]:
    actions, keys, words = {"get_state"}, {ASK}, set(COLORS) | {"max"}
    attributes = set()
    for dtype in DEVICE_TYPES.values():
        attributes.update(dtype.state_schema()["properties"])
        for action in dtype.action_names():
            actions.add(action)
            _collect(dtype.action_schema(action), keys, words)
    return sorted(actions), sorted(keys), sorted(words), sorted(attributes)


def _collect(schema: Any, keys: set[str], words: set[str]) -> None:
    if isinstance(schema, dict):
        for key, sub in schema.get("properties", {}).items():
            keys.add(key)
            for value in sub.get("enum", ()) if isinstance(sub, dict) else ():
                if isinstance(value, str):
                    words.add(value)
            if isinstance(sub, dict) and isinstance(sub.get("const"), str):
                words.add(sub["const"])
        for branch in schema.get("anyOf", ()):
            _collect(branch, keys, words)


ACTIONS, PARAM_KEYS, VALUE_WORDS, ATTRIBUTES = _vocabulary()


def call_grammar(phrases: Iterable[str], areas: Iterable[str], kind_words: Iterable[str]) -> str:
    """A Lark grammar (llguidance's dialect) for one home's calls. ``phrases`` are its device
    names, ``areas`` its area names, ``kind_words`` every kind word: a target is a name, an area, an
    area then a name or kind word, or a kind word.

    The target and its closing " )" are one lexeme (a regex terminal), not a rule over names: the
    lexer matches greedily, so with "거실" and "거실 에어컨" as separate lexemes, "거실" followed by
    " )" could never end — the space would always be read as the start of the longer name, and the
    model would be forced from "turn_off ( * 거실 )" into "turn_off ( * 거실 에어컨 )"."""
    names, area_names, kinds = _alternation(phrases), _alternation(areas), _alternation(kind_words)
    target = [names, kinds] + ([area_names, f"(?:{area_names}) (?:{names}|{kinds})"] if area_names else [])
    target_regex = "(?:\\* )?(?:" + "|".join(f"(?:{t})" for t in target) + ") \\)"
    return "\n".join([
        f'start: "{NONE}" | call ("{SEPARATOR}" call)*',
        'call: action " ( " TARGET (" " param ("," param)*)?',
        f"TARGET: /{target_regex}/",
        f"action: {_literals(ACTIONS)}",
        'param: key "=" value',
        f"key: {_literals(PARAM_KEYS)}",
        f"value: NUMBER | {_literals(VALUE_WORDS + ATTRIBUTES + ['true', 'false'])}",
        r"NUMBER: /-?[0-9]{1,4}(\.[05])?/",
    ])


def _literals(values: Iterable[str]) -> str:
    return " | ".join(json.dumps(v, ensure_ascii=False) for v in sorted(set(values)) if v)


def _alternation(values: Iterable[str]) -> str:
    """A regex matching exactly these strings (ASCII punctuation escaped; "/" too, for Lark)."""
    def escape(v: str) -> str:
        return "".join("\\" + c if (c.isascii() and not c.isalnum() and c not in " _") else c for c in v)

    return "|".join(escape(v) for v in sorted(set(values), key=len, reverse=True) if v and ")" not in v)


__all__ = ["ACTIONS", "ASK", "END", "PROMPT_END", "PROMPT_START", "model_prompt", "ATTRIBUTES", "COLORS", "Call", "NONE", "PARAM_KEYS", "VALUE_WORDS", "call_grammar",
           "format_calls", "parse_calls"]
