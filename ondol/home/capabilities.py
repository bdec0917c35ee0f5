"""Capabilities: Matter-style clusters of state attributes and the actions that change them.

A capability is data plus pure functions. Each attribute has a JSON Schema and a default; each action
has a JSON Schema for its parameters and an ``apply(state, params)`` that returns the attributes it
changes and never mutates or does I/O. Validation of the parameters happens before ``apply`` (in
``DeviceType.apply_action``), so ``apply`` may trust its params; what it checks is the *state*: an
action that makes no sense now (pausing a washer that is not running) raises ``Refusal``.

Capabilities differ per device type (an air conditioner's setpoint range is not a thermostat's),
so they are built by functions with the type's values as arguments.

Conventions every capability follows, so that a model that learned one device can drive the rest:

* Parameters are named after the attribute they set (``set_volume {"volume": 30}``), except
  ``set_temperature {"temperature": ...}`` and ``set_mode {"mode": ...}`` on every type.
* A numeric ``set_*`` action takes either its absolute parameter or ``{"delta": n}`` ("2도 올려",
  "a bit brighter"), never both. An absolute value out of range is an error; current + delta is
  clamped to the range (29 °C + 2 with a maximum of 30 gives 30), so a relative request always does
  the most it can. Schemas express "exactly one of" as ``anyOf`` over branches with
  ``additionalProperties: false`` rather than ``oneOf``: llguidance enforces anyOf but refuses
  oneOf branches it cannot prove disjoint, and these action schemas become tool schemas.
* Actions that make a device visibly or audibly *do* something turn it on when it has power and is
  off (Matter's MoveToLevelWithOnOff): set_brightness, set_color, set_color_temperature, a fan's
  set_fan_speed, play, next, set_channel, set_input, start. Actions that adjust a setting (set_temperature,
  set_mode, set_volume, mute, an air conditioner's fan speed) leave power alone: "set the AC to 24"
  while it is off prepares it, as a remote control does.
* Turning a device off stops what it runs: a running or paused cycle becomes ``stopped``, playing or
  paused media becomes ``stopped``.
* Read-only attributes (sensors, ``current_temperature``, ``remaining_minutes``, ``battery``) are
  reported by the device; no action sets them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

State = Mapping[str, Any]
Params = Mapping[str, Any]
Changes = dict[str, Any]
Apply = Callable[[State, Params], Changes]


class Refusal(Exception):
    """An action that cannot apply to the current state. The message is the reason as a clause
    ("it is stopped, not running"); ``DeviceType.apply_action`` turns it into an ``ActionError``
    that names the action and the device type."""


@dataclass(frozen=True)
class Attribute:
    """One state attribute: its JSON Schema, its value before a device reports anything, its unit,
    and whether only the device sets it (``read_only``: no action changes it)."""

    schema: Mapping[str, Any]
    default: Any
    unit: str | None = None
    read_only: bool = False

    # Explicit hashes (here and below): the dict fields would make the generated ones raise.
    def __hash__(self) -> int:
        return hash((json.dumps(self.schema, sort_keys=True), self.unit, self.read_only))


@dataclass(frozen=True)
class ActionSpec:
    """One action: the JSON Schema of its parameters object and the pure function applying it.
    ``units`` maps a parameter to its unit, for messages ("out of range: 16 to 30 °C")."""

    params: Mapping[str, Any]
    apply: Apply
    description: str = ""
    units: Mapping[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.apply)


@dataclass(frozen=True)
class Capability:
    name: str
    attributes: Mapping[str, Attribute]
    actions: Mapping[str, ActionSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only views: device types share capability instances, so nobody may edit one in place.
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))
        object.__setattr__(self, "actions", MappingProxyType(dict(self.actions)))

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.attributes), tuple(self.actions)))


@dataclass(frozen=True)
class Range:
    """A numeric attribute's range. ``step`` is the resolution of non-integer values (0.5 °C)."""

    minimum: int | float
    maximum: int | float
    unit: str | None = None
    integer: bool = True
    step: float | None = None

    def schema(self, description: str) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number",
                                  "minimum": self.minimum, "maximum": self.maximum}
        if self.step is not None and not self.integer:
            schema["multipleOf"] = self.step
        schema["description"] = description
        return schema

    def delta_schema(self, what: str) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.step is not None and not self.integer:
            schema["multipleOf"] = self.step
        unit = f" {self.unit}" if self.unit else ""
        schema["description"] = (f"change of the {what} from its current value, in{unit or ' steps'}; the result is "
                                 f"kept within {self.minimum} to {self.maximum}{unit}")
        return schema

    def normalise(self, value: float) -> int | float:
        """``value`` as the attribute stores it: an int for integer ranges (JSON Schema counts 24.0 as an
        integer, but the state should say 24), else rounded to the step (float noise from a delta)."""
        if self.integer:
            return int(round(value))
        if self.step:
            value = round(value / self.step) * self.step
        value = round(float(value), 6)
        return int(value) if value.is_integer() else value  # 24, not 24.0: states read as people write them

    def clamp(self, value: float) -> int | float:
        return self.normalise(min(max(value, self.minimum), self.maximum))


