"""ondol's synthetic device-control data, in Korean and English.

Each example is an utterance and the compact calls it means (ondol/home/intent.py), said in a
random home (ondol/train/homes.py) following docs/assistant-conventions.md:

    {"home": 17, "lang": "ko", "intent": "set_temperature",
     "prompt": "거실에어컨 이십사 도로 맞춰줘", "completion": "set_temperature ( 거실 에어컨 ) temperature=24"}

It covers every device type, action and question of the home layer, relative changes, several
devices or "all" in one request, requests with no device ("조금 더 시원하게"), out-of-range values
and devices the home lacks (which the assistant must refuse), and things that are not device
requests at all (``none``). Third-party intent corpora are never used: they are kept for
independent evaluation.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ondol.home.homefile import DeviceSpec, HomeSpec
from ondol.home.intent import END, Call, format_calls, model_prompt
from ondol.train import say
from ondol.train.homes import KINDS, names_of, random_home



@dataclass(frozen=True)
class Example:
    home: int
    lang: str
    intent: str
    prompt: str
    completion: str

    def to_json(self) -> str:
        return json.dumps({"home": self.home, "lang": self.lang, "intent": self.intent,
                           "prompt": self.prompt, "completion": self.completion}, ensure_ascii=False)


# What kind of request, and how often (per language).
MIX: dict[str, float] = {
    "device": 46.0,       # one action on a device named by name, area + kind, or kind
    "every": 8.0,         # all lights in the bedroom, every AC
    "area": 2.0,          # "거실 다 꺼줘"
    "multi": 9.0,         # two requests in one
    "implied": 2.5,       # "조금 더 시원하게" (no device named)
    "query": 14.0,        # questions about state
    "every_query": 1.5,   # "are the bedroom lights on?", "거실 불 다 꺼져 있어?"
    "out_of_range": 3.0,  # "에어컨 10도로": said as said, refused by the home
    "missing": 3.5,       # a device this home does not have
    "none": 12.0,         # not a device request
}


def generate(n: int, seed: int, homes: int | None = None,
             mix: dict[str, float] | None = None) -> tuple[list[Example], list[HomeSpec]]:
    """``n`` examples over ``homes`` random homes (default n // 60), deterministic in ``seed``,
    drawn by ``mix`` (default ``MIX``: a training set may oversample the hard kinds, while a
    held-out split keeps the usual mix)."""
    rng = random.Random(seed)
    homes_list = [random_home(rng, i) for i in range(homes or max(1, n // 60))]
    mix = MIX if mix is None else mix
    if set(mix) - set(MIX):
        raise ValueError(f"unknown kinds of request in the mix: {sorted(set(mix) - set(MIX))}")
    kinds, weights = list(mix), list(mix.values())
    out: list[Example] = []
    while len(out) < n:
        h = rng.randrange(len(homes_list))
        home = homes_list[h]
        lang = rng.choice(["ko", "en"])
        intent = rng.choices(kinds, weights)[0]
        made = _MAKERS[intent](rng, home, lang)
        if made is None:
            continue
        text, calls, name = made
        text = _noise(rng, text, lang)
        out.append(Example(h, lang, name, text, format_calls(calls).lower()))
    return out, homes_list


def _noise(rng: random.Random, text: str, lang: str) -> str:
    if lang == "ko" and rng.random() < 0.3:
        text = say.squash(rng, text)
    if rng.random() < 0.08:
        text = say.typo(rng, text)
    if lang == "en" and rng.random() < 0.2:
        text = text.capitalize()
    return text


# --- targets -------------------------------------------------------------------------------------

def _kind_key(d: DeviceSpec) -> tuple[str, str | None]:
    key = (d.type, d.device_class)
    return key if key in KINDS else (d.type, None)


def _name(rng: random.Random, d: DeviceSpec, lang: str) -> str:
    names = names_of(d).ko if lang == "ko" else names_of(d).en
    return names[0] if rng.random() < 0.6 else rng.choice(names)


def _area_name(rng: random.Random, home: HomeSpec, area: str, lang: str) -> str:
    from ondol.home.korean import has_hangul

    names = [n for n in home.area(area).names if has_hangul(n) == (lang == "ko")] or list(home.area(area).names)
    return names[0] if rng.random() < 0.7 else rng.choice(names)


def _kind_word(rng: random.Random, d: DeviceSpec | tuple[str, str | None], lang: str) -> str:
    key = _kind_key(d) if isinstance(d, DeviceSpec) else d
    words = KINDS.get(key, KINDS.get((key[0], None), ((key[0],), (key[0],))))[0 if lang == "ko" else 1]
    return words[0] if rng.random() < 0.6 else rng.choice(words)


def _target(rng: random.Random, home: HomeSpec, d: DeviceSpec, lang: str) -> tuple[str, str]:
    """(what is said, the phrase the calls carry) for one device: usually one of its names,
    sometimes its area + a kind word ("거실에 있는 조명" -> "거실 조명")."""
    if d.area is None or d.type == "scene" or rng.random() < 0.8:
        phrase = _name(rng, d, lang)
        return phrase, phrase
    area, kind = _area_name(rng, home, d.area, lang), _kind_word(rng, d, lang)
    phrase = f"{area} {kind}"
    if lang == "ko":
        said = rng.choice([phrase, phrase, f"{area}에 있는 {kind}", f"{area}의 {kind}", f"{area} 쪽 {kind}"])
    else:
        said = rng.choice([phrase, phrase, f"{kind} in the {area}"])
    return said, phrase


def _pick(rng: random.Random, home: HomeSpec, types: tuple[str, ...] | None = None,
          has_action: str | None = None) -> DeviceSpec | None:
    from ondol.home.devices import device_type

    found = [d for d in home.devices if (types is None or d.type in types)
             and (has_action is None or has_action in device_type(d.type, d.device_class).actions)]
    return rng.choice(found) if found else None


# --- one action on one device ---------------------------------------------------------------------

Maker = Callable[[random.Random, HomeSpec, str], "tuple[str, list[Call], str] | None"]


def _device(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    d = _pick(rng, home)
    if d is None:
        return None
    said, phrase = _target(rng, home, d, lang)
    made = say.action(rng, d, said, lang, final=True)
    if made is None:
        return None
    text, action, params = made
    return text, [Call(action, phrase, params)], action


def _every(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    d = _pick(rng, home, ("light", "air_conditioner", "cover", "fan", "tv", "plug", "switch", "speaker", "thermostat"))
    if d is None:
        return None
    kind = _kind_word(rng, d, lang)
    in_area = d.area is not None and rng.random() < 0.6
    area = _area_name(rng, home, d.area, lang) if in_area else None
    said, kind = say.every_target(rng, kind, area, lang)
    phrase = f"{area} {kind}" if area else kind
    made = say.action(rng, d, said, lang, final=True, plural=True)
    if made is None:
        return None
    text, action, params = made
    return text, [Call(action, phrase, params, every=True)], "every_" + action


def _area(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    area = rng.choice(home.areas).id
    name = _area_name(rng, home, area, lang)
    on = rng.random() < 0.35
    if lang == "ko":
        text = f"{name}{rng.choice(['', '에', '에 있는 거'])} {rng.choice(['다', '전부', '모두'])} {say.ko_verb(rng, 'on' if on else 'off')}"
    else:
        verb = "on" if on else "off"
        text = say.en_wrap(rng, rng.choice([f"turn everything {verb} in the {name}", f"turn {verb} everything in the {name}",
                                            f"switch {verb} all the devices in the {name}"]))
    return text, [Call("turn_on" if on else "turn_off", name, every=True)], "area"


def _multi(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    parts, calls, used = [], [], set()
    count = rng.choice([2, 2, 2, 3])
    for i in range(count):
        d = _pick(rng, home)
        if d is None or d.id in used:  # one request per device: "켜고 … 켜줘" on one lamp is no request
            return None
        used.add(d.id)
        said, phrase = _target(rng, home, d, lang)
        made = say.action(rng, d, said, lang, final=i == count - 1)
        if made is None:
            return None
        text, action, params = made
        parts.append(text)
        calls.append(Call(action, phrase, params))
    return say.join(rng, parts, lang), calls, "multi"


def _implied(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    """ "조금 더 시원하게" (the air conditioner), "서재 좀 시원하게" (the study's)."""
    area = _area_name(rng, home, rng.choice(home.areas).id, lang) if home.areas and rng.random() < 0.4 else None
    text, delta = say.implied_temperature(rng, lang, area)
    kind = _kind_word(rng, ("air_conditioner", None), lang)
    return text, [Call("set_temperature", f"{area} {kind}" if area else kind, {"delta": delta})], "implied"


def _query(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    if rng.random() < 0.25 and home.areas:
        area = rng.choice(home.areas).id
        name = _area_name(rng, home, area, lang)
        text, ask = say.area_question(rng, name, lang)
        return text, [Call("get_state", name, {"ask": ask})], "query_area"
    d = _pick(rng, home)
    if d is None:
        return None
    said, phrase = _target(rng, home, d, lang)
    made = say.question(rng, d, said, lang)
    if made is None:
        return None
    text, ask = made
    return text, [Call("get_state", phrase, {"ask": ask} if ask else {})], "query"


def _every_query(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    """A question about all devices of a kind: "are the bedroom lights on?", "블라인드 다 닫혀 있어?"."""
    d = _pick(rng, home, ("light", "air_conditioner", "cover", "fan", "tv", "plug", "switch", "speaker"))
    if d is None:
        return None
    area = _area_name(rng, home, d.area, lang) if d.area is not None and rng.random() < 0.6 else None
    said, kind = say.every_target(rng, _kind_word(rng, d, lang), area, lang)
    text, ask = say.every_question(rng, said, "position" if d.type == "cover" else "power", lang)
    return text, [Call("get_state", f"{area} {kind}" if area else kind, {"ask": ask}, every=True)], "every_query"


def _out_of_range(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    d = _pick(rng, home, ("air_conditioner", "thermostat", "light", "tv", "speaker", "fan"))
    if d is None:
        return None
    said, phrase = _target(rng, home, d, lang)
    made = say.out_of_range(rng, d, said, lang)
    if made is None:
        return None
    text, action, params = made
    return text, [Call(action, phrase, params)], "out_of_range"


def _missing(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    """A device of a kind this home does not have, named by its kind word (and maybe an area)."""
    # By type, not (type, class): "스피커" fits every speaker, so a home with a soundbar has a speaker.
    present = {d.type for d in home.devices}
    absent = [k for k in KINDS if k[0] not in present and k[0] not in ("sensor", "scene")]
    if not absent:
        return None
    from ondol.home.homefile import DeviceSpec as Spec

    key = rng.choice(absent)
    fake = Spec("missing", key[0], (), None, key[1])
    kind = _kind_word(rng, key, lang)
    phrase = kind
    if home.areas and rng.random() < 0.5:
        phrase = f"{_area_name(rng, home, rng.choice(home.areas).id, lang)} {kind}"
    made = say.action(rng, fake, phrase, lang, final=True)
    if made is None:
        return None
    text, action, params = made
    return text, [Call(action, phrase, params)], "missing"


def _none(rng: random.Random, home: HomeSpec, lang: str) -> tuple[str, list[Call], str] | None:
    return say.chitchat(rng, lang), [], "none"


_MAKERS: dict[str, Maker] = {"device": _device, "every": _every, "area": _area, "multi": _multi, "implied": _implied,
                             "query": _query, "every_query": _every_query, "out_of_range": _out_of_range, "missing": _missing, "none": _none}


def write_jsonl(path: Path, examples: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"prompt": model_prompt(e.prompt), "completion": e.completion + END,
                                "home": e.home, "lang": e.lang, "intent": e.intent}, ensure_ascii=False) + "\n")


def write_homes(path: Path, homes: list[HomeSpec]) -> None:
    path.write_text(json.dumps([h.to_dict() for h in homes], ensure_ascii=False), encoding="utf-8")


def iter_text(examples: list[Example]) -> Iterator[str]:
    """Text for training the tokenizer: every prompt and completion, as the model sees them."""
    for e in examples:
        yield model_prompt(e.prompt) + e.completion + END


__all__ = ["Example", "MIX", "generate", "iter_text", "write_homes", "write_jsonl"]
