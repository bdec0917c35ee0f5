"""Requests and questions for each device type and action, in Korean and English, following
docs/assistant-conventions.md. Each function returns the utterance and what it means; the verbs,
endings and noise come from ondol/train/phrasing.py.
"""

from __future__ import annotations

import random
from typing import Any

from ondol.home.devices import device_type
from ondol.home.homefile import DeviceSpec
from ondol.home.intent import COLORS as INTENT_COLORS
from ondol.home.korean import josa
from ondol.home.vocab import vocabulary
from ondol.train.phrasing import en_number, en_the, en_wrap, ko_number, ko_object, ko_verb, squash, typo

__all__ = ["action", "area_question", "chitchat", "every_target", "implied_temperature", "join", "out_of_range",
           "question", "squash", "typo"]

Said = tuple[str, dict[str, Any]]

# Mode and speed words: value -> (Korean words, English words)
AC_MODES = {"cool": (["냉방"], ["cool", "cooling"]), "heat": (["난방"], ["heat", "heating"]),
            "dry": (["제습"], ["dry", "dehumidify"]), "fan": (["송풍"], ["fan"]), "auto": (["자동"], ["auto"]),
            "air_clean": (["공기청정"], ["air purifying"])}
THERMO_MODES = {"heat": (["난방"], ["heat"]), "cool": (["냉방"], ["cool"]), "auto": (["자동"], ["auto"]),
                "eco": (["절약", "에코"], ["eco"]), "away": (["외출"], ["away"])}
PURIFIER_MODES = {"auto": (["자동"], ["auto"]), "manual": (["수동"], ["manual"]), "sleep": (["수면", "취침"], ["sleep"]),
                  "turbo": (["터보", "강력"], ["turbo"])}
FAN_MODES = {"normal": (["일반풍", "일반"], ["normal"]), "natural": (["자연풍"], ["natural", "natural breeze"]),
             "sleep": (["수면풍", "취침풍"], ["sleep"])}
SPEEDS = {"high": (["세게", "강풍으로", "강으로"], ["high"]), "low": (["약하게", "약풍으로", "약으로"], ["low"]),
          "medium": (["중간으로", "중풍으로"], ["medium"]), "auto": (["자동으로"], ["auto"])}
VACUUM_MODES = {"auto": (["자동"], ["auto"]), "quiet": (["조용한", "저소음"], ["quiet"]), "turbo": (["터보", "강력"], ["turbo"]),
                "mop": (["물걸레"], ["mop", "mopping"])}
FRIDGE_MODES = {"rapid_cool": (["급냉", "급속냉장"], ["rapid cool", "quick cool"]),
                "rapid_freeze": (["급속냉동", "급냉동"], ["rapid freeze", "quick freeze"]),
                "vacation": (["휴가", "부재"], ["vacation"]), "normal": (["일반"], ["normal"])}
CYCLES = {"normal": (["표준"], ["normal", "standard"]), "quick": (["쾌속", "빠른"], ["quick", "speed"]),
          "wool": (["울"], ["wool"]), "delicate": (["섬세", "란제리"], ["delicate"]), "heavy": (["강력", "찌든때"], ["heavy duty"]),
          "bedding": (["이불"], ["bedding"]), "baby_care": (["아기옷"], ["baby care"]),
          "rinse_spin": (["헹굼탈수", "헹굼+탈수"], ["rinse and spin"]), "spin": (["탈수"], ["spin"]),
          "eco": (["절약", "에코"], ["eco"]), "towels": (["수건"], ["towels"]), "air_dry": (["자연건조", "에어드라이"], ["air dry"]),
          "intensive": (["강력", "불림"], ["intensive"]), "rinse": (["헹굼"], ["rinse"])}
# colour name -> (Korean words, English words): the vocabulary files' words, in their order
COLORS = {name: (list(vocabulary("ko").colors[name]), list(vocabulary("en").colors[name])) for name in INTENT_COLORS}
INPUTS_TV = {"hdmi1": (["HDMI1", "HDMI 1"], ["HDMI 1", "HDMI1"]), "hdmi2": (["HDMI2", "HDMI 2"], ["HDMI 2"]),
             "hdmi3": (["HDMI3"], ["HDMI 3"]), "usb": (["USB"], ["USB"]), "tv": (["TV", "방송"], ["TV", "antenna"])}
INPUTS_SPEAKER = {"bluetooth": (["블루투스"], ["bluetooth"]), "wifi": (["와이파이"], ["wifi", "wi-fi"]),
                  "aux": (["AUX"], ["aux"]), "optical": (["광"], ["optical"]), "hdmi_arc": (["HDMI ARC"], ["HDMI ARC"])}


def _w(rng: random.Random, table: dict[str, tuple[list[str], list[str]]], value: str, lang: str) -> str:
    return rng.choice(table[value][0 if lang == "ko" else 1])


