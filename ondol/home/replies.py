"""What the assistant says back, in the user's language: what was done, the answer to a question,
a clarifying question, a refusal with its reason.

Replies are written from the validated actions and the home's state, never by the model: a small
on-device model that mistyped a reply would be worse than a template that is always right.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ondol.home.homefile import DeviceSpec, HomeSpec
from ondol.home.intent import COLORS
from ondol.home.korean import has_hangul, josa
from ondol.home.vocab import vocabulary

# colour hex (what a device stores) -> (Korean word, English word), from the vocabulary files
COLOR_NAMES = {hex_: (vocabulary("ko").color_word(name), vocabulary("en").color_word(name))
               for name, hex_ in COLORS.items()}

# Per action: (Korean "을/를 ... 했어요" predicate, English "… <device>" verb)
_DONE = {
    "turn_on": ("켰어요", "Turned on {d}"), "turn_off": ("껐어요", "Turned off {d}"),
    "toggle": ("전환했어요", "Toggled {d}"), "open": ("열었어요", "Opened {d}"), "close": ("닫았어요", "Closed {d}"),
    "lock": ("잠갔어요", "Locked {d}"), "unlock": ("잠금 해제했어요", "Unlocked {d}"),
    "start": ("시작했어요", "Started {d}"), "stop": ("멈췄어요", "Stopped {d}"), "pause": ("일시정지했어요", "Paused {d}"),
    "return_to_base": ("충전대로 보냈어요", "Sent {d} back to its dock"), "activate": ("실행했어요", "Activated {d}"),
    "play": ("재생했어요", "Playing on {d}"), "next": ("다음 곡으로 넘겼어요", "Skipped to the next track on {d}"),
}
_MODE_KO = {"cool": "냉방", "heat": "난방", "dry": "제습", "fan": "송풍", "auto": "자동", "air_clean": "공기청정",
            "eco": "절약", "away": "외출", "manual": "수동", "sleep": "수면", "turbo": "터보", "normal": "일반",
            "natural": "자연풍", "quiet": "저소음", "mop": "물걸레", "rapid_cool": "급냉", "rapid_freeze": "급속냉동",
            "vacation": "휴가", "quick": "쾌속", "wool": "울", "delicate": "섬세", "heavy": "강력", "bedding": "이불",
            "baby_care": "아기옷", "rinse_spin": "헹굼탈수", "spin": "탈수", "towels": "수건", "air_dry": "자연건조",
            "intensive": "강력", "rinse": "헹굼", "low": "약", "medium": "중", "high": "강"}


def display_name(device: DeviceSpec, lang: str) -> str:
    """The device's first name in ``lang`` (Korean names contain Hangul), else its first name."""
    for name in device.names:
        if has_hangul(name) == (lang == "ko"):
            return name
    return device.names[0] if device.names else device.id


def _group(spec: HomeSpec, ids: Sequence[str], lang: str) -> str:
    """One device by name; several as "거실 조명 3개" / "3 lights in the living room" when they
    share a type and area, else a list."""
    devices = [spec.device(i) for i in ids]
    if len(devices) == 1:
        return display_name(devices[0], lang)
    areas = {d.area for d in devices}
    types = {d.type for d in devices}
    if len(types) == 1 and len(areas) == 1 and devices[0].area:
        area = spec.area(devices[0].area)
        area_name = next((n for n in area.names if has_hangul(n) == (lang == "ko")), area.names[0] if area.names else area.id)
        kind = devices[0].type.replace("_", " ")
        if lang == "ko":
            return f"{area_name} {_KIND_KO.get(devices[0].type, kind)} {len(devices)}개"
        return f"{len(devices)} {kind}s in the {area_name}"
    names = [display_name(d, lang) for d in devices]
    if lang == "ko":
        return ", ".join(names[:-2] + [josa(names[-2], "과/와") + " " + names[-1]])
    return ", ".join(names[:-1]) + " and " + names[-1]


_KIND_KO = {"light": "조명", "switch": "스위치", "plug": "플러그", "air_conditioner": "에어컨", "thermostat": "난방",
            "air_purifier": "공기청정기", "fan": "선풍기", "washer": "세탁기", "dryer": "건조기", "refrigerator": "냉장고",
            "dishwasher": "식기세척기", "robot_vacuum": "로봇청소기", "tv": "TV", "speaker": "스피커", "cover": "커튼/블라인드",
            "lock": "도어락", "sensor": "센서", "scene": "장면", "xr_headset": "헤드셋"}


