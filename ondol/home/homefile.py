"""The home file: the YAML (or JSON) file in which a person describes their home.

```yaml
home: demo
language: ko                  # reply language by default: ko or en
areas: [{id: living_room, names: [거실, living room]}]
devices:
  - {id: ac.living, type: air_conditioner, names: [거실 에어컨, living room AC],
     area: living_room, device_class: null, state: {power: off}}   # last three optional
```

People write this file by hand, so every problem is reported as ``file:line: problem`` pointing at
the offending value, and all problems found are reported at once (up to a limit) so a file can be
fixed in one pass. To know lines we walk PyYAML's node graph (``yaml.compose``) instead of loading
Python objects, and we resolve plain scalars with YAML 1.2 core rules rather than PyYAML's YAML 1.1
ones: under 1.1, ``power: off`` would be the boolean False, ``language: no`` False, ``time: 1:30``
the integer 90 and ``012`` the octal 10. Here only ``true``/``false`` are booleans, and fields that
are text (ids, names, types, areas) always use the text as written, so ``id: 1`` is the id "1".

JSON files go through the same path (JSON is YAML 1.2 flow syntax), after ``json.loads`` has
checked that they really are JSON; literal tabs, which PyYAML refuses in flow context but JSON can
only have between tokens, are turned into spaces first (line numbers do not move).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jsonschema
import yaml

from ondol.home import yaml12 as y
from ondol.home.errors import HomeFileError
from ondol.home.names import normalize
from ondol.home.vocab import LANGUAGES

if TYPE_CHECKING:
    from ondol.home.devices import DeviceType

# ids end up in URLs (/v1/homes/{home}/...), MQTT topics (ondol/<home>/<device>/set) and SQL rows:
# a small ASCII alphabet with no '/', '+', '#' or spaces keeps them safe everywhere.
HOME_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
ITEM_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
MAX_NAME_LENGTH = 100
MAX_FILE_BYTES = 4 << 20
MAX_PROBLEMS = 20
MAX_PROBLEM_CHARS = 300

_TOP_KEYS = ("home", "language", "areas", "devices")
_AREA_KEYS = ("id", "names")
_DEVICE_KEYS = ("id", "type", "names", "area", "device_class", "state")



@dataclass(frozen=True)
class AreaSpec:
    id: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    type: str
    names: tuple[str, ...] = ()
    area: str | None = None
    device_class: str | None = None
    # The full initial state (the file's values merged over the type's defaults), read-only so a
    # frozen spec stays frozen; copy with dict(spec.state) to change or serialise it.
    state: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "state", MappingProxyType(dict(self.state)))


@dataclass(frozen=True)
class HomeSpec:
    home: str
    language: str = "ko"
    areas: tuple[AreaSpec, ...] = ()
    devices: tuple[DeviceSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "areas", tuple(self.areas))
        object.__setattr__(self, "devices", tuple(self.devices))

    def device(self, device_id: str) -> DeviceSpec:
        """The device with this id (KeyError if none)."""
        return {d.id: d for d in self.devices}[device_id]

    def area(self, area_id: str) -> AreaSpec:
        return {a.id: a for a in self.areas}[area_id]

    def to_dict(self) -> dict[str, Any]:
        """The home in the file's format (plain dicts and lists): yaml.safe_dump or json.dumps it."""
        devices = []
        for d in self.devices:
            out: dict[str, Any] = {"id": d.id, "type": d.type, "names": list(d.names)}
            if d.area is not None:
                out["area"] = d.area
            if d.device_class is not None:
                out["device_class"] = d.device_class
            out["state"] = dict(d.state)
            devices.append(out)
        return {"home": self.home, "language": self.language,
                "areas": [{"id": a.id, "names": list(a.names)} for a in self.areas], "devices": devices}


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {y.show(close[0])}?" if close else ""


# --- validation ------------------------------------------------------------------------------