class _Say:
    """One utterance being built: the device, what it is called, the language, and whether the
    Korean clause ends the sentence (else it joins the next with a 고-form)."""

    def __init__(self, rng: random.Random, d: DeviceSpec, said: str, lang: str, final: bool, plural: bool):
        self.rng, self.d, self.said, self.lang, self.final, self.plural = rng, d, said, lang, final, plural

    def ko(self, *parts: str, verb: str, obj: bool = True) -> str:
        # A quantified target ("불 다") takes no particle: "불 다를" is not Korean.
        target = ko_object(self.rng, self.said) if obj and not parts and not self.plural else self.said
        return " ".join(p for p in (self.rng.choice(["", "", "", "좀 "]) if not parts else "", target, *parts,
                                    ko_verb(self.rng, verb, self.final)) if p).replace("  ", " ")

    def the(self) -> str:
        return self.said if self.plural else en_the(self.rng, self.said)

    def en(self, *templates: str, **values: str) -> str:
        return en_wrap(self.rng, self.rng.choice(templates).format(t=self.the(), T=self.said, **values))

    def num(self, n: float) -> str:
        return ko_number(self.rng, n) if self.lang == "ko" else en_number(self.rng, n)


def _on_off(s: _Say, on: bool) -> Said:
    if s.lang == "ko":
        return s.ko(verb="on" if on else "off"), {}
    v = "on" if on else "off"
    return s.en(f"turn {v} {{t}}", f"turn {{t}} {v}", f"switch {v} {{t}}", f"switch {{t}} {v}", f"{{t}} {v}",
                f"i want {{t}} {v}", f"put {{t}} {v}"), {}


def _temperature(s: _Say, lo: float, hi: float) -> Said:
    r = s.rng
    if r.random() < 0.6:
        t = r.randint(int(lo), int(hi)) + (0.5 if r.random() < 0.08 else 0)
        n = s.num(t)
        if s.lang == "ko":
            deg = r.choice(["도로", " 도로", "도에", "도"]) if not n[-1].isdigit() or r.random() < 0.9 else "도로"
            verb = r.choice(["set", "set", "set", "up", "down"])  # "25도로 올려줘" is still 25 °C
            return r.choice([s.ko(f"{n}{deg}", verb=verb), s.ko(f"온도 {n}{deg}", verb=verb),
                             f"{s.said} {n}{deg}", s.ko(f"희망온도 {n}{deg}", verb=verb),
                             s.ko(f"온도를 {n}{deg}", verb=verb)]), {"temperature": t}
        return s.en("set {t} to {n} degrees", "set {t} to {n}", "{t} to {n} degrees", "make {t} {n} degrees",
                    "change {t} temperature to {n}", "set the temperature of {t} to {n} degrees",
                    "{t} at {n} please", n=n), {"temperature": t}
    up = r.random() < 0.5
    step = r.choice([1, 1, 2, 3]) if r.random() < 0.55 else None
    delta = (step or 1) * (1 if up else -1)
    if s.lang == "ko":
        if step:
            return s.ko(f"온도 {s.num(step)}도" if r.random() < 0.5 else f"{s.num(step)}도", verb="up" if up else "down",
                        obj=False), {"delta": delta}
        feel = r.choice(["따뜻하게", "덜 시원하게"]) if up else r.choice(["시원하게", "더 시원하게", "더 춥게"])
        return r.choice([s.ko(f"온도 {r.choice(['좀', '조금', '약간'])}", verb="up" if up else "down", obj=False),
                         s.ko(f"{r.choice(['좀', '조금'])} {feel}", verb="set", obj=False)]), {"delta": delta}
    if step:
        word = "up" if up else "down"
        return s.en(f"turn {{t}} {word} by {{n}} degrees", f"{{t}} {word} {{n}} degrees",
                    f"{'raise' if up else 'lower'} {{t}} by {{n}} degrees", n=s.num(step)), {"delta": delta}
    return s.en(f"make {{t}} a bit {'warmer' if up else 'cooler'}", f"turn {{t}} {'up' if up else 'down'} a little",
                f"{{t}} a little {'warmer' if up else 'colder'}", f"{'raise' if up else 'lower'} {{t}} temperature a bit"), {"delta": delta}


def _level(s: _Say, key: str, ko_word: str, en_word: str, step: int, up_ko: str, down_ko: str,
           top: int = 100, lo: int = 0) -> Said:
    r = s.rng
    x = r.random()
    if x < 0.45:
        v = r.randint(max(lo, 1), top) if top < 20 or r.random() < 0.5 else r.randrange(10, top + 1, 10)
        n = s.num(v)
        unit = r.choice(["%", "퍼센트", "프로", ""]) if key != "volume" else r.choice(["", "", "%"])
        if s.lang == "ko":
            verb = r.choice(["set", "set", up_ko, down_ko])  # "밝기 70%로 올려줘" is still 70 %
            return r.choice([s.ko(f"{ko_word} {josa(n + unit, '으로/로')}", verb=verb, obj=False),
                             s.ko(f"{ko_word}를 {josa(n + unit, '으로/로')}", verb="set", obj=False),
                             f"{s.said} {ko_word} {n}{unit}"]), {key: v}
        return s.en(f"set {{t}} {en_word} to {n}", f"{{t}} {en_word} {n}", f"set {{t}} to {n} percent" if key != "volume"
                    else f"set {{t}} volume to {n}", f"change the {en_word} of {{t}} to {n}",
                    f"{'dim' if key == 'brightness' else 'turn down'} {{t}} to {n}",
                    f"{'brighten' if key == 'brightness' else 'turn up'} {{t}} to {n}"), {key: v}
    if x < 0.53:
        if s.lang == "ko":
            return s.ko(f"{ko_word} 최대로", verb="set", obj=False), {key: top}
        return s.en(f"{{t}} {en_word} all the way up", f"max out {{t}} {en_word}", f"set {{t}} {en_word} to max"), {key: top}
    up = r.random() < 0.5
    n = r.choice([None, None, step, step * 2, 5, 20]) if key != "fan_speed" else r.choice([None, None, 1, 2])
    delta = (n or step) * (1 if up else -1)
    if s.lang == "ko":
        verb = up_ko if up else down_ko
        amount = s.num(n) + ("" if key == "fan_speed" else r.choice(["%", "", "퍼센트"])) if n else r.choice(["좀", "조금", "약간", "더"])
        return s.ko(f"{ko_word} {amount}", verb=verb, obj=False), {"delta": delta}
    word = "up" if up else "down"
    if n:
        return s.en(f"turn {{t}} {en_word} {word} by {s.num(n)}", f"{'raise' if up else 'lower'} {{t}} {en_word} by {s.num(n)}"), {"delta": delta}
    return s.en(f"turn {{t}} {en_word} {word}", f"turn {{t}} {word} a bit", f"{'raise' if up else 'lower'} {{t}} {en_word} a little",
                f"{{t}} {en_word} {word} a little"), {"delta": delta}