def _value(action: str, params: Mapping[str, Any], state: Mapping[str, Any], lang: str) -> str | None:
    """The value an action left, as said: "24도", "밝기 70%", "blue"."""
    ko = lang == "ko"
    if action == "set_temperature":
        key = "freezer_temperature" if params.get("compartment") == "freezer" else (
            "fridge_temperature" if "fridge_temperature" in state else "target_temperature")
        v = _num(state.get(key))
        return f"{v}도" if ko else f"{v} °C"
    simple = {"set_brightness": ("brightness", "밝기 {v}%", "{v}% brightness"),
              "set_volume": ("volume", "볼륨 {v}", "volume {v}"), "set_position": ("position", "{v}% 열림", "{v}% open"),
              "set_channel": ("channel", "{v}번", "channel {v}"), "set_color_temperature": ("color_temperature", "{v}K", "{v} K")}
    if action in simple:
        key, k, e = simple[action]
        return (k if ko else e).format(v=_num(state.get(key)))
    if action == "set_fan_speed":
        v = state.get("fan_speed")
        return (f"바람 {_MODE_KO.get(v, v)}" if isinstance(v, str) else f"바람 {v}단") if ko else f"fan speed {v}"
    if action == "set_mode":
        v = params.get("mode")
        return f"{_MODE_KO.get(v, v)} 모드" if ko else f"{str(v).replace('_', ' ')} mode"
    if action == "set_color":
        names = COLOR_NAMES.get(str(params.get("color", "")).upper())
        return (names[0] if ko else names[1]) if names else str(params.get("color"))
    if action == "set_input":
        return str(params.get("input")).upper() if ko else str(params.get("input"))
    return None


