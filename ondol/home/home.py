"""A home: its devices, their state, and the one path by which state changes.

    home = Home.load("examples/demo-home.yaml")                 # state in SQLite next to your data
    home.apply([{"action": "set_temperature", "target": {"device": "거실 에어컨"},
                 "params": {"delta": 2}}])                      # "2도 올려"
    home.apply([{"action": "turn_off", "device": "light.living_main"}])   # resolved: a device id
    home.query({"area": "거실", "kind": "조명"})
    home.tools()                                                # schemas for a model's tool calls

An action comes in one of two forms: resolved, ``{"action", "device": id, "params"}`` (what the
assistant produces, ``ondol home ask --json`` prints and ``POST /actions`` takes), or, at the edge,
with a ``"target"`` of names (``{"device": "거실 에어컨"}``, ``{"area": "거실", "kind": "조명"}``)
that ``apply`` resolves.

``apply`` is the only writer, and one command at a time: it resolves every target given by names,
validates every action against its device type's schemas (later actions in a command see the
earlier ones' effect), sends the changes through the driver, and commits the new states and one
audit row in one transaction. A command is all or nothing: if any part is invalid, or any device
does not acknowledge, no state changes (devices that did take a change are sent their old values
back), and the audit row says why. Refused commands are audited too.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ondol.home.devices import DeviceType, device_type
from ondol.home.drivers import Driver
from ondol.home.drivers.simulator import SimulatorDriver
from ondol.home.errors import HomeError
from ondol.home.homefile import HomeSpec, load_home_file
from ondol.home.names import NameIndex
from ondol.home.store import AuditEntry, Store


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of one command. ``results`` has one entry per (action, device) in order:
    ``{"action": i, "device": id, "ok": bool, "changed": {...}, "error": str | None}`` (an
    action whose target named nothing has one entry without "device")."""

    ok: bool
    results: list[dict[str, Any]]
    seq: int  # the audit row's sequence number
    error: str | None = None  # the first reason, when not ok


@dataclass(frozen=True)
class StateEvent:
    """A device's state changed (what the server streams to /events)."""

    seq: int
    device: str
    changed: dict[str, Any]
    state: dict[str, Any]
    source: str