def _brightness(s: _Say) -> Said:
    r = s.rng
    if r.random() < 0.3:
        up = r.random() < 0.5
        if s.lang == "ko":
            return s.ko(r.choice(["좀 ", "조금 ", "더 ", ""]) + ("밝게" if up else "어둡게"), verb="set", obj=False), {"delta": 10 if up else -10}
        return s.en("make {t} brighter" if up else "dim {t}", "brighten {t}" if up else "make {t} dimmer",
                    "{t} a bit brighter" if up else "{t} a bit darker"), {"delta": 10 if up else -10}
    return _level(s, "brightness", "밝기", "brightness", 10, "up", "down")


def _choice(s: _Say, table: dict, key: str, values: tuple[str, ...], ko_suffix: str, en_forms: tuple[str, ...],
            action_word_ko: str = "set") -> Said:
    v = s.rng.choice([x for x in values if x in table])
    w = _w(s.rng, table, v, s.lang)
    if s.lang == "ko":
        return s.ko(josa(f"{w}{ko_suffix}", "으로/로"), verb=action_word_ko, obj=False), {key: v}
    return s.en(*(f.replace("{w}", w) for f in en_forms)), {key: v}


def _color(s: _Say) -> Said:
    r = s.rng
    if r.random() < 0.25:
        warm = r.random() < 0.5
        if s.lang == "ko":
            w = r.choice(["전구색", "따뜻한 색", "노란 불빛"] if warm else ["주광색", "하얀 불빛", "차가운 색"])
            return s.ko(josa(w, "으로/로"), verb="set", obj=False), {"color_temperature": 2700 if warm else 6500}
        w = r.choice(["warm white", "warm light"] if warm else ["cool white", "daylight"])
        return s.en(f"set {{t}} to {w}", f"make {{t}} {w}", f"{{t}} {w}"), {"color_temperature": 2700 if warm else 6500}
    return _choice(s, COLORS, "color", tuple(COLORS), "", ("make {t} {w}", "turn {t} {w}", "change {t} color to {w}",
                                                              "set {t} to {w}"))


def _cover(s: _Say, action: str) -> Said:
    r = s.rng
    if action in ("open", "close"):
        if s.lang == "ko":
            return s.ko(verb=action), {}
        return s.en(f"{action} {{t}}", f"{action} {{t}} please", f"can you {action} {{t}}"), {}
    if r.random() < 0.3:
        if s.lang == "ko":
            return s.ko(r.choice(["반만", "절반만", "반쯤"]), verb="open", obj=False), {"position": 50}
        return s.en("open {t} halfway", "open {t} half way", "half open {t}"), {"position": 50}
    if r.random() < 0.5:
        v = r.randrange(10, 100, 10)
        if s.lang == "ko":
            return s.ko(f"{s.num(v)}{r.choice(['%', '퍼센트', '프로'])}만", verb="open", obj=False), {"position": v}
        return s.en(f"open {{t}} to {v} percent", f"set {{t}} to {v}%", f"open {{t}} {v}%"), {"position": v}
    up = r.random() < 0.5
    if s.lang == "ko":
        return s.ko(r.choice(["조금 더", "좀 더", "조금"]), verb="open" if up else "close", obj=False), {"delta": 10 if up else -10}
    return s.en("open {t} a bit more" if up else "close {t} a little", "open {t} a little" if up else "close {t} a bit more"), \
        {"delta": 10 if up else -10}


def _appliance_start(s: _Say) -> Said:
    r = s.rng
    cycles = device_type(s.d.type).action_schema("start")["properties"].get("cycle", {}).get("enum", [])
    if cycles and r.random() < 0.5:
        c = r.choice([c for c in cycles if c in CYCLES])
        w = _w(r, CYCLES, c, s.lang)
        if s.lang == "ko":
            return s.ko(josa(w + r.choice(["", " 코스", "코스"]), "으로/로"), verb="start", obj=False), {"cycle": c}
        return s.en(f"start {{t}} on {w}", f"run {{t}} on the {w} cycle", f"start a {w} cycle on {{t}}"), {"cycle": c}
    if s.lang == "ko":
        return s.ko(verb="start"), {}
    return s.en("start {t}", "run {t}", "turn on {t} and start it" if False else "start {t} now"), {}


