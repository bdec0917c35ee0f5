"""Device types: capabilities with a type's own values, and the one place actions are validated.

``DEVICE_TYPES`` maps each type name to a ``DeviceType``. ``DeviceType.apply_action(action, params,
state)`` is the whole contract of an action: it checks the action is supported, checks the params
against the action's JSON Schema, applies the capability's pure function and checks the resulting
state against the type's state schema. It returns the attributes that change, or raises
``ActionError`` with a sentence saying why; either way the given state is untouched.

Messages are written for a person (or a model correcting its own tool call): they name the
parameter, the range and unit, the allowed values or the supported actions.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from ondol.home import capabilities as cap
from ondol.home.capabilities import ActionSpec, Attribute, Capability, Refusal
from ondol.home.errors import ActionError, HomeError

# Every action name the assistant may use (issue 5); each type supports a subset.
ACTION_NAMES = (
    "turn_on", "turn_off", "toggle", "set_brightness", "set_color", "set_color_temperature",
    "set_temperature", "set_mode", "set_fan_speed", "open", "close", "set_position", "lock", "unlock",
    "start", "pause", "stop", "return_to_base", "set_volume", "mute", "set_channel", "set_input",
    "play", "next", "activate",
)  # fmt: skip


@dataclass(frozen=True)
class DeviceType:
    """A kind of device. ``device_classes`` are its finer kinds (cover: curtain, blind...);
    ``kind_names`` the words people use for any device of the type; ``class_names`` the words for
    one class ("커튼" means covers of class curtain, not the garage door); ``class_capabilities``
    the capabilities a class has when it has fewer than the type (a contact sensor reports no
    temperature): see ``for_class``."""

    name: str
    capabilities: tuple[Capability, ...]
    device_classes: tuple[str, ...] = ()
    kind_names: tuple[str, ...] = ()
    class_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    class_capabilities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    label: str = ""  # how messages name the type; defaults to the name with spaces

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", MappingProxyType(dict(self.class_names)))
        object.__setattr__(self, "class_capabilities", MappingProxyType(dict(self.class_capabilities)))
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " "))
        # Two capabilities defining one attribute or action would make one silently win: refuse.
        seen_attributes: set[str] = set()
        seen_actions: set[str] = set()
        for capability in self.capabilities:
            for kind, seen, names in (("attribute", seen_attributes, capability.attributes),
                                      ("action", seen_actions, capability.actions)):
                twice = seen.intersection(names)
                if twice:
                    raise ValueError(f"{self.name}: {kind} {sorted(twice)} defined by two capabilities")
                seen.update(names)
        unknown = (set(self.class_names) | set(self.class_capabilities)) - set(self.device_classes)
        if unknown:
            raise ValueError(f"{self.name}: classes {sorted(unknown)} are not in device_classes")

    def __hash__(self) -> int:  # usable as a key, though its fields hold mappings
        return hash((self.name, tuple(c.name for c in self.capabilities)))

    # --- the type's shape ---------------------------------------------------------------------------------

    @cached_property
    def attributes(self) -> Mapping[str, Attribute]:
        return MappingProxyType({n: a for c in self.capabilities for n, a in c.attributes.items()})

    @cached_property
    def actions(self) -> Mapping[str, ActionSpec]:
        return MappingProxyType({n: a for c in self.capabilities for n, a in c.actions.items()})

    def action_names(self) -> tuple[str, ...]:
        return tuple(self.actions)

    def state_schema(self) -> dict[str, Any]:
        """The JSON Schema of a complete state: every attribute required, nothing else allowed.
        Read-only attributes are marked ``readOnly`` (an annotation tools may show)."""
        properties = {}
        for name, attribute in self.attributes.items():
            schema = copy.deepcopy(dict(attribute.schema))
            if attribute.read_only:
                schema["readOnly"] = True
            properties[name] = schema
        return {"type": "object", "properties": properties, "required": list(properties),
                "additionalProperties": False}

    def default_state(self) -> dict[str, Any]:
        return {name: copy.deepcopy(attribute.default) for name, attribute in self.attributes.items()}

    def action_schema(self, action: str) -> dict[str, Any]:
        """The JSON Schema of ``action``'s params object (a copy: callers may extend it)."""
        return copy.deepcopy(dict(self._spec(action).params))

    def for_class(self, device_class: str | None) -> DeviceType:
        """The type as a device of ``device_class`` has it: fewer capabilities for classes listed in
        ``class_capabilities`` (sensor "contact": contact + battery), else the type itself."""
        if device_class is None:
            return self
        if device_class not in self.device_classes:
            known = ", ".join(self.device_classes) or "none"
            raise HomeError(f"A {self.label} has no class {device_class!r}; its classes are: {known}.")
        keep = self.class_capabilities.get(device_class)
        if keep is None:
            return self
        return dataclasses.replace(self, capabilities=tuple(c for c in self.capabilities if c.name in keep))

    # --- validation ---------------------------------------------------------------------------------------

    @cached_property
    def _state_validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.state_schema())

    @cached_property
    def _param_validators(self) -> Mapping[str, Draft202012Validator]:
        return MappingProxyType({name: Draft202012Validator(dict(spec.params)) for name, spec in self.actions.items()})

    def complete_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """``state`` with defaults for missing attributes (a state stored before the type gained an
        attribute, or a home file giving only some), validated; ``HomeError`` names what is wrong."""
        if not isinstance(state, Mapping):
            raise HomeError(f"A {self.label}'s state must be an object, not {_show(state)}.")
        unknown = [k for k in state if k not in self.attributes]
        if unknown:
            raise HomeError(f"A {self.label} has no attribute {_names(unknown)}; "
                            f"its attributes are: {', '.join(self.attributes) or 'none'}.")
        full = {**self.default_state(), **state}
        error = best_match(self._state_validator.iter_errors(full))
        if error is not None:
            units = {n: a.unit for n, a in self.attributes.items() if a.unit}
            raise HomeError(f"Invalid {self.label} state: {_explain(error, units, 'attribute')}.")
        return full

    def check_params(self, action: str, params: Mapping[str, Any] | None) -> None:
        """Raise ``ActionError`` unless ``action`` is supported and ``params`` valid for it."""
        reason = self._params_problem(self._spec(action), self._param_validators[action], params)
        if reason:
            raise ActionError(f"{action} refused for the {self.label}: {reason}.")

    def apply_action(self, action: str, params: Mapping[str, Any] | None, state: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes ``action`` changes on a device in ``state`` (only those whose value changes;
        ``{}`` when it is already so). Raises ``ActionError`` and changes nothing if the action is not
        supported, its params are invalid, or it cannot apply to this state."""
        self.check_params(action, params)
        params = dict(params or {})
        try:
            current = self.complete_state(state)
        except HomeError as err:
            raise ActionError(f"{action} refused for the {self.label}: its current state is invalid ({err})") from None
        try:
            changes = self._spec(action).apply(MappingProxyType(current), MappingProxyType(params))
        except Refusal as refusal:
            raise ActionError(f"{action} refused for the {self.label}: {refusal}.") from None
        new = {**current, **changes}
        error = best_match(self._state_validator.iter_errors(new))
        if error is not None:  # a capability bug; still, refuse rather than store a bad state
            raise ActionError(f"{action} refused for the {self.label}: it would leave an invalid state "
                              f"({_explain(error, {}, 'attribute')}).")
        return {name: value for name, value in changes.items() if current[name] != value}

    def _spec(self, action: str) -> ActionSpec:
        spec = self.actions.get(action)
        if spec is None:
            raise ActionError(f"The {self.label} does not support {action!r}; "
                              f"it supports: {', '.join(self.actions) or 'nothing'}.")
        return spec

    @staticmethod
    def _params_problem(spec: ActionSpec, validator: Draft202012Validator, params: Any) -> str | None:
        """What is wrong with ``params``, as a clause, or None. Checks names first (unknown, missing,
        conflicting), then values, so the message is about the first thing to fix."""
        params = {} if params is None else params
        if not isinstance(params, Mapping):
            return f"parameters must be an object of names and values, not {_show(params)}"
        properties = spec.params.get("properties", {})
        unknown = [k for k in params if k not in properties]
        if unknown:
            takes = f"it takes {_names(properties, ' and ')}" if properties else "it takes no parameters"
            return f"unknown parameter {_names(unknown)}; {takes}"
        errors = list(validator.iter_errors(dict(params)))
        if not errors:
            return None
        direct = [e for e in errors if e.validator != "anyOf"]
        # A range at the top level may be a union of the branches' ranges (fridge 1..7 | freezer
        # -23..-15): then the branch the names select says the narrower, true range.
        if direct and not ("anyOf" in spec.params and all(e.validator in RANGE_RULES for e in direct)):
            return _explain(best_match(direct), spec.units, "parameter")
        return _explain_branches(spec, dict(params))


STRUCTURAL = ("required", "additionalProperties", "const")
RANGE_RULES = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _explain_branches(spec: ActionSpec, params: dict[str, Any]) -> str:
    """For an anyOf of closed branches (absolute or delta; per compartment): name the conflict or the
    missing parameter, or explain the value error of the branch that the given names select."""
    branches = spec.params["anyOf"]
    keys = set(params)
    fitting = [b for b in branches if keys <= set(b["properties"]) and set(b.get("required", ())) <= keys]
    if not fitting:
        if any(set(b.get("required", ())) <= keys for b in branches):
            rivals = [k for k in params if any(k not in b["properties"] for b in branches)]
            return f"give either {_names(rivals, ' or ')}, not both"
        missing = [set(b.get("required", ())) - keys for b in branches if keys <= set(b["properties"])]
        minimal = [m for m in missing if not any(other < m for other in missing)]
        options = [k for k in spec.params["properties"] if any(k in m for m in minimal)]
        return f"missing parameter: give {_names(options, ' or ')}"

    def score(branch: Mapping[str, Any]) -> tuple[int, int]:
        errors = list(Draft202012Validator(branch).iter_errors(params))
        return sum(e.validator in STRUCTURAL for e in errors), len(errors)

    branch = min(fitting, key=score)
    errors = [e for e in Draft202012Validator(branch).iter_errors(params) if e.validator not in STRUCTURAL]
    error = best_match(errors or list(Draft202012Validator(branch).iter_errors(params)))
    return _explain(error, spec.units, "parameter", note=True) if error else "invalid parameters"


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "object": "an object", "array": "a list", "null": "null"}


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _names(names: Any, joiner: str = ", ") -> str:
    return joiner.join(f"'{n}'" for n in names)


def _explain(error: ValidationError, units: Mapping[str, str], word: str, note: bool = False) -> str:
    """One jsonschema error as a clause naming the parameter (or attribute), the value and the rule."""
    name = str(error.path[0]) if error.path else None
    schema, value, rule = error.schema, error.instance, error.validator
    unit = f" {units[name]}" if name in units else ""
    if not isinstance(schema, Mapping):
        return error.message
    extra = f" ({schema['description']})" if note and "description" in schema else ""
    if rule == "type":
        expected = schema["type"]
        expected = " or ".join(_TYPE_WORDS.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
        return f"{word} '{name}' must be {expected}, not {_show(value)}"
    if rule in RANGE_RULES[:4]:
        low, high = schema.get("minimum", "…"), schema.get("maximum", "…")
        return f"{name} {_show(value)} is out of range: {low} to {high}{unit}{extra}"
    if rule == "multipleOf":
        return f"{name} {_show(value)} is not a multiple of {schema['multipleOf']}{unit}"
    if rule == "enum":
        return f"{name} {_show(value)} is not one of: {', '.join(str(v) for v in schema['enum'])}"
    if rule == "const":
        return f"{name} must be {_show(schema['const'])}, not {_show(value)}"
    if rule == "pattern":
        return f"{name} {_show(value)} is not in the expected form: {schema.get('description', schema['pattern'])}"
    if rule == "required" and isinstance(value, Mapping):
        missing = [r for r in schema["required"] if r not in value]
        return f"missing {word} {_names(missing)}"
    if rule == "additionalProperties" and isinstance(value, Mapping):
        return f"unknown {word} {_names(k for k in value if k not in schema.get('properties', {}))}"
    return f"{name}: {error.message}" if name else error.message


# --- the types --------------------------------------------------------------------------------------------

# Washer courses as SmartThings/ThinQ name them, with ASCII ids (Korean names live in names.py):
# normal 표준, quick 스피드/쾌속, wool 울, delicate 섬세, heavy 강력, bedding 이불, baby_care 아기옷,
# rinse_spin 헹굼+탈수, spin 탈수, eco 절약.
WASHER_CYCLES = ("normal", "quick", "wool", "delicate", "heavy", "bedding", "baby_care", "rinse_spin", "spin", "eco")
DRYER_CYCLES = ("normal", "quick", "delicate", "heavy", "bedding", "towels", "wool", "air_dry", "eco")
DISHWASHER_CYCLES = ("normal", "eco", "intensive", "quick", "delicate", "rinse")
# Air conditioner modes (ThinQ/SmartThings): 냉방 cool, 난방 heat, 제습 dry, 송풍 fan, 자동 auto, 공기청정 air_clean.
AC_MODES = ("cool", "heat", "dry", "fan", "auto", "air_clean")
SPEEDS = ("auto", "low", "medium", "high")
SENSOR_CAPABILITIES = {
    "temperature": ("temperature_measurement", "battery"),
    "humidity": ("humidity_measurement", "battery"),
    "climate": ("temperature_measurement", "humidity_measurement", "battery"),
    "contact": ("contact", "battery"),
    "motion": ("occupancy", "battery"),
    "leak": ("leak", "battery"),
    "smoke": ("smoke_co_alarm", "battery"),
    "co": ("smoke_co_alarm", "battery"),
}


def _types() -> dict[str, DeviceType]:
    on_off = cap.on_off()  # capabilities without parameters are shared between types
    light = DeviceType(
        "light", (on_off, cap.level(), cap.color(), cap.color_temperature(2200, 6500)),
        device_classes=("color", "tunable_white", "dimmable", "on_off"),
        class_capabilities={"tunable_white": ("on_off", "level", "color_temperature"),
                            "dimmable": ("on_off", "level"), "on_off": ("on_off",)},
        kind_names=("조명", "불", "전등", "등", "램프", "스탠드", "라이트", "light", "lights", "lamp", "lamps"))
    switch = DeviceType("switch", (on_off,), kind_names=("스위치", "벽스위치", "switch", "switches", "wall switch"))
    plug = DeviceType("plug", (on_off,), kind_names=(
        "플러그", "스마트플러그", "콘센트", "멀티탭", "plug", "plugs", "smart plug", "outlet", "socket"))
    air_conditioner = DeviceType(
        "air_conditioner",
        (on_off, cap.thermostat(16, 30, 24), cap.modes(AC_MODES, "cool"), cap.fan_control(SPEEDS)),
        device_classes=("wall", "stand", "ceiling", "window"),
        kind_names=("에어컨", "냉방기", "냉난방기", "air conditioner", "air conditioners", "ac", "aircon"))
    thermostat = DeviceType(
        "thermostat",
        (on_off, cap.thermostat(5, 35, 22), cap.modes(("heat", "cool", "auto", "eco", "away"), "heat")),
        device_classes=("boiler", "floor_heating", "hvac"),
        kind_names=("보일러", "난방", "바닥난방", "온도조절기", "thermostat", "thermostats", "heating", "boiler"))
    air_purifier = DeviceType(
        "air_purifier",
        (on_off, cap.modes(("auto", "manual", "sleep", "turbo"), "auto"), cap.fan_control(SPEEDS), cap.air_quality()),
        kind_names=("공기청정기", "청정기", "air purifier", "air purifiers", "purifier"))
    fan = DeviceType(
        "fan", (on_off, cap.fan_control(max_speed=5, powers_on=True), cap.modes(("normal", "natural", "sleep"), "normal")),
        device_classes=("standing", "desk", "ceiling", "circulator"),
        kind_names=("선풍기", "서큘레이터", "팬", "fan", "fans", "circulator"))
    washer = DeviceType(
        "washer", (on_off, cap.operational_state(WASHER_CYCLES)),
        kind_names=("세탁기", "드럼세탁기", "통돌이", "washer", "washing machine", "laundry machine"))
    dryer = DeviceType("dryer", (on_off, cap.operational_state(DRYER_CYCLES)),
                       kind_names=("건조기", "빨래건조기", "의류건조기", "dryer", "tumble dryer", "clothes dryer"))
    refrigerator = DeviceType(
        "refrigerator", (cap.refrigerator(), cap.modes(("normal", "rapid_cool", "rapid_freeze", "vacation"), "normal")),
        kind_names=("냉장고", "냉동고", "fridge", "refrigerator", "freezer"))
    dishwasher = DeviceType("dishwasher", (on_off, cap.operational_state(DISHWASHER_CYCLES)),
                            kind_names=("식기세척기", "식세기", "dishwasher"))
    robot_vacuum = DeviceType(
        "robot_vacuum",
        (cap.operational_state(dock=True), cap.modes(("auto", "quiet", "turbo", "mop"), "auto", "cleaning mode"),
         cap.battery()),
        kind_names=("로봇청소기", "청소기", "robot vacuum", "robot vacuums", "vacuum", "robot cleaner"))
    tv = DeviceType(
        "tv", (on_off, cap.volume(), cap.channel(), cap.media_input(("tv", "hdmi1", "hdmi2", "hdmi3", "usb")),
               cap.media_playback()),
        kind_names=("티비", "텔레비전", "tv", "tvs", "television"), label="TV")
    speaker = DeviceType(
        "speaker",
        (on_off, cap.volume(), cap.media_input(("wifi", "bluetooth", "aux", "optical", "hdmi_arc")), cap.media_playback()),
        device_classes=("smart_speaker", "soundbar"),
        class_names={"soundbar": ("사운드바", "soundbar")},
        kind_names=("스피커", "speaker", "speakers"))
    cover = DeviceType(
        "cover", (cap.window_covering(),),
        device_classes=("curtain", "blind", "shade", "shutter", "garage_door", "window", "awning"),
        class_names={"curtain": ("커튼", "전동커튼", "curtain", "curtains"),
                     "blind": ("블라인드", "롤스크린", "버티컬", "blind", "blinds", "roller blind"),
                     "shade": ("쉐이드", "shade", "shades"), "shutter": ("셔터", "shutter", "shutters"),
                     "garage_door": ("차고문", "garage door"), "window": ("창문", "window", "windows"),
                     "awning": ("어닝", "awning")},
        kind_names=("cover", "covers"))
    lock = DeviceType("lock", (cap.door_lock(), cap.battery()), device_classes=("door", "gate"), kind_names=(
        "도어락", "도어록", "잠금장치", "스마트락", "lock", "locks", "door lock", "smart lock"))
    sensor = DeviceType(
        "sensor",
        (cap.temperature_sensor(), cap.humidity_sensor(), cap.contact_sensor(), cap.motion_sensor(), cap.leak_sensor(),
         cap.smoke_co_alarm(), cap.battery()),
        device_classes=tuple(SENSOR_CAPABILITIES), class_capabilities=SENSOR_CAPABILITIES,
        class_names={"temperature": ("온도계", "온도센서", "thermometer", "temperature sensor"),
                     "humidity": ("습도계", "습도센서", "hygrometer", "humidity sensor"),
                     "climate": ("온습도계", "온습도센서", "climate sensor"),
                     "contact": ("문열림센서", "열림감지센서", "contact sensor", "door sensor"),
                     "motion": ("동작감지기", "모션센서", "움직임센서", "motion sensor"),
                     "leak": ("누수감지기", "누수센서", "leak sensor", "water sensor"),
                     "smoke": ("화재감지기", "연기감지기", "smoke detector", "smoke alarm"),
                     "co": ("일산화탄소감지기", "co detector", "co alarm")},
        kind_names=("센서", "감지기", "sensor", "sensors", "detector"))
    scene = DeviceType("scene", (cap.scene(),), kind_names=("장면", "씬", "scene", "scenes"))
    xr_headset = DeviceType(
        "xr_headset", (on_off, cap.volume(), cap.media_playback(), cap.battery()),
        kind_names=("헤드셋", "vr", "xr", "vr헤드셋", "xr headset", "vr headset", "headset"), label="XR headset")
    types = (light, switch, plug, air_conditioner, thermostat, air_purifier, fan, washer, dryer, refrigerator,
             dishwasher, robot_vacuum, tv, speaker, cover, lock, sensor, scene, xr_headset)
    return {t.name: t for t in types}


DEVICE_TYPES: Mapping[str, DeviceType] = MappingProxyType(_types())


def device_type(name: str, device_class: str | None = None) -> DeviceType:
    """The type called ``name`` (as a device of ``device_class`` has it), or ``HomeError`` listing the types."""
    found = DEVICE_TYPES.get(name)
    if found is None:
        raise HomeError(f"Unknown device type {name!r}; the types are: {', '.join(DEVICE_TYPES)}.")
    return found.for_class(device_class)


__all__ = ["ACTION_NAMES", "DEVICE_TYPES", "DeviceType", "device_type"]