def default_store_url(home: str) -> str:
    """SQLite under the user's data directory: state outlives the process, not the checkout."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ondol" / "homes"
    base.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / home}.db"


class Home:
    def __init__(self, spec: HomeSpec, *, store: Store | str | None = None, driver: Driver | None = None) -> None:
        self.spec = spec
        self.id = spec.home
        self.names = NameIndex.from_spec(spec)
        self.types: dict[str, DeviceType] = {d.id: device_type(d.type, d.device_class) for d in spec.devices}
        self.store = store if isinstance(store, Store) else Store.open(store or default_store_url(spec.home))
        self.driver: Driver = driver or SimulatorDriver()
        seeded = self.store.init_states(self.id, {d.id: dict(d.state) for d in spec.devices})
        # A state stored by an older ondol may lack newer attributes: complete it with defaults.
        self._states = {d.id: self.types[d.id].complete_state(seeded[d.id]) for d in spec.devices}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[StateEvent], None]] = []

    @classmethod
    def load(cls, path: str | Path, *, store: Store | str | None = None, driver: Driver | None = None) -> Home:
        return cls(load_home_file(path), store=store, driver=driver)

    # --- reading ----------------------------------------------------------------------------

    def state(self, device: str) -> dict[str, Any]:
        return dict(self._states[self.names.device(device)])

    def query(self, target: Mapping[str, Any] | str | None = None) -> dict[str, dict[str, Any]]:
        """States by device id: of the whole home (None), one device (its name), or a target
        ({"device"}, {"area", "kind"}, {"kind"}, {"area"})."""
        if target is None:
            ids = [d.id for d in self.spec.devices]
        elif isinstance(target, str):
            ids = [self.names.device(target)]
        else:
            ids = self.names.resolve(target)
        return {i: dict(self._states[i]) for i in ids}

    def devices(self) -> list[dict[str, Any]]:
        return [{"id": d.id, "type": d.type, "device_class": d.device_class, "names": list(d.names), "area": d.area,
                 "actions": list(self.types[d.id].action_names()), "state": dict(self._states[d.id])}
                for d in self.spec.devices]

    def tools(self) -> list[dict[str, Any]]:
        """OpenAI-form tools whose schemas hold this home's real names and each device type's
        ranges (ondol/home/tools.py)."""
        from ondol.home.tools import home_tools

        return home_tools(self)

    def subscribe(self, listener: Callable[[StateEvent], None]) -> Callable[[], None]:
        """Call ``listener`` (from the applying thread) for every state change; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # --- the one writer ---------------------------------------------------------------------

    def apply(self, actions: Sequence[Mapping[str, Any]] | Mapping[str, Any], *, source: str = "api",
              utterance: str | None = None) -> ApplyResult:
        """Carry out one command (an action or a list of them) all or nothing; see the module doc."""
        if isinstance(actions, Mapping):
            actions = [actions]
        with self._lock:
            results, planned = self._plan(actions)
            changes = {i: {k: v for k, v in planned[i].items() if self._states[i].get(k) != v} for i in planned}
            changes = {i: c for i, c in changes.items() if c}
            error = next((r["error"] for r in results if not r["ok"]), None)
            if error is None and changes:
                error = self._send(changes, results)
            if error is not None:
                for r in results:  # nothing of a failed command happens
                    if r["ok"]:
                        r.update(ok=False, changed={}, error="not applied: another part of the command failed")
                seq = self.store.commit(self.id, {}, AuditEntry(source, _as_asked(actions), results, utterance))
                return ApplyResult(False, results, seq, error)
            seq = self.store.commit(self.id, {i: planned[i] for i in changes},
                                    AuditEntry(source, _as_asked(actions), results, utterance))
            for i, changed in changes.items():
                self._states[i] = planned[i]
                event = StateEvent(seq, i, changed, dict(planned[i]), source)
                for listener in list(self._listeners):
                    listener(event)
            return ApplyResult(True, results, seq)

    def check(self, actions: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> ApplyResult:
        """What ``apply`` would do, without doing it: the same validation against the current
        states, nothing sent, stored or audited (``seq`` is the last audit row's)."""
        if isinstance(actions, Mapping):
            actions = [actions]
        with self._lock:
            results, _ = self._plan(actions)
            error = next((r["error"] for r in results if not r["ok"]), None)
            if error is not None:
                for r in results:
                    if r["ok"]:
                        r.update(ok=False, changed={}, error="not applied: another part of the command failed")
            return ApplyResult(error is None, results, self.store.last_seq(self.id), error)

    def _plan(self, actions: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Validate every action against the states as the earlier actions leave them; (results,
        new full state per touched device). Pure: nothing is sent or stored."""
        results: list[dict[str, Any]] = []
        planned: dict[str, dict[str, Any]] = {}
        if not actions:
            return [{"action": 0, "ok": False, "changed": {}, "error": "The command has no actions."}], planned
        for n, action in enumerate(actions):
            try:
                name, target, params = _parts(action)
                if isinstance(target, str):  # resolved: a device id, taken as it is
                    if target not in self._states:
                        raise HomeError(f"No device has the id {target!r}.")
                    ids = [target]
                else:
                    ids = self.names.resolve(target)
                    if "kind" not in target and "device" not in target:  # a whole area: what supports it
                        ids = [i for i in ids if name in self.types[i].actions] or ids
            except HomeError as e:
                results.append({"action": n, "ok": False, "changed": {}, "error": str(e)})
                continue
            for i in ids:
                current = planned.get(i, self._states[i])
                try:
                    changed = self.types[i].apply_action(name, params, current)
                except HomeError as e:
                    results.append({"action": n, "device": i, "ok": False, "changed": {}, "error": str(e)})
                    continue
                planned[i] = {**current, **changed}
                results.append({"action": n, "device": i, "ok": True, "changed": changed, "error": None})
        return results, planned

    def _send(self, changes: dict[str, dict[str, Any]], results: list[dict[str, Any]]) -> str | None:
        acks = self.driver.send(self.id, changes)
        failed = {i: a for i, a in acks.items() if not a.ok}
        failed |= {i: None for i in changes if i not in acks}
        if not failed:
            return None
        # Devices that took their part get their old values back: no half-applied command.
        undo = {i: {k: self._states[i][k] for k in changes[i]} for i, a in acks.items() if a.ok}
        if undo:
            self.driver.send(self.id, undo)
        for r in results:
            ack = failed.get(r.get("device", ""), False)
            if ack is not False:
                r.update(ok=False, error=ack.error if ack is not None and ack.error else "no answer from the device")
        first = next(r for r in results if not r["ok"])
        return f"{first['device']}: {first['error']}"

    def close(self) -> None:
        self.driver.close()
        self.store.close()

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parts(action: Any) -> tuple[str, str | Mapping[str, Any], Mapping[str, Any] | None]:
    """(action name, device id or target, params) of one action in either of its forms."""
    if not isinstance(action, Mapping):
        raise HomeError(f"An action is an object with \"action\", \"device\" and \"params\", not {action!r}.")
    fields = set(action)
    unknown = fields - {"action", "device", "target", "params"}
    if unknown:
        raise HomeError(f"An action has no field {', '.join(sorted(map(str, unknown)))}; it takes action, device "
                        "(or target) and params.")
    name, params = action.get("action"), action.get("params")
    if not isinstance(name, str):
        raise HomeError("An action needs \"action\": the name of what to do, such as \"turn_on\".")
    if {"device", "target"} <= fields:
        raise HomeError("An action names its device by \"device\" (an id) or by \"target\" (names), not both.")
    if "device" in fields:
        target = action["device"]
        if not isinstance(target, str):
            raise HomeError("An action's \"device\" is a device id, such as \"ac.living\".")
    else:
        target = action.get("target")
        if not isinstance(target, Mapping):
            raise HomeError("An action needs \"device\" (an id) or \"target\": {\"device\": ...}, "
                            "{\"area\": ..., \"kind\": ...} or {\"kind\": ...}.")
    bad = _not_finite(params)
    if bad is not None:
        raise HomeError(f"{bad} is not a finite number; a device takes only numbers it can reach.")
    return name, target, params


_MAX_DEPTH = 32  # params are flat in every device type; a deeper value is refused, never walked further


def _not_finite(value: Any, where: str = "params", depth: int = 0) -> str | None:
    """Where in ``value`` a non-finite number is ("params.temperature"), or None. 1e400 in JSON
    reads as infinity, which no device can be set to and no audit row can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} ({value})"
    if depth > _MAX_DEPTH:
        return f"{where} (nested too deep)"
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _not_finite(item, f"{where}.{key}", depth + 1)
        if found is not None:
            return found
    return None


def _as_asked(actions: Sequence[Any]) -> list[Any]:
    """The command for its audit row, as the caller sent it, with what JSON cannot hold written as
    text (infinity as "inf", other objects as their repr), so a refused command is audited too."""
    return [_json_value(a) for a in actions]


def _json_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if depth > _MAX_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        return {str(k): _json_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, depth + 1) for v in value]
    return repr(value)[:200]


__all__ = ["ApplyResult", "Home", "StateEvent", "default_store_url"]