def _simple(s: _Say, meaning: str, en_forms: tuple[str, ...]) -> Said:
    if s.lang == "ko":
        return s.ko(verb=meaning), {}
    return s.en(*en_forms), {}


def _media(s: _Say, action: str) -> Said:
    r = s.rng
    if action == "mute":
        on = r.random() < 0.7
        if s.lang == "ko":
            return s.ko(verb="mute" if on else "unmute", obj=False), {"muted": on}
        return s.en("mute {t}", "mute {t} please", "silence {t}") if on else s.en("unmute {t}", "turn off mute on {t}"), {"muted": on}
    if action == "set_channel":
        if r.random() < 0.6:
            c = r.choice([r.randint(1, 30), r.randint(1, 300)])
            if s.lang == "ko":
                return s.ko(f"{josa(s.num(c) + '번', '으로/로')}" if r.random() < 0.5 else f"채널 {josa(s.num(c) + '번', '으로/로')}",
                            verb="set", obj=False), {"channel": c}
            return s.en(f"put {{t}} on channel {c}", f"{{t}} channel {c}", f"change {{t}} to channel {c}"), {"channel": c}
        up = r.random() < 0.5
        if s.lang == "ko":
            return s.ko(f"{'다음' if up else '이전'} 채널로", verb="set", obj=False), {"delta": 1 if up else -1}
        return s.en(f"channel {'up' if up else 'down'} on {{t}}", f"{'next' if up else 'previous'} channel on {{t}}"), {"delta": 1 if up else -1}
    if action == "set_input":
        table = INPUTS_TV if s.d.type == "tv" else INPUTS_SPEAKER
        return _choice(s, table, "input", tuple(table), "", ("switch {t} to {w}", "set {t} input to {w}", "{t} input {w}"))
    if action == "next":
        if s.lang == "ko":
            return s.ko("다음 곡", verb="next", obj=False), {}
        return s.en("next song on {t}", "skip to the next track on {t}", "{t} next track"), {}
    meaning = {"play": "play", "pause": "pause", "stop": "stop"}[action]
    if s.lang == "ko":
        return s.ko(verb=meaning), {}
    return s.en(f"{action} {{t}}", f"{action} the music on {{t}}"), {}


def _fridge(s: _Say) -> Said:
    r = s.rng
    freezer = r.random() < 0.4
    if s.lang == "ko":
        part = f"{s.said} 냉동실" if freezer else f"{s.said}" + r.choice(["", "", " 냉장실"])
        if s.said in ("냉장고", "냉동고") and r.random() < 0.5:  # the compartment alone names the fridge
            part = "냉동실" if freezer else "냉장실"
        if r.random() < 0.6:
            t = r.randint(-23, -15) if freezer else r.randint(1, 7)
            n = ("영하 " + s.num(-t)) if t < 0 and r.random() < 0.6 else s.num(t)
            text = r.choice([f"{part} 온도 {n}도로", f"{part} {n}도로"]) + " " + ko_verb(r, "set", s.final)
            return text, ({"compartment": "freezer"} if freezer else {}) | {"temperature": t}
        up = r.random() < 0.5
        return f"{part} 온도 {r.choice(['좀', '1도'])} " + ko_verb(r, "up" if up else "down", s.final), \
            ({"compartment": "freezer"} if freezer else {}) | {"delta": 1 if up else -1}
    part = f"{s.the()} freezer" if freezer else s.the()
    if s.said in ("fridge", "refrigerator") and r.random() < 0.5:
        part = "the freezer" if freezer else "the fridge"
    t = r.randint(-23, -15) if freezer else r.randint(1, 7)
    return en_wrap(r, r.choice([f"set the {part} to {s.num(t)} degrees", f"{part} temperature {s.num(t)}"])), \
        ({"compartment": "freezer"} if freezer else {}) | {"temperature": t}


_MODE_TABLES = {"air_conditioner": AC_MODES, "thermostat": THERMO_MODES, "air_purifier": PURIFIER_MODES,
                "fan": FAN_MODES, "robot_vacuum": VACUUM_MODES, "refrigerator": FRIDGE_MODES,
                "washer": CYCLES, "dryer": CYCLES, "dishwasher": CYCLES}


def _mode(s: _Say) -> Said:
    table = _MODE_TABLES[s.d.type]
    values = tuple(device_type(s.d.type).action_schema("set_mode")["properties"]["mode"]["enum"])
    suffix = s.rng.choice([" 모드", "모드", " 코스"]) if s.d.type in ("washer", "dryer", "dishwasher") else s.rng.choice([" 모드", "모드"])
    return _choice(s, table, "mode", values, suffix, ("set {t} to {w} mode", "put {t} in {w} mode", "{t} {w} mode",
                                                     "switch {t} to {w}"))


