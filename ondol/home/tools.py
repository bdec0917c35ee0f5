"""Tool schemas derived from a home, for a model to call with grammar-constrained decoding.

One tool per action some device of the home supports (``set_temperature``, ``turn_off``...), plus
``get_state``. A call's arguments are ``{"target": ..., "params": ...}`` — exactly the action
``Home.apply`` takes, with the tool's name as ``action``. The schemas hold the home's real names
and each device type's own ranges, so a constrained model cannot name a device that does not exist
or a value out of range:

* the parameters are ``anyOf`` one branch per device type that supports the action, each pairing
  targets of that type (a device by any of its names; an area and a kind word; a kind word for the
  whole home) with that type's parameter schema (an air conditioner's 16–30 °C, a thermostat's 5–35);
* enums list every alias a person may say ("거실 에어컨", "living room AC") as well as ids.

``Home.apply`` validates every action against the same type schemas, so a call that reaches it
some other way (an unconstrained model, the HTTP API) is held to the same rules.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ondol.home.devices import ActionSpec, DeviceType

if TYPE_CHECKING:
    from ondol.home.home import Home

DESCRIPTIONS_KO = {"get_state": "기기의 현재 상태를 읽는다"}


def home_tools(home: Home) -> list[dict[str, Any]]:
    groups: dict[str, dict[DeviceType, list[str]]] = defaultdict(lambda: defaultdict(list))
    for d in home.spec.devices:
        dtype = home.types[d.id]
        for action in dtype.action_names():
            groups[action][dtype].append(d.id)
    tools = [_tool(home, action, by_type) for action, by_type in groups.items()]
    tools.append(_state_tool(home))
    return tools


def _tool(home: Home, action: str, by_type: dict[DeviceType, list[str]]) -> dict[str, Any]:
    branches = []
    description = ""
    for dtype, ids in by_type.items():
        spec: ActionSpec = dtype.actions[action]
        description = description or getattr(spec, "description", "") or action.replace("_", " ")
        branches.append({
            "type": "object",
            "properties": {"target": _targets(home, ids), "params": dtype.action_schema(action)},
            "required": ["target", "params"],
            "additionalProperties": False,
        })
    parameters = branches[0] if len(branches) == 1 else {"anyOf": branches}
    return {"type": "function", "function": {"name": action, "description": description, "parameters": parameters}}


def _state_tool(home: Home) -> dict[str, Any]:
    everything = [d.id for d in home.spec.devices]
    return {"type": "function", "function": {
        "name": "get_state",
        "description": "Read the current state of devices (기기의 현재 상태를 읽는다).",
        "parameters": {"type": "object", "properties": {"target": _targets(home, everything)},
                       "required": ["target"], "additionalProperties": False},
    }}


def _targets(home: Home, ids: list[str]) -> dict[str, Any]:
    """Targets that select only devices among ``ids``: one of them by name, or a kind word of
    their types (in an area that has such a device, or in the whole home)."""
    devices = [home.spec.device(i) for i in ids]
    names = _unique(n for d in devices for n in (d.id, *d.names))
    kinds = _unique(w for d in devices for w in _kind_words(home.types[d.id], d.device_class))
    areas = _unique(n for a in home.spec.areas if any(d.area == a.id for d in devices) for n in (a.id, *a.names))
    options: list[dict[str, Any]] = [_object({"device": {"enum": names}})]
    if areas:
        options.append(_object({"area": {"enum": areas}, "kind": {"enum": kinds}}))
    options.append(_object({"kind": {"enum": kinds}}))
    return {"anyOf": options}


def _kind_words(dtype: DeviceType, device_class: str | None) -> list[str]:
    words = [dtype.name, *dtype.kind_names]
    if device_class is not None:
        words += dtype.class_names.get(device_class, ())
    return words


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))