# --- schema helpers ---------------------------------------------------------------------------------------

def _object(properties: Mapping[str, Any] | None = None, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties or {}), "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _enum(values: tuple[Any, ...], description: str) -> dict[str, Any]:
    return {"enum": list(values), "description": description}


def _absolute_or_delta(param: str, absolute: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Params taking exactly one of ``param`` and ``delta``. The top level lists both (for readers that
    skip anyOf); the anyOf branches, each closed with additionalProperties false, make them exclusive."""
    schema = _object({param: absolute, "delta": delta})
    schema["anyOf"] = [_object({param: absolute}, (param,)), _object({"delta": delta}, ("delta",))]
    return schema


def _no_params() -> dict[str, Any]:
    return _object()


def _power_on(state: State, changes: Changes) -> Changes:
    """Add power on to ``changes`` when the device has power and it is off (see module docstring)."""
    if state.get("power") == "off":
        changes["power"] = "on"
    return changes


def _stop_everything(state: State) -> Changes:
    """What turning a device off also changes: a running cycle stops, media stops."""
    changes: Changes = {}
    if state.get("operational_state") in ("running", "paused"):
        changes["operational_state"] = "stopped"
    if state.get("playback") in ("playing", "paused"):
        changes["playback"] = "stopped"
    return changes


def _set_number(param: str, attribute: str, rng: Range, what: str, description: str,
                on_set: Callable[[State, int | float], Changes] | None = None,
                absolute: Range | None = None) -> ActionSpec:
    """A set_* action taking an absolute value or a delta. ``absolute`` widens the accepted absolute
    values beyond the attribute's range (set_brightness 0 = off); a delta is clamped to ``rng``."""
    absolute = absolute or rng
    set_value = on_set or (lambda state, value: {attribute: value})

    def apply(state: State, params: Params) -> Changes:
        if "delta" in params:
            return set_value(state, rng.clamp(state[attribute] + params["delta"]))
        return set_value(state, absolute.normalise(params[param]))

    units = {param: rng.unit, "delta": rng.unit} if rng.unit else {}
    schema = _absolute_or_delta(param, absolute.schema(what), rng.delta_schema(what))
    return ActionSpec(schema, apply, description, units)


def _set_enum(param: str, attribute: str, values: tuple[str, ...], description: str,
              powers_on: bool = False) -> ActionSpec:
    def apply(state: State, params: Params) -> Changes:
        changes = {attribute: params[param]}
        return _power_on(state, changes) if powers_on else changes

    return ActionSpec(_object({param: _enum(values, description)}, (param,)), apply, description)


# --- actuators --------------------------------------------------------------------------------------------

def on_off() -> Capability:
    """Matter OnOff. ``toggle`` flips power; turning off also stops cycles and media."""

    def turn_off(state: State, params: Params) -> Changes:
        return {"power": "off", **_stop_everything(state)}

    def toggle(state: State, params: Params) -> Changes:
        return {"power": "on"} if state["power"] == "off" else turn_off(state, params)

    return Capability("on_off", {"power": Attribute(_enum(("on", "off"), "power"), "off")}, {
        "turn_on": ActionSpec(_no_params(), lambda state, params: {"power": "on"}, "turn on"),
        "turn_off": ActionSpec(_no_params(), turn_off, "turn off"),
        "toggle": ActionSpec(_no_params(), toggle, "turn on if off, off if on"),
    })


def level() -> Capability:
    """Matter LevelControl as a brightness in percent.

    The attribute is 1–100: an "on at 0 %" light is just off, and off is ``power``. set_brightness
    accepts 0, meaning turn off (Matter's MoveToLevelWithOnOff to the minimum) while remembering the
    brightness for the next turn_on; any other value turns the light on. A delta is clamped to 1–100,
    so "dimmer" never switches a light off: that is what turn_off is for."""
    rng = Range(1, 100, "%")

    def on_set(state: State, value: int | float) -> Changes:
        if value == 0:
            return {"power": "off"} if "power" in state else {}
        return _power_on(state, {"brightness": value})

    set_brightness = _set_number("brightness", "brightness", rng, "brightness",
                                 "set the brightness in percent (0 turns the light off)", on_set, Range(0, 100, "%"))
    return Capability("level", {"brightness": Attribute(rng.schema("brightness, %"), 100, "%")},
                      {"set_brightness": set_brightness})


COLOR_PATTERN = "^#[0-9A-Fa-f]{6}$"


def color() -> Capability:
    """Matter ColorControl in RGB hex ("#RRGGBB"): what a model writes most reliably for "빨간색",
    and what UIs show. ``color_mode`` says which of color and color_temperature the light shows."""

    def apply(state: State, params: Params) -> Changes:
        return _power_on(state, {"color": params["color"].upper(), "color_mode": "color"})

    schema = {"type": "string", "pattern": COLOR_PATTERN, "description": "colour as #RRGGBB, e.g. #FF0000 for red"}
    return Capability("color", {
        "color": Attribute(schema, "#FFFFFF"),
        "color_mode": Attribute(_enum(("color", "color_temperature"), "which setting the light shows"),
                                "color_temperature"),
    }, {"set_color": ActionSpec(_object({"color": schema}, ("color",)), apply, "set the colour")})


def color_temperature(min_k: int = 2700, max_k: int = 6500, default_k: int = 4000) -> Capability:
    """White colour temperature in kelvin (Matter uses mireds; kelvin is what people and boxes say).
    Lower is warmer: "a bit warmer" is a negative delta."""
    rng = Range(min_k, max_k, "K")

    def on_set(state: State, value: int | float) -> Changes:
        changes: Changes = {"color_temperature": value}
        if "color_mode" in state:
            changes["color_mode"] = "color_temperature"
        return _power_on(state, changes)

    action = _set_number("color_temperature", "color_temperature", rng, "colour temperature",
                         "set the white colour temperature in kelvin (lower is warmer)", on_set)
    return Capability("color_temperature", {
        "color_temperature": Attribute(rng.schema("white colour temperature, K"), default_k, "K")},
        {"set_color_temperature": action})


def thermostat(min_c: float, max_c: float, default_c: float, step: float = 0.5) -> Capability:
    """Matter Thermostat's setpoint and local temperature, in °C. Power and modes are separate
    capabilities (on_off, modes) because a type may have either without the other."""
    rng = Range(min_c, max_c, "°C", integer=False, step=step)
    # Setting a temperature on an air conditioner or boiler that is off turns it on, as setting a
    # light's brightness does: "거실 에어컨 24도로 맞춰줘" means "cool the room to 24 °C".
    action = _set_number("temperature", "target_temperature", rng, "target temperature",
                         "set the target temperature in °C",
                         on_set=lambda state, value: _power_on(state, {"target_temperature": value}))
    return Capability("thermostat", {
        "target_temperature": Attribute(rng.schema("target temperature, °C"), default_c, "°C"),
        "current_temperature": Attribute({"type": "number", "minimum": -40, "maximum": 80,
                                          "description": "measured room temperature, °C"}, default_c, "°C", True),
    }, {"set_temperature": action})


def modes(values: tuple[str, ...], default: str, description: str = "operating mode") -> Capability:
    """Matter ModeSelect-style ``mode`` (air conditioner cool/heat/dry..., purifier auto/sleep...)."""
    return Capability("modes", {"mode": Attribute(_enum(values, description), default)},
                      {"set_mode": _set_enum("mode", "mode", values, f"set the {description}")})


def fan_control(speeds: tuple[str, ...] = (), max_speed: int | None = None, default: str | int | None = None,
                powers_on: bool = False) -> Capability:
    """Matter FanControl. Named ``speeds`` (auto/low/medium/high: air conditioners, purifiers) or
    numbered steps 1..``max_speed`` (a fan's 1단, 2단...; these also accept a delta). ``powers_on``
    for a fan, whose speed is the whole point; an air conditioner's fan speed is just a setting."""
    if max_speed is not None:
        rng = Range(1, max_speed)
        attribute = Attribute(rng.schema(f"fan speed step, 1 to {max_speed}"), default or 1)

        def on_set(state: State, value: int | float) -> Changes:
            changes: Changes = {"fan_speed": value}
            return _power_on(state, changes) if powers_on else changes

        action = _set_number("fan_speed", "fan_speed", rng, "fan speed", "set the fan speed step", on_set)
    else:
        attribute = Attribute(_enum(speeds, "fan speed"), default or speeds[0])
        action = _set_enum("fan_speed", "fan_speed", speeds, "fan speed", powers_on)
    return Capability("fan_control", {"fan_speed": attribute}, {"set_fan_speed": action})


def operational_state(cycles: tuple[str, ...] = (), default_cycle: str | None = None,
                      dock: bool = False) -> Capability:
    """Matter OperationalState (+ RVC operational state with ``dock``), with the appliance's program
    (``cycle``: washer/dryer/dishwasher courses) when ``cycles`` is given.

    The cycle is chosen with ``set_mode {"mode": <cycle>}`` (the one "choose the program" action every
    type shares) or as ``start {"cycle": ...}``; it cannot change while a cycle runs or is paused,
    as on the machines themselves. Transitions:

    * start: stopped/paused/docked/returning -> running; running stays; error is refused (stop clears it).
    * pause: running/returning -> paused; paused stays; anything else is refused ("not running").
    * stop: running/paused/returning/error -> stopped; stopped and docked stay.
    * return_to_base (``dock`` only): -> returning; docked and returning stay; error is refused.

    ``remaining_minutes`` is reported by the device (read-only)."""
    states = ("stopped", "running", "paused", "error") + (("returning", "docked") if dock else ())
    attributes = {"operational_state": Attribute(_enum(states, "what the appliance is doing"),
                                                 "docked" if dock else "stopped")}
    if not dock:
        attributes["remaining_minutes"] = Attribute({"type": "integer", "minimum": 0, "maximum": 1440,
                                                     "description": "minutes left in the cycle"}, 0, "min", True)
    if cycles:
        attributes["cycle"] = Attribute(_enum(cycles, "program (course)"), default_cycle or cycles[0])

    def start(state: State, params: Params) -> Changes:
        current = state["operational_state"]
        if current == "error":
            raise Refusal("it reports an error; stop it to clear the error, then start again")
        changes: Changes = {}
        if "cycle" in params and params["cycle"] != state["cycle"]:
            if current in ("running", "paused"):
                raise Refusal(f"it is {current} with the {state['cycle']} cycle; stop it before choosing another")
            changes["cycle"] = params["cycle"]
        changes["operational_state"] = "running"
        return _power_on(state, changes)

    def pause(state: State, params: Params) -> Changes:
        current = state["operational_state"]
        if current == "paused":
            return {}
        if current not in ("running", "returning"):
            raise Refusal(f"it is {current}, not running")
        return {"operational_state": "paused"}

    def stop(state: State, params: Params) -> Changes:
        if state["operational_state"] in ("stopped", "docked"):
            return {}
        return {"operational_state": "stopped"}

    actions = {
        "start": ActionSpec(_object({"cycle": _enum(cycles, "program to run")}) if cycles else _no_params(),
                            start, "start (or resume) the cycle"),
        "pause": ActionSpec(_no_params(), pause, "pause the running cycle"),
        "stop": ActionSpec(_no_params(), stop, "stop the cycle"),
    }
    if cycles:
        def set_cycle(state: State, params: Params) -> Changes:
            if state["operational_state"] in ("running", "paused") and params["mode"] != state["cycle"]:
                raise Refusal(f"it is {state['operational_state']}; stop it before changing the cycle")
            return {"cycle": params["mode"]}

        actions["set_mode"] = ActionSpec(_object({"mode": _enum(cycles, "program (course)")}, ("mode",)),
                                         set_cycle, "choose the program (course)")
    if dock:
        def return_to_base(state: State, params: Params) -> Changes:
            current = state["operational_state"]
            if current == "error":
                raise Refusal("it reports an error; stop it first")
            return {} if current in ("docked", "returning") else {"operational_state": "returning"}

        actions["return_to_base"] = ActionSpec(_no_params(), return_to_base, "go back to the charging dock")
    return Capability("operational_state", attributes, actions)


def window_covering() -> Capability:
    """Matter WindowCovering lift position in percent, 100 = fully open (people say "half open")."""
    rng = Range(0, 100, "%")
    return Capability("window_covering", {"position": Attribute(rng.schema("how far open, % (100 = open)"), 0, "%")}, {
        "open": ActionSpec(_no_params(), lambda state, params: {"position": 100}, "open fully"),
        "close": ActionSpec(_no_params(), lambda state, params: {"position": 0}, "close fully"),
        "set_position": _set_number("position", "position", rng, "position", "open to a percentage (100 = open)"),
    })


def door_lock() -> Capability:
    """Matter DoorLock's lock state. (Whether unlocking needs a confirmation is the home's policy.)"""
    return Capability("door_lock", {"lock_state": Attribute(_enum(("locked", "unlocked"), "lock state"), "locked")}, {
        "lock": ActionSpec(_no_params(), lambda state, params: {"lock_state": "locked"}, "lock"),
        "unlock": ActionSpec(_no_params(), lambda state, params: {"lock_state": "unlocked"}, "unlock"),
    })


def volume(default: int = 20) -> Capability:
    """Volume in percent and mute. Setting a volume unmutes, as remote controls do; ``mute`` takes
    ``{"muted": false}`` to unmute and defaults to muting."""

    def on_set(state: State, value: int | float) -> Changes:
        return {"volume": value, "muted": False}

    rng = Range(0, 100, "%")
    muted = {"type": "boolean", "default": True, "description": "true to mute, false to unmute"}
    return Capability("volume", {
        "volume": Attribute(rng.schema("volume, %"), default, "%"),
        "muted": Attribute({"type": "boolean", "description": "muted"}, False),
    }, {
        "set_volume": _set_number("volume", "volume", rng, "volume", "set the volume in percent", on_set),
        "mute": ActionSpec(_object({"muted": muted}), lambda state, params: {"muted": params.get("muted", True)},
                           "mute (or unmute with muted false)"),
    })


def channel(max_channel: int = 999) -> Capability:
    """TV channel number; "channel up" is a delta of +1, clamped at the ends rather than wrapping."""
    rng = Range(1, max_channel)
    action = _set_number("channel", "channel", rng, "channel", "change the channel",
                         lambda state, value: _power_on(state, {"channel": value}))
    return Capability("channel", {"channel": Attribute(rng.schema("channel number"), 1)}, {"set_channel": action})


def media_input(inputs: tuple[str, ...], default: str | None = None) -> Capability:
    """Matter MediaInput: the source shown or played (tv, hdmi1, bluetooth...)."""
    return Capability("media_input", {"input": Attribute(_enum(inputs, "input source"), default or inputs[0])},
                      {"set_input": _set_enum("input", "input", inputs, "input source", powers_on=True)})


def media_playback() -> Capability:
    """Matter MediaPlayback. ``track`` counts items in the play queue so ``next`` has a visible effect.

    play and next start playback (and power); pause needs something playing (paused stays paused);
    stop always succeeds."""

    def pause(state: State, params: Params) -> Changes:
        if state["playback"] == "stopped":
            raise Refusal("nothing is playing")
        return {"playback": "paused"}

    return Capability("media_playback", {
        "playback": Attribute(_enum(("playing", "paused", "stopped"), "playback state"), "stopped"),
        "track": Attribute({"type": "integer", "minimum": 1, "description": "position in the play queue"}, 1),
    }, {
        "play": ActionSpec(_no_params(), lambda state, params: _power_on(state, {"playback": "playing"}), "play"),
        "pause": ActionSpec(_no_params(), pause, "pause playback"),
        "stop": ActionSpec(_no_params(), lambda state, params: {"playback": "stopped"}, "stop playback"),
        "next": ActionSpec(_no_params(),
                           lambda state, params: _power_on(state, {"track": state["track"] + 1, "playback": "playing"}),
                           "skip to the next item"),
    })


def refrigerator(fridge: tuple[int, int] = (1, 7), freezer: tuple[int, int] = (-23, -15)) -> Capability:
    """Matter TemperatureControl for two compartments, each with its own setpoint and range.

    ``set_temperature`` names the compartment (``"fridge"`` unless told: "냉장고 온도" means the fridge);
    the schema has one anyOf branch per compartment and form, so each compartment's own range is
    in the schema, not only in code."""
    ranges = {"fridge": Range(*fridge, "°C"), "freezer": Range(*freezer, "°C")}
    attributes = {f"{name}_temperature": Attribute(rng.schema(f"{name} setpoint, °C"), default, "°C")
                  for (name, rng), default in zip(ranges.items(), (3, -18))}

    def apply(state: State, params: Params) -> Changes:
        compartment = params.get("compartment", "fridge")
        rng, attribute = ranges[compartment], f"{compartment}_temperature"
        if "delta" in params:
            return {attribute: rng.clamp(state[attribute] + params["delta"])}
        return {attribute: rng.normalise(params["temperature"])}

    compartment = _enum(("fridge", "freezer"), "which compartment; fridge unless given")
    union = Range(freezer[0], fridge[1], "°C")
    schema = _object({"compartment": compartment, "temperature": union.schema("setpoint, °C"),
                      "delta": union.delta_schema("setpoint")})
    branches = []
    for name, rng in ranges.items():
        which = {"const": name, "description": "which compartment"}
        needs = () if name == "fridge" else ("compartment",)
        branches.append(_object({"compartment": which, "temperature": rng.schema(f"{name} setpoint")},
                                needs + ("temperature",)))
        branches.append(_object({"compartment": which, "delta": rng.delta_schema(f"{name} setpoint")},
                                needs + ("delta",)))
    schema["anyOf"] = branches
    action = ActionSpec(schema, apply, "set a compartment's temperature in °C", {"temperature": "°C", "delta": "°C"})
    return Capability("refrigerator", attributes, {"set_temperature": action})


def scene() -> Capability:
    """A scene has no state of its own: ``activate`` is acknowledged here and expanded by the home
    into the scene's device actions."""
    return Capability("scene", {}, {"activate": ActionSpec(_no_params(), lambda state, params: {}, "activate")})


# --- sensors (read-only) ----------------------------------------------------------------------------------

def _sensor(name: str, attributes: Mapping[str, tuple[dict[str, Any], Any, str | None]]) -> Capability:
    return Capability(name, {attr: Attribute(schema, default, unit, True)
                             for attr, (schema, default, unit) in attributes.items()})


def temperature_sensor() -> Capability:
    return _sensor("temperature_measurement", {"temperature": (
        {"type": "number", "minimum": -40, "maximum": 125, "description": "temperature, °C"}, 20, "°C")})


def humidity_sensor() -> Capability:
    return _sensor("humidity_measurement", {"humidity": (
        {"type": "number", "minimum": 0, "maximum": 100, "description": "relative humidity, %"}, 50, "%")})


def contact_sensor() -> Capability:
    return _sensor("contact", {"contact": (_enum(("open", "closed"), "door or window contact"), "closed", None)})


def motion_sensor() -> Capability:
    return _sensor("occupancy", {"motion": ({"type": "boolean", "description": "motion detected"}, False, None)})


def leak_sensor() -> Capability:
    return _sensor("leak", {"leak": ({"type": "boolean", "description": "water leak detected"}, False, None)})


def smoke_co_alarm(smoke: bool = True, co: bool = True) -> Capability:
    attributes = {}
    if smoke:
        attributes["smoke"] = ({"type": "boolean", "description": "smoke detected"}, False, None)
    if co:
        attributes["co"] = ({"type": "boolean", "description": "carbon monoxide detected"}, False, None)
    return _sensor("smoke_co_alarm", attributes)


def battery() -> Capability:
    return _sensor("battery", {"battery": (
        {"type": "integer", "minimum": 0, "maximum": 100, "description": "battery charge, %"}, 100, "%")})


AIR_QUALITY = ("good", "fair", "moderate", "poor", "very_poor", "extremely_poor")  # Matter AirQuality


def air_quality() -> Capability:
    return _sensor("air_quality", {
        "air_quality": (_enum(AIR_QUALITY, "air quality"), "good", None),
        "pm25": ({"type": "integer", "minimum": 0, "maximum": 1000, "description": "PM2.5, µg/m³"}, 10, "µg/m³"),
    })