def _fan_speed(s: _Say) -> Said:
    if s.d.type == "fan":
        r = s.rng
        if r.random() < 0.5:
            n = r.randint(1, 5)
            if s.lang == "ko":
                return s.ko(f"{s.num(n)}단으로" if r.random() < 0.7 else f"바람 {s.num(n)}단계로", verb="set", obj=False), {"fan_speed": n}
            return s.en(f"set {{t}} to speed {n}", f"{{t}} speed {n}", f"put {{t}} on {n}"), {"fan_speed": n}
        if r.random() < 0.4:
            high = r.random() < 0.5
            if s.lang == "ko":
                return s.ko("바람 세게" if high else "바람 약하게", verb="set", obj=False), {"fan_speed": 5 if high else 1}
            return s.en("set {t} to the highest speed" if high else "set {t} to the lowest speed"), {"fan_speed": 5 if high else 1}
        return _level(s, "fan_speed", "바람", "speed", 1, "up", "down", top=5, lo=1)
    if s.lang == "ko":
        v = s.rng.choice(list(SPEEDS))
        return s.ko("바람 " + _w(s.rng, SPEEDS, v, "ko"), verb="set", obj=False), {"fan_speed": v}
    return _choice(s, SPEEDS, "fan_speed", tuple(SPEEDS), "", ("set {t} fan to {w}", "{t} fan speed {w}", "put {t} fan on {w}"))


ACTION_WEIGHTS = {"turn_on": 3.0, "turn_off": 3.0, "toggle": 0.0, "set_temperature": 4.0, "set_brightness": 3.0,
                  "set_color": 1.5, "set_color_temperature": 0.8, "set_mode": 2.0, "set_fan_speed": 2.0, "open": 2.0,
                  "close": 2.0, "set_position": 1.5, "lock": 2.0, "unlock": 1.5, "start": 3.0, "pause": 1.2,
                  "stop": 1.2, "return_to_base": 1.2, "activate": 2.0, "set_volume": 3.0, "mute": 1.5,
                  "set_channel": 1.5, "set_input": 1.0, "play": 1.0, "next": 1.0}


def action(rng: random.Random, d: DeviceSpec, said: str, lang: str, final: bool = True,
           plural: bool = False) -> tuple[str, str, dict[str, Any]] | None:
    """(utterance, action, params) for one request to ``d``, which the person calls ``said``."""
    dtype = device_type(d.type, d.device_class)
    names = [a for a in dtype.action_names() if ACTION_WEIGHTS.get(a, 0) > 0]
    if plural:  # "all the lights": actions people give to many devices at once
        names = [a for a in names if a in ("turn_on", "turn_off", "open", "close", "set_temperature", "set_brightness",
                                           "lock", "set_position")] or names
    if not names:
        return None
    name = rng.choices(names, [ACTION_WEIGHTS[a] for a in names])[0]
    s = _Say(rng, d, said, lang, final, plural)
    if name in ("turn_on", "turn_off"):
        text, params = _on_off(s, name == "turn_on")
    elif name == "set_temperature":
        text, params = _fridge(s) if d.type == "refrigerator" else _temperature(
            s, *((18, 28) if d.type == "air_conditioner" else (16, 30)))
    elif name == "set_brightness":
        text, params = _brightness(s)
    elif name in ("set_color", "set_color_temperature"):
        text, params = _color(s)
        name = "set_color" if "color" in params else "set_color_temperature"
    elif name == "set_mode":
        text, params = _mode(s)
    elif name == "set_fan_speed":
        text, params = _fan_speed(s)
    elif name in ("open", "close", "set_position"):
        text, params = _cover(s, name)
        name = "set_position" if params else name
    elif name in ("lock", "unlock"):
        text, params = _simple(s, name, (f"{name} {{t}}", f"{name} {{t}} please", f"can you {name} {{t}}")
                               if name == "lock" else ("unlock {t}", "open {t}", "unlock {t} please"))
    elif name == "start":
        text, params = _appliance_start(s) if d.type != "robot_vacuum" else _simple(
            s, "start", ("start {t}", "start cleaning with {t}", "run {t}", "have {t} clean"))
    elif name in ("stop", "pause") and d.type in ("washer", "dryer", "dishwasher", "robot_vacuum"):
        text, params = _simple(s, name, (f"{name} {{t}}", f"{name} {{t}} please"))
    elif name == "return_to_base":
        text, params = _simple(s, "dock", ("send {t} back to its dock", "send {t} home", "dock {t}", "{t} go charge"))
    elif name == "activate":
        text, params = _simple(s, "activate", ("activate {T}", "turn on {T}", "run {T}", "start {T}", "{T} mode on" if False else "set {T}"))
    elif name == "set_volume":
        text, params = _level(s, "volume", rng.choice(["볼륨", "소리", "음량"]), "volume", 10, "louder", "quieter")
    elif name in ("mute", "set_channel", "set_input", "play", "pause", "stop", "next"):
        text, params = _media(s, name)
    else:
        return None
    return text, name, params


# --- beyond one device ---------------------------------------------------------------------------

