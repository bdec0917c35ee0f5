"""What the person said verbatim outranks the small model's paraphrase.

The embedded model copies targets and numbers from the utterance, and a 5 M-parameter model
sometimes copies wrong: "침실 메인등 빨간색으로" becomes ``set_color ( 침실 등 )``, "볼륨 15로" becomes
``volume=155``. Both slips are checkable against the text itself:

* a call whose target phrase does not occur in the utterance — or repeats an earlier call's target
  in a request of several ("lock ( front door ) ; turn_off ( front door )" for "lock the front door
  and turn off the hall light") — gets the one device name the person said that no other call has;
* when the utterance holds exactly one number (outside the names it mentions) and exactly one call
  carries one number, the call's number is that one (a delta keeps its direction).

Only the model's output is corrected, never widened: a call is never added or dropped, and an
utterance naming several devices or numbers is left to the model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace

from ondol.home.homefile import HomeSpec
from ondol.home.intent import ASK, Call
from ondol.home.korean import number_words_to_digits, signed_numbers
from ondol.home.names import normalize

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _names_in(text: str, names: Sequence[str]) -> list[str]:
    """The home's names that occur in ``text`` (normalised), without those inside a longer one."""
    n = normalize(text)
    found = [name for name in names if normalize(name) and normalize(name) in n]
    return [a for a in found if not any(a != b and normalize(a) in normalize(b) for b in found)]


def ground(calls: list[Call], utterance: str, spec: HomeSpec) -> list[Call]:
    device_names = list(dict.fromkeys(n for d in spec.devices for n in d.names))
    mentioned = _names_in(utterance, device_names)
    said = normalize(utterance)
    out = list(calls)
    for i, call in enumerate(out):
        if not isinstance(call.target, str) or not call.target:
            continue
        repeated = any(isinstance(c.target, str) and normalize(c.target) == normalize(call.target) for c in out[:i])
        if normalize(call.target) in said and not repeated:
            continue
        taken = {normalize(c.target) for j, c in enumerate(out) if j != i and isinstance(c.target, str)}
        free = [m for m in mentioned if normalize(m) not in taken]
        if len(free) == 1:
            out[i] = replace(call, target=free[0].lower())
    return _ground_number(out, utterance, mentioned + [n for a in spec.areas for n in a.names])


def _ground_number(calls: list[Call], utterance: str, names: Sequence[str]) -> list[Call]:
    text = signed_numbers(number_words_to_digits(utterance))  # "영하 20" is -20, as the model wrote it
    for name in sorted(names, key=len, reverse=True):  # "2층 침실", "조명 1": numbers that are names
        text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE)
    numbers = [float(x) for x in _NUMBER.findall(text)]
    if len(numbers) != 1:
        return calls
    with_number = [(i, k) for i, c in enumerate(calls) for k, v in c.params.items()
                   if k != ASK and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(with_number) != 1:
        return calls
    (i, key), said = with_number[0], numbers[0]
    value = calls[i].params[key]
    if key == "delta":
        fixed = math.copysign(abs(said), value)
    else:
        fixed = said
    if fixed == value:
        return calls
    fixed = int(fixed) if float(fixed).is_integer() else fixed
    return [replace(c, params={**c.params, key: fixed}) if j == i else c for j, c in enumerate(calls)]


__all__ = ["ground"]