class _Reader:
    """Walks the composed document, collecting (line, problem) pairs instead of stopping at the first."""

    def __init__(self, types: Mapping[str, DeviceType]):
        self.types = types
        self.problems: list[tuple[int, str]] = []

    def bad(self, node: yaml.Node, message: str) -> None:
        self.problems.append((y.line(node), message))

    # -- generic shapes -------------------------------------------------------------------

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...],
                required: tuple[str, ...]) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.bad(node, f"{what} must be a mapping of keys ({', '.join(allowed)}), not {_kind_of(node)}")
            return None
        out: dict[str, yaml.Node] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            try:
                key = y.key(key_node)
            except y.Bad as e:
                self.bad(e.node, f"{what}: {e.message}")
                continue
            if key in out:
                self.bad(key_node, f"{what}: key {y.show(key)} appears twice (first on line {first_line[key]})")
            elif key not in allowed:
                self.bad(key_node, f"{what}: unknown key {y.show(key)}{_did_you_mean(key, allowed)}"
                                   f" (allowed: {', '.join(allowed)})")
            else:
                out[key], first_line[key] = value_node, y.line(key_node)
        for key in required:
            if key not in out:
                self.bad(node, f"{what}: missing {y.show(key)}")
        return out

    def text(self, node: yaml.Node, what: str) -> str | None:
        """A text field: the scalar exactly as written (so `id: 1` is "1" and `no` is "no")."""
        if not isinstance(node, yaml.ScalarNode):
            self.bad(node, f"{what} must be a single value, not {_kind_of(node)}")
            return None
        if node.tag not in (y.STR, y.INT, y.FLOAT, y.BOOL, y.NULL):
            self.bad(node, f"{what}: unsupported YAML tag {node.tag!r}")
            return None
        value = y.text(node).strip()
        if node.tag == y.NULL or not value:
            self.bad(node, f"{what} is empty")
            return None
        return value

    def ident(self, node: yaml.Node, what: str, pattern: re.Pattern[str], rule: str) -> str | None:
        value = self.text(node, what)
        if value is not None and not pattern.match(value):
            self.bad(node, f"{what} {y.show(value)} is not a valid id: {rule}")
            return None
        return value

    def names(self, node: yaml.Node | None, what: str) -> list[tuple[str, yaml.Node]]:
        """(name, node) pairs; a single name may be written without the list brackets."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == y.NULL):
            return []
        items = [node] if isinstance(node, yaml.ScalarNode) else node.value if isinstance(node, yaml.SequenceNode) else None
        if items is None:
            self.bad(node, f"{what}: names must be a list of names, not {_kind_of(node)}")
            return []
        out = []
        for item in items:
            name = self.text(item, f"{what}: a name")
            if name is None:
                continue
            if len(name) > MAX_NAME_LENGTH:
                self.bad(item, f"{what}: name {y.show(name[:20] + '...')} is longer than {MAX_NAME_LENGTH} characters")
            elif not normalize(name):
                self.bad(item, f"{what}: name {y.show(name)} has no letters or digits")
            else:
                out.append((name, item))
        return out

    # -- the home -------------------------------------------------------------------------

    def home(self, root: yaml.Node) -> HomeSpec | None:
        top = self.mapping(root, "the home file", _TOP_KEYS, ("home", "devices"))
        if top is None:
            return None
        home_id = None
        if "home" in top:
            home_id = self.ident(top["home"], "home", HOME_ID, "lower-case ASCII letters, digits, '_' and '-'")
        language = "ko"
        if "language" in top:
            value = self.text(top["language"], "language")
            if value is not None and value not in LANGUAGES:
                self.bad(top["language"], f"language {y.show(value)} is not supported; use one of: {', '.join(LANGUAGES)}")
            elif value is not None:
                language = value
        areas = self.areas(top.get("areas"))
        devices = self.devices(top.get("devices"), areas)
        if home_id is None or self.problems:
            return None
        return HomeSpec(home_id, language, tuple(areas.values()), tuple(devices))

    def items(self, node: yaml.Node | None, what: str) -> list[yaml.Node]:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == y.NULL):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.bad(node, f"{what} must be a list (one '- id: ...' entry per item), not {_kind_of(node)}")
            return []
        return list(node.value)

    def areas(self, node: yaml.Node | None) -> dict[str, AreaSpec]:
        areas: dict[str, AreaSpec] = {}
        lines: dict[str, int] = {}
        owner: dict[str, str] = {}  # normalized name or id -> area id, to refuse names two areas share
        for item in self.items(node, "areas"):
            entry = self.entry(item, "area", _AREA_KEYS, ("id",), lines)
            if entry is None:
                continue
            fields, area_id, what = entry
            named = self.names(fields.get("names"), what)
            # An area name two areas share would make "거실 조명" unresolvable, and unlike devices
            # there is nothing narrower to fall back on, so it is refused here.
            for name, where in [(area_id, fields["id"]), *named]:
                other = owner.setdefault(normalize(name), area_id)
                if other != area_id:
                    self.bad(where, f"{what}: name {y.show(name)} is already used by area {y.show(other)}")
            areas[area_id] = AreaSpec(area_id, tuple(n for n, _ in named))
        return areas

    def entry(self, item: yaml.Node, kind: str, keys: tuple[str, ...], required: tuple[str, ...],
              lines: dict[str, int]) -> tuple[dict[str, yaml.Node], str, str] | None:
        """An area or device entry: (its fields, its id, how messages name it), or None after
        reporting why not (not a mapping, a bad or repeated id). ``lines`` records each id's line."""
        fields = self.mapping(item, _label(kind, item), keys, required)
        if fields is None or "id" not in fields:
            return None
        ident = self.ident(fields["id"], f"{kind} id", ITEM_ID, "lower-case ASCII letters, digits, '_', '.' and '-'")
        if ident is None:
            return None
        what = f"{kind} {y.show(ident)}"
        if ident in lines:
            self.bad(fields["id"], f"{what} is defined twice (first on line {lines[ident]})")
            return None
        lines[ident] = y.line(fields["id"])
        return fields, ident, what

    def devices(self, node: yaml.Node | None, areas: Mapping[str, AreaSpec]) -> list[DeviceSpec]:
        devices: dict[str, DeviceSpec] = {}
        lines: dict[str, int] = {}
        name_nodes: list[tuple[str, str, yaml.Node]] = []  # (device id, name, node) for the id check
        for item in self.items(node, "devices"):
            entry = self.entry(item, "device", _DEVICE_KEYS, ("id", "type"), lines)
            if entry is None:
                continue
            fields, device_id, what = entry
            named = self.names(fields.get("names"), what)
            name_nodes += [(device_id, n, where) for n, where in named]
            names = tuple(n for n, _ in named)
            area = None
            if fields.get("area") is not None and not _is_null(fields["area"]):
                area = self.text(fields["area"], f"{what}: area")
                if area is not None and area not in areas:
                    self.bad(fields["area"], f"{what}: unknown area {y.show(area)}{_area_hint(area, areas)}")
                    area = None
            spec = self.device_type(fields, what, device_id, names, area)
            if spec is not None:
                devices[device_id] = spec
        # Two devices may share a name ("스탠드" in two rooms): resolving it is then an ambiguity the
        # assistant asks about (names.py). But a name may not be another device's id, because an
        # id must always reach exactly its own device.
        ids = {normalize(d): d for d in lines}
        for device_id, name, where in name_nodes:
            other = ids.get(normalize(name))
            if other is not None and other != device_id:
                self.bad(where, f"device {y.show(device_id)}: name {y.show(name)} is the id of device {y.show(other)}")
        return list(devices.values())

    def device_type(self, fields: Mapping[str, yaml.Node], what: str, device_id: str,
                    names: tuple[str, ...], area: str | None) -> DeviceSpec | None:
        type_name = self.text(fields["type"], f"{what}: type") if "type" in fields else None
        if type_name is None:
            return None
        dtype = self.types.get(type_name)
        if dtype is None:
            self.bad(fields["type"], f"{what}: unknown type {y.show(type_name)}{_type_hint(type_name, self.types)}"
                                     f" known types: {', '.join(self.types)}")
            return None
        device_class = None
        if "device_class" in fields and not _is_null(fields["device_class"]):
            device_class = self.text(fields["device_class"], f"{what}: device_class")
            classes = tuple(getattr(dtype, "device_classes", ()) or ())
            if device_class is not None and device_class not in classes:
                allowed = f"one of: {', '.join(classes)}" if classes else "none (leave it out)"
                self.bad(fields["device_class"], f"{what}: device_class {y.show(device_class)} is not a class of "
                                                 f"{type_name}{_did_you_mean(device_class, classes)} (allowed: {allowed})")
                device_class = None
        if device_class is not None and hasattr(dtype, "for_class"):
            dtype = dtype.for_class(device_class)  # a class may have fewer attributes (a contact sensor)
        state = self.state(fields.get("state"), what, dtype)
        if state is None:
            return None
        return DeviceSpec(device_id, type_name, names, area, device_class, state)

    def state(self, node: yaml.Node | None, what: str, dtype: DeviceType) -> dict[str, Any] | None:
        schema = dtype.state_schema()
        properties: Mapping[str, Any] = schema.get("properties", {})
        state = dict(dtype.default_state())
        if node is None or _is_null(node):
            return state
        if not isinstance(node, yaml.MappingNode):
            self.bad(node, f"{what}: state must be a mapping of attribute: value, not {_kind_of(node)}")
            return None
        before = len(self.problems)
        seen: set[str] = set()
        for key_node, value_node in node.value:
            try:
                key = y.key(key_node)
            except y.Bad as e:
                self.bad(e.node, f"{what}: state: {e.message}")
                continue
            if key in seen:
                self.bad(key_node, f"{what}: state {y.show(key)} is given twice")
                continue
            seen.add(key)
            if key not in properties:
                self.bad(key_node, f"{what}: {dtype.name} has no state {y.show(key)}{_did_you_mean(key, properties)}"
                                   f" (its state: {', '.join(properties)})")
                continue
            try:
                state[key] = _state_value(value_node, properties[key], f"{what}: state {y.show(key)}")
            except y.Bad as e:
                self.bad(e.node, e.message)
        if len(self.problems) > before:
            return None
        # Whole-object rules (required attributes, combinations) once every value is valid alone.
        error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(state))
        if error is not None:
            self.bad(node, f"{what}: state: {_describe(error)}")
            return None
        return state