def every_target(rng: random.Random, kind: str, area: str | None, lang: str) -> tuple[str, str]:
    """(what is said, the kind word as the calls carry it): "거실 불 다", "모든 조명", "all the
    lights in the kitchen", "the bedroom lights"."""
    if lang == "ko":
        where = f"{area}{rng.choice(['', '', '에 있는', '의'])} " if area else ""
        said = rng.choice([f"{where}{kind} 다", f"{where}{kind} 전부", f"{where}{kind} 모두", f"모든 {where}{kind}" if not area
                           else f"{where}{kind} 다", f"{where}{kind}들 다"]).replace("  ", " ")
        return said, kind
    plural = _plural(kind)
    if not _is_kind_word(plural):  # "aircons" is no word the home knows: say it in the singular
        forms = [f"every {kind} in the {area}", f"all the {kind} in the {area}"] if area else [f"every {kind}", f"all the {kind}"]
        return rng.choice(forms), kind
    if area:
        return rng.choice([f"all the {plural} in the {area}", f"all {area} {plural}", f"the {area} {plural}",
                           f"all the {area} {plural}"]), plural
    return rng.choice([f"all the {plural}", f"all {plural}", f"the {plural}"]), plural


def _is_kind_word(word: str) -> bool:
    from ondol.home.devices import DEVICE_TYPES
    from ondol.home.names import kind_table, normalize

    global _KIND_WORDS
    if _KIND_WORDS is None:
        _KIND_WORDS = set(kind_table(DEVICE_TYPES))
    return normalize(word) in _KIND_WORDS


_KIND_WORDS: set[str] | None = None


def _plural(kind: str) -> str:
    if kind.endswith("s"):
        return kind
    return kind + ("es" if kind.endswith(("ch", "sh", "x")) else "s")


def join(rng: random.Random, parts: list[str], lang: str) -> str:
    if lang == "ko":
        return rng.choice([" ", " ", ", ", " 그리고 "]).join(parts)
    return ", ".join(parts[:-1]) + rng.choice([" and ", ", and ", " and also ", ", then "]) + parts[-1]


def implied_temperature(rng: random.Random, lang: str, area: str | None = None) -> tuple[str, int]:
    cooler = rng.random() < 0.6
    if lang == "ko":
        word = rng.choice(["시원하게", "더 시원하게", "춥게"]) if cooler else rng.choice(["따뜻하게", "덜 춥게", "더 따뜻하게"])
        where = f"{area}{rng.choice(['', '', ' 좀', '을', '를'])} " if area else ""
        where = josa(area, "을/를") + " " if area and where.endswith(("을 ", "를 ")) else where
        return f"{where}{rng.choice(['조금 ', '좀 ', '약간 ', ''])}{word} " + ko_verb(rng, "set"), -1 if cooler else 1
    if area:
        return en_wrap(rng, rng.choice([f"make the {area} {'cooler' if cooler else 'warmer'}",
                                        f"make it a bit {'cooler' if cooler else 'warmer'} in the {area}",
                                        f"{'cool' if cooler else 'warm'} the {area} {'down' if cooler else 'up'} a little"])), \
            -1 if cooler else 1
    return en_wrap(rng, rng.choice(["make it a bit cooler", "make it cooler in here", "cool it down a little"]
                                   if cooler else ["make it a bit warmer", "make it warmer in here", "warm it up a little"])), \
        -1 if cooler else 1


AREA_ASKS = {"temperature": (["몇 도야?", "온도 어때?", "지금 온도 알려줘", "온도 몇 도야?", "지금 몇 도야?"],
                             ["what's the temperature in the {a}?", "how warm is it in the {a}?", "how hot is the {a}?",
                              "what is the {a} temperature?"]),
             "humidity": (["습도 어때?", "습도 몇이야?", "습도 알려줘"], ["what's the humidity in the {a}?", "how humid is the {a}?"]),
             "motion": (["에 움직임 있어?", "에 누구 있어?"], ["is there any motion in the {a}?", "is anyone in the {a}?"])}


def area_question(rng: random.Random, area: str, lang: str) -> tuple[str, str]:
    ask = rng.choices(list(AREA_ASKS), [6, 3, 1])[0]
    ko, en = AREA_ASKS[ask]
    if lang == "ko":
        q = ko_polite(rng, rng.choice(ko))
        return (f"{area}{q}" if q.startswith("에") else f"{area} {q}"), ask
    return rng.choice(en).format(a=area), ask