def _num(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def done(spec: HomeSpec, actions: Sequence[Mapping[str, Any]], states: Mapping[str, Mapping[str, Any]], lang: str) -> str:
    """ "거실 에어컨을 24도로 맞췄어요." / "Turned off 3 lights in the bedroom." """
    sentences = []
    # Consecutive actions with the same verb and params read as one: "침실 조명 3개를 껐어요."
    groups: list[tuple[str, dict[str, Any], list[str]]] = []
    for a in actions:
        if groups and groups[-1][0] == a["action"] and groups[-1][1] == a["params"]:
            groups[-1][2].append(a["device"])
        else:
            groups.append((a["action"], dict(a["params"]), [a["device"]]))
    for action, params, ids in groups:
        who = _group(spec, ids, lang)
        state = states.get(ids[0], {})
        value = _value(action, params, state, lang)
        if action == "mute":
            muted = params.get("muted", True)
            sentences.append(f"{josa(who, '을/를')} {'음소거했어요' if muted else '음소거 해제했어요'}." if lang == "ko"
                             else f"{'Muted' if muted else 'Unmuted'} {who}.")
        elif action == "start" and params.get("cycle"):
            c = params["cycle"]
            sentences.append(f"{josa(who, '을/를')} {josa(_MODE_KO.get(c, c), '으로/로')} 시작했어요." if lang == "ko"
                             else f"Started {who} on {c.replace('_', ' ')}.")
        elif value is not None:
            sentences.append(f"{josa(who, '을/를')} {josa(value, '으로/로')} 맞췄어요." if lang == "ko"
                             else f"Set {who} to {value}.")
        elif action in _DONE:
            ko, en = _DONE[action]
            sentences.append(f"{josa(who, '을/를')} {ko}." if lang == "ko" else en.format(d=who) + ".")
        else:
            sentences.append(f"{who}: {action}" + ("." if lang == "en" else "했어요."))
    return " ".join(sentences)


def nothing_changed(spec: HomeSpec, actions: Sequence[Mapping[str, Any]], lang: str) -> str:
    """The command was valid but every device was already so ("불 꺼줘" with the light off)."""
    ids = list(dict.fromkeys(a["device"] for a in actions))
    who = _group(spec, ids, lang)
    if lang == "ko":
        return f"{josa(who, '은/는')} 이미 그렇게 되어 있어요."
    return f"{who[0].upper() + who[1:]} {'is' if len(ids) == 1 else 'are'} already that way."


# --- answers ---------------------------------------------------------------------------------------

_STATE_KO = {"on": "켜져 있어요", "off": "꺼져 있어요", "locked": "잠겨 있어요", "unlocked": "열려 있어요",
             "jammed": "걸려 있어요", "running": "작동 중이에요", "paused": "일시정지돼 있어요", "stopped": "멈춰 있어요",
             "docked": "충전대에 있어요", "cleaning": "청소 중이에요", "returning": "충전대로 돌아가는 중이에요",
             "error": "오류 상태예요", "playing": "재생 중이에요", "idle": "쉬고 있어요", "open": "열려 있어요",
             "closed": "닫혀 있어요"}
_ATTR_KO = {"target_temperature": "설정 온도", "current_temperature": "현재 온도", "temperature": "온도", "humidity": "습도",
            "brightness": "밝기", "volume": "볼륨", "channel": "채널", "battery": "배터리", "remaining_minutes": "남은 시간",
            "position": "열린 정도", "mode": "모드", "fan_speed": "바람 세기", "air_quality": "공기 질", "pm25": "미세먼지",
            "fridge_temperature": "냉장실 온도", "freezer_temperature": "냉동실 온도", "cycle": "코스", "input": "입력"}
_UNITS = {"target_temperature": ("도", " °C"), "current_temperature": ("도", " °C"), "temperature": ("도", " °C"),
          "fridge_temperature": ("도", " °C"), "freezer_temperature": ("도", " °C"), "humidity": ("%", "%"),
          "brightness": ("%", "%"), "battery": ("%", "%"), "position": ("%", "% open"), "remaining_minutes": ("분", " min"),
          "pm25": ("㎍/㎥", " µg/m³")}


def _fact(name: str, attr: str, value: Any, lang: str) -> str:
    ko = lang == "ko"
    if attr in ("power", "lock_state", "operational_state", "playback") and isinstance(value, str):
        if ko:
            return f"{josa(name, '은/는')} {_STATE_KO.get(value, value)}."
        return f"{_cap(name)} is {value.replace('_', ' ')}."
    if attr in ("contact", "motion", "leak", "smoke", "co", "muted") and isinstance(value, bool):
        words = {"contact": (("닫혀 있어요", "열려 있어요"), ("closed", "open")),
                 "motion": (("움직임이 감지됐어요", "움직임이 없어요"), ("detecting motion", "not detecting motion")),
                 "leak": (("누수가 감지됐어요", "누수가 없어요"), ("detecting a leak", "not detecting a leak")),
                 "smoke": (("연기가 감지됐어요", "연기가 없어요"), ("detecting smoke", "not detecting smoke")),
                 "co": (("일산화탄소가 감지됐어요", "일산화탄소가 없어요"), ("detecting CO", "not detecting CO")),
                 "muted": (("음소거 중이에요", "음소거가 아니에요"), ("muted", "not muted"))}[attr]
        if attr == "contact":  # contact true = closed
            pair = words[0] if ko else words[1]
            text = pair[0] if value else pair[1]
        else:
            text = (words[0] if ko else words[1])[0 if value else 1]
        return f"{josa(name, '은/는')} {text}." if ko else f"{_cap(name)} is {text}."
    unit = _UNITS.get(attr, ("", ""))
    shown = _MODE_KO.get(value, value) if ko and isinstance(value, str) else _num(value)
    if ko:
        return f"{name}의 {josa(_ATTR_KO.get(attr, attr), '은/는')} {josa(f'{shown}{unit[0]}', '이에요/예요')}."
    return f"The {attr.replace('_', ' ')} of {name} is {shown}{unit[1]}."


SUMMARY_ATTRS = ("power", "lock_state", "operational_state", "position", "target_temperature", "temperature",
                 "humidity", "brightness", "volume", "contact", "motion", "leak", "smoke")


def _cap(name: str) -> str:
    return "The " + name if name[:1].islower() else name


def answer(spec: HomeSpec, facts: Mapping[str, Mapping[str, Any]], ask: str | None, lang: str) -> str:
    """The answer to a question from the states read: one sentence per device (the asked attribute,
    or its main ones)."""
    sentences = []
    for device_id, state in facts.items():
        name = display_name(spec.device(device_id), lang)
        attrs = [ask] if ask and ask in state else [a for a in SUMMARY_ATTRS if a in state][:2]
        sentences.extend(_fact(name, a, state[a], lang) for a in attrs)
    return " ".join(sentences) or ("알 수 있는 상태가 없어요." if lang == "ko" else "There is nothing to report.")


# --- clarify, refuse, none ---------------------------------------------------------------------------

def clarify(spec: HomeSpec, candidates: Sequence[str], lang: str) -> str:
    names = [display_name(spec.device(i), lang) for i in candidates[:6]]
    if lang == "ko":
        return f"어느 기기를 말씀하시는 건가요? {', '.join(names)} 중에서 골라 주세요."
    return f"Which one do you mean: {', '.join(names[:-1])} or {names[-1]}?"


_RANGE = re.compile(r"(?:between|range:) (-?[\d.]+) (?:and|to) (-?[\d.]+) ?(°C|%|K)?")


def refuse(reason: str, name: str | None, lang: str) -> str:
    """A polite refusal; the reason in Korean for the common cases (a value out of range, an
    action the device does not have, a device the home does not have)."""
    m = _RANGE.search(reason)
    if lang == "en":
        if m:
            unit = f" {m.group(3)}" if m.group(3) == "°C" else (m.group(3) or "")
            return f"Sorry, {name or 'that device'} only goes from {_num(float(m.group(1)))} to {_num(float(m.group(2)))}{unit}."
        return f"Sorry, I can't do that: {reason[0].lower() + reason[1:] if reason else 'it is not possible'}"
    who = josa(name, "은/는") + " " if name else ""
    if m:
        unit = {"°C": "도", "%": "%", "K": "K"}.get(m.group(3) or "", "")
        return (f"죄송해요, {who}{_num(float(m.group(1)))}{unit}에서 {_num(float(m.group(2)))}{unit} 사이로만 "
                f"설정할 수 있어요.")
    if "does not support" in reason or "no action" in reason:
        return f"죄송해요, {who}그 기능을 지원하지 않아요."
    if "No device is called" in reason or "has no" in reason or "There is no" in reason:
        return "죄송해요, 이 집에는 그런 기기가 없어요."
    for pattern, said in _STATE_REASONS_KO:
        if m := pattern.search(reason):
            return f"죄송해요, {who}{said.format(*(_VALUE_KO.get(g, g) for g in m.groups()))}"
    return f"죄송해요, 지금은 할 수 없어요. ({reason})"


# The reasons a device's state gives for refusing an action (the capabilities' ``Refusal``
# clauses, and the driver's silence), said in Korean; what is not here keeps its English reason.
_STATE_REASONS_KO = [
    (re.compile(r"nothing is playing"), "지금 재생 중인 게 없어요."),
    (re.compile(r"reports an error; stop it to clear"), "오류 상태예요. 먼저 정지해서 오류를 지운 뒤 다시 시작해 주세요."),
    (re.compile(r"reports an error; stop it first"), "오류 상태예요. 먼저 정지해 주세요."),
    (re.compile(r"it is (\w+) with the (\w+) cycle"), "지금 {1} 코스로 {0}. 다른 코스는 멈춘 뒤에 고를 수 있어요."),
    (re.compile(r"it is (\w+); stop it before changing"), "지금 {0}. 코스는 멈춘 뒤에 바꿀 수 있어요."),
    (re.compile(r"it is (\w+), not running"), "지금 {0}. 작동 중일 때만 일시정지할 수 있어요."),
    (re.compile(r"no answer from the device"), "기기가 응답하지 않아요. 아무것도 바꾸지 않았어요."),
]
_VALUE_KO = {**_MODE_KO, **_STATE_KO, "paused": "일시정지 중이에요"}


def missing(phrase: str, lang: str) -> str:
    if lang == "ko":
        return f"죄송해요, 이 집에는 '{phrase}'라는 기기가 없어요."
    return f"Sorry, there is no device called '{phrase}' in this home."


def not_a_request(lang: str) -> str:
    if lang == "ko":
        return "저는 집 안의 기기를 다루는 도우미예요. 예를 들어 \"거실 불 켜줘\"라고 말해 보세요."
    return "I look after your home's devices. Try \"turn on the living room light\"."


__all__ = ["answer", "clarify", "display_name", "done", "missing", "not_a_request", "nothing_changed", "refuse"]