def _state_value(node: yaml.Node, schema: Mapping[str, Any], what: str) -> Any:
    try:
        value = y.plain(node)
    except y.Bad as e:
        raise y.Bad(e.node, f"{what}: {e.message}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise y.Bad(node, f"{what}: {node.value} is not a finite number")
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(value))
    if error is None:
        # JSON Schema counts 1e2 as an integer; store it as one, as the device layer does.
        if schema.get("type") == "integer" and isinstance(value, float):
            return int(value)
        return value
    # An unquoted scalar that YAML typed (fan_speed: 2) may be meant as text (the enum "2").
    if isinstance(node, yaml.ScalarNode) and node.style is None and not isinstance(value, str):
        if not any(_validator(schema).iter_errors(node.value)):
            return node.value
    raise y.Bad(node, f"{what}: {_describe(error)}")


def _validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _describe(error: jsonschema.ValidationError) -> str:
    """A jsonschema error in plain words."""
    v, arg = error.instance, error.validator_value
    where = "".join(f"[{y.show(p)}]" for p in error.absolute_path)
    prefix = f"{where}: " if where else ""
    if error.validator == "enum":
        hint = _did_you_mean(str(v), [str(a) for a in arg]) if isinstance(v, str) else ""
        if isinstance(v, bool) and {"on", "off"} <= set(arg):
            hint = ' (write "on" or "off")'
        return f"{prefix}{y.show(v)} is not one of: {', '.join(y.show(a) for a in arg)}{hint}"
    if error.validator in ("minimum", "exclusiveMinimum"):
        return f"{prefix}{y.show(v)} is below the minimum {y.show(arg)}"
    if error.validator in ("maximum", "exclusiveMaximum"):
        return f"{prefix}{y.show(v)} is above the maximum {y.show(arg)}"
    if error.validator == "type":  # "write true or false" for YAML 1.1 spellings of booleans
        wanted = " or ".join(arg) if isinstance(arg, list) else arg
        hint = ""
        if "boolean" in wanted and isinstance(v, str) and v.lower() in ("yes", "no", "on", "off", "y", "n"):
            hint = " (write true or false)"
        return f"{prefix}expected {wanted}, got {y.show(v)}{hint}"
    return f"{prefix}{error.message}"