# (Korean questions, English questions) by attribute; {t} is the device as said.
ASKS: dict[str, tuple[list[str], list[str]]] = {
    "power": (["{t} 켜져 있어?", "{t} 꺼져 있어?", "{t} 켜져있나?", "{t} 켜졌어?", "{t} 꺼졌어?"],
              ["is {t} on?", "is {t} off?", "did i leave {t} on?", "is {t} still on?"]),
    "lock_state": (["{t} 잠겼어?", "{t} 잠겨 있어?", "{t} 잠갔나?", "{t} 잠겨있어?", "{t} 열려 있어?"],
                   ["is {t} locked?", "did i lock {t}?", "is {t} unlocked?"]),
    "target_temperature": (["{t} 몇 도로 되어 있어?", "{t} 설정 온도 몇 도야?", "{t} 몇 도로 맞춰져 있어?"],
                           ["what is {t} set to?", "what temperature is {t} set to?"]),
    "remaining_minutes": (["{t} 얼마나 남았어?", "{t} 언제 끝나?", "{t} 몇 분 남았어?"],
                          ["how long until {t} is done?", "how much time is left on {t}?"]),
    "operational_state": (["{t} 돌아가고 있어?", "{t} 다 됐어?", "{t} 작동 중이야?"], ["is {t} running?", "is {t} done?"]),
    "position": (["{t} 열려 있어?", "{t} 얼마나 열려 있어?", "{t} 닫혀 있어?"],
                 ["is {t} open?", "is {t} closed?", "how far open is {t}?"]),
    "volume": (["{t} 볼륨 몇이야?", "{t} 소리 몇으로 돼 있어?"], ["what's {t} volume?", "how loud is {t}?"]),
    "battery": (["{t} 배터리 얼마 남았어?", "{t} 배터리 몇 퍼센트야?"], ["how much battery does {t} have?", "what's {t} battery level?"]),
    "brightness": (["{t} 밝기 몇이야?", "{t} 밝기 어느 정도야?"], ["how bright is {t}?", "what's {t} brightness?"]),
    "channel": (["{t} 지금 몇 번이야?", "{t} 몇 번 채널이야?"], ["what channel is {t} on?"]),
    "mode": (["{t} 무슨 모드야?", "{t} 모드 뭐야?"], ["what mode is {t} in?"]),
    "air_quality": (["{t} 공기 질 어때?", "{t} 공기 상태 어때?"], ["how is the air quality on {t}?"]),
    "pm25": (["{t} 미세먼지 얼마야?", "{t} 미세먼지 수치 알려줘"], ["what's the pm2.5 on {t}?"]),
    "temperature": (["{t} 몇 도야?", "{t} 온도 알려줘"], ["what does {t} read?", "what's the temperature on {t}?"]),
    "current_temperature": (["{t} 지금 실내 온도 몇 도야?"], ["what's the current temperature on {t}?"]),
    "humidity": (["{t} 습도 몇이야?"], ["what's the humidity on {t}?"]),
    "contact": (["{t} 열려 있어?", "{t} 닫혀 있어?"], ["is {t} open?"]),
    "leak": (["{t} 물 샌대?", "{t} 누수 감지됐어?"], ["is {t} detecting a leak?", "any leak on {t}?"]),
    "motion": (["{t} 움직임 감지됐어?"], ["does {t} see any motion?"]),
    "smoke": (["{t} 연기 감지됐어?"], ["is {t} detecting smoke?"]),
}


def question(rng: random.Random, d: DeviceSpec, said: str, lang: str) -> tuple[str, str | None] | None:
    attributes = [a for a in device_type(d.type, d.device_class).state_schema()["properties"] if a in ASKS]
    if d.type == "scene":
        return None
    if not attributes or rng.random() < 0.15:
        if lang == "ko":
            return ko_polite(rng, f"{said} {rng.choice(['상태 알려줘', '상태 어때?', '어때?', '상태 좀 봐줘'])}"), None
        return rng.choice([f"what's the status of {en_the(rng, said)}?", f"check {en_the(rng, said)}",
                           f"how is {en_the(rng, said)} doing?"]), None
    if d.type == "lock" and "lock_state" in attributes:
        ask = "lock_state"
    else:
        ask = rng.choice(attributes)
    ko, en = ASKS[ask]
    if lang == "ko":
        return ko_polite(rng, rng.choice(ko).format(t=said)), ask
    return rng.choice(en).format(t=en_the(rng, said)), ask


# Questions about several devices at once; {t} is said as every_target says it ("the bedroom lights").
EVERY_ASKS: dict[str, tuple[list[str], list[str]]] = {
    "power": (["{t} 켜져 있어?", "{t} 꺼져 있어?", "{t} 꺼졌어?", "{t} 켜져 있나?", "{t} 꺼져 있는지 알려줘"],
              ["are {t} on?", "are {t} off?", "did i leave {t} on?", "are {t} still on?", "is any of {t} on?"]),
    "position": (["{t} 열려 있어?", "{t} 닫혀 있어?", "{t} 얼마나 열려 있어?"],
                 ["are {t} open?", "are {t} closed?", "how far open are {t}?"]),
}


def ko_polite(rng: random.Random, question: str) -> str:
    """A casual Korean question or request made polite, sometimes: "잠겨 있어?" -> "잠겨 있나요?",
    "몇 도야?" -> "몇 도예요?", "알려줘" -> "알려주세요"."""
    if rng.random() < 0.6:
        return question
    if question.endswith("있어?"):
        return question[:-2] + rng.choice(["어요?", "나요?", "습니까?"])
    for casual, polite in (("어?", ["어요?"]), ("나?", ["나요?"]), ("야?", ["예요?"]), ("줘", ["주세요", "주실래요?"])):
        if question.endswith(casual):
            return question[: -len(casual)] + rng.choice(polite)
    return question


def every_question(rng: random.Random, said: str, ask: str, lang: str) -> tuple[str, str]:
    ko, en = EVERY_ASKS[ask]
    if lang == "ko":
        return ko_polite(rng, rng.choice(ko).format(t=said)), ask
    text = rng.choice(en).format(t=said)
    return (text.replace("any of all ", "any of ") if text.startswith("is any") else text), ask


def out_of_range(rng: random.Random, d: DeviceSpec, said: str, lang: str) -> tuple[str, str, dict[str, Any]] | None:
    if d.type in ("air_conditioner", "thermostat"):
        t = rng.choice([rng.randint(0, 15), rng.randint(31, 45)]) if d.type == "air_conditioner" else rng.randint(36, 60)
        if lang == "ko":
            return f"{said} {ko_number(rng, t)}도로 {ko_verb(rng, 'set')}", "set_temperature", {"temperature": t}
        return en_wrap(rng, f"set {en_the(rng, said)} to {en_number(rng, t)} degrees"), "set_temperature", {"temperature": t}
    if d.type == "fan":
        n = rng.randint(6, 10)
        if lang == "ko":
            return f"{said} {ko_number(rng, n)}단으로 {ko_verb(rng, 'set')}", "set_fan_speed", {"fan_speed": n}
        return en_wrap(rng, f"set {en_the(rng, said)} to speed {n}"), "set_fan_speed", {"fan_speed": n}
    key, action_name, word_ko = ("brightness", "set_brightness", "밝기") if d.type == "light" else ("volume", "set_volume", "볼륨")
    v = rng.randint(101, 200)
    if lang == "ko":
        return f"{said} {word_ko} {v}{rng.choice(['%', '', '으로'])} {ko_verb(rng, 'set')}".replace("  ", " "), action_name, {key: v}
    return en_wrap(rng, f"set {en_the(rng, said)} {key} to {v}"), action_name, {key: v}


_CHAT_KO = ["아 심심하다", "졸려", "피곤해", "배불러", "ㅋㅋㅋ", "음...", "안녕", "안녕하세요", "고마워", "고마워요", "잘했어", "오늘 날씨 어때?", "내일 비 와?", "농담 하나 해줘", "지금 몇 시야?",
            "배고파", "넌 누구야?", "이름이 뭐야?", "사랑해", "점심 뭐 먹지?", "심심해", "노래 불러줘", "오늘 무슨 요일이야?",
            "엄마한테 전화해줘", "피자 주문해줘", "알람 7시에 맞춰줘", "내일 일정 알려줘", "환율 알려줘", "재밌는 얘기 해줘",
            "너 몇 살이야?", "잘 자", "좋은 아침", "미안해", "수고했어", "뭐 하고 있어?", "오늘 뉴스 알려줘", "영어로 사과가 뭐야?",
            "주말에 뭐 하지?", "기분이 안 좋아", "택시 불러줘", "주식 어때?", "라면 끓이는 법 알려줘", "운동 추천해줘",
            "이 노래 제목이 뭐야?", "서울 인구 몇 명이야?", "아니야 됐어", "취소", "그냥 불러봤어", "응", "아니", "괜찮아"]
_CHAT_EN = ["ugh i'm tired", "lol", "hmm", "i'm so full", "hi", "hello there", "thanks", "thank you so much", "good job", "what's the weather like today?",
            "will it rain tomorrow?", "tell me a joke", "what time is it?", "i'm hungry", "who are you?", "what's your name?",
            "i love you", "what should i eat for lunch?", "i'm bored", "sing me a song", "what day is it today?",
            "call my mom", "order a pizza", "set an alarm for 7 am", "what's on my calendar tomorrow?",
            "what's the exchange rate?", "tell me something funny", "how old are you?", "good night", "good morning",
            "sorry", "how are you?", "what's in the news today?", "how do you say apple in korean?",
            "what should i do this weekend?", "i'm feeling down", "call me a taxi", "how are stocks doing?",
            "how do i cook ramen?", "recommend a workout", "what's this song called?", "what's the population of seoul?",
            "never mind", "cancel", "just testing", "yes", "no", "ok cool"]


_TOPICS_KO = ["날씨", "주식", "뉴스", "환율", "일정", "맛집", "영화", "노래", "축구 경기", "시간", "내일 약속", "버스 시간",
              "오늘 운세", "점심 메뉴", "저녁 메뉴", "여행지", "책", "드라마", "게임", "로또 번호"]
_TOPICS_EN = ["the weather", "stocks", "the news", "the exchange rate", "my schedule", "restaurants", "movies",
              "music", "the game", "the time", "my meeting", "the bus", "my horoscope", "lunch", "dinner",
              "travel", "books", "a show", "games", "the lottery"]


def chitchat(rng: random.Random, lang: str) -> str:
    r = rng.random()
    if r < 0.2:
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        if lang == "ko":
            return rng.choice([f"{a} 더하기 {b}는?", f"{a} 곱하기 {b}은 뭐야?", f"{a} 빼기 {b}", f"{a}+{b}는 얼마야?"])
        return rng.choice([f"what is {a} plus {b}?", f"{a} times {b}", f"what's {a} minus {b}?"])
    if r < 0.45:
        if lang == "ko":
            t = rng.choice(_TOPICS_KO)
            return rng.choice([f"{t} 알려줘", f"{t} 어때?", f"오늘 {t} 어때?", f"{t} 추천해줘", f"{t} 좀 찾아봐", f"{t} 얘기 해줘"])
        t = rng.choice(_TOPICS_EN)
        return rng.choice([f"tell me about {t}", f"how about {t}?", f"what's up with {t}?", f"recommend {t}",
                           f"look up {t}", f"any news on {t}?"])
    text = rng.choice(_CHAT_KO if lang == "ko" else _CHAT_EN)
    if rng.random() < 0.3:
        text = (rng.choice(["음 ", "저기 ", "야 ", "있잖아 "]) if lang == "ko" else rng.choice(["hey ", "so ", "um, "])) + text
    return text