def _label(what: str, node: yaml.Node) -> str:
    """'device "ac.living"' when the entry has a readable id, for messages about the entry itself."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "id" and isinstance(value, yaml.ScalarNode) and value.value:
                return f"{what} {y.show(value.value)}"
    return f"a {what}" if what[0] not in "aeiou" else f"an {what}"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == y.NULL


def _kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"the value {y.show(node.value)}"


def _area_hint(area: str, areas: Mapping[str, AreaSpec]) -> str:
    # People often write the area's name (거실) where its id belongs.
    for a in areas.values():
        if any(normalize(n) == normalize(area) for n in a.names):
            return f"; write its id: {y.show(a.id)}"
    return _did_you_mean(area, areas) + (f" (areas: {', '.join(areas)})" if areas else " (the file defines no areas)")


def _type_hint(word: str, types: Mapping[str, DeviceType]) -> str:
    # A kind word (에어컨, lamp) or class word (curtain) names its type exactly; else the closest spelling.
    for name, dtype in types.items():
        if normalize(word) in {normalize(k) for k in getattr(dtype, "kind_names", ())}:
            return f"; did you mean {y.show(name)}?"
        for cls, words in getattr(dtype, "class_names", {}).items():
            if normalize(word) in {normalize(w) for w in (cls, *words)}:
                return f"; did you mean {y.show(name)} with device_class {y.show(cls)}?"
    close = difflib.get_close_matches(word, list(types), n=1, cutoff=0.5)
    return f"; did you mean {y.show(close[0])}?" if close else ";"


# --- entry points ----------------------------------------------------------------------------

def parse_home(text: str, filename: str = "<string>", types: Mapping[str, DeviceType] | None = None) -> HomeSpec:
    """Parse and validate a home file's text; raises HomeFileError naming ``filename:line``.

    ``types`` defaults to ondol.home.devices.DEVICE_TYPES (injectable for tests)."""
    if types is None:
        from ondol.home.devices import DEVICE_TYPES as types
    text = text.removeprefix("\ufeff")
    if filename.lower().endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            if filename.lower().endswith(".json"):
                raise _error(filename, [(e.lineno, f"invalid JSON: {e.msg} (column {e.colno})")]) from None
        except RecursionError:
            raise _error(filename, [(1, f"values are nested more than {y.MAX_DEPTH} deep")]) from None
        else:
            text = text.replace("\t", " ")  # tabs in valid JSON are only whitespace between tokens
    try:
        root = y.compose(text)
    except y.Bad as e:
        raise _error(filename, [(y.line(e.node), e.message)]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise _error(filename, [(line, f"invalid YAML: {e.problem or e.context}")]) from None
    except yaml.YAMLError as e:
        raise _error(filename, [(1, f"invalid YAML: {e}")]) from None
    if root is None:
        raise _error(filename, [(1, "the file is empty; it needs at least 'home:' and 'devices:'")])
    reader = _Reader(types)
    try:
        spec = reader.home(root)
    except y.Bad as e:  # a malformed value deep inside something generic
        reader.bad(e.node, e.message)
        spec = None
    except RecursionError:  # check_shape bounds depth, so this is a backstop
        raise _error(filename, [(1, f"values are nested more than {y.MAX_DEPTH} deep")]) from None
    if reader.problems or spec is None:
        raise _error(filename, reader.problems or [(1, "not a valid home file")])
    return spec


def load_home_file(path: str | Path) -> HomeSpec:
    """Read and validate the home file at ``path`` (YAML, or JSON when it ends in .json)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise HomeFileError(f"{path}: the home file is larger than {MAX_FILE_BYTES >> 20} MB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise HomeFileError(f"no home file at {path}") from None
    except IsADirectoryError:
        raise HomeFileError(f"{path} is a directory, not a home file") from None
    except OSError as e:
        raise HomeFileError(f"cannot read the home file {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise _error(str(path), [(line, "the file is not UTF-8 text; save it as UTF-8")]) from None
    return parse_home(text, str(path))


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_PROBLEM_CHARS else text[:MAX_PROBLEM_CHARS - 3] + "..."


def _error(filename: str, problems: list[tuple[int, str]]) -> HomeFileError:
    """One HomeFileError for all problems, in file order; ``err.problems`` keeps (line, text) pairs."""
    problems = sorted(problems, key=lambda p: p[0])  # stable: same line keeps discovery order
    lines = [f"{filename}:{line}: {_one_line(text)}" for line, text in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
    err = HomeFileError("\n".join(lines))
    err.filename, err.problems = filename, tuple(problems)
    return err
