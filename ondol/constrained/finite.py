"""Whether a JSON schema has a finite instance at all, checked before it is compiled.

llguidance compiles ``{"$ref": "#"}``, two definitions that only refer to each other, or an object
whose required property is the object again, and the matcher then dead-ends (or never ends) on the
first token. Such a schema describes no finite JSON document, so no output can ever satisfy it:
it is the request's mistake and is refused with a 400 that says where the loop is, instead of
reaching the engine.

The check is the emptiness test of a context-free grammar, run on the schema graph: a schema is
*productive* when some finite document satisfies it, computed as a least fixpoint (every schema
starts unproductive; a pass marks those whose conditions hold given the current marks; repeat
until nothing changes). Conditions, per schema object:

* ``$ref``, every ``allOf`` member: productive; ``anyOf``/``oneOf``: at least one member;
* its type part: a scalar type (string, number, integer, boolean, null), ``enum`` or ``const``
  gives one at once; ``"object"`` needs every required property's schema productive; ``"array"``
  needs its first ``minItems`` item schemas productive.

It errs on the side of accepting: shapes it does not understand count as productive (llguidance
then judges them), and it never refuses a schema that has an instance. It does not compute the
intersection of ``allOf`` members, so contradictory members (``type`` string and integer) are left
to llguidance.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ondol.errors import InvalidRequestError

SCALARS = frozenset({"string", "number", "integer", "boolean", "null"})
ALL_TYPES = SCALARS | {"object", "array"}


def check_finite(root: dict[str, Any]) -> None:
    """Raise InvalidRequestError when no finite JSON document satisfies ``root``."""
    nodes = _collect(root)
    productive: dict[int, bool] = {key: False for key in nodes}
    for _ in range(len(nodes) + 1):  # each pass that changes something marks one more schema
        changed = False
        for key, (node, _path) in nodes.items():
            if not productive[key] and _holds(node, root, productive):
                productive[key] = changed = True
        if not changed:
            break
    if productive[id(root)]:
        return
    loop = [path for key, (node, path) in nodes.items()
            if not productive[key] and isinstance(node, dict) and _target(node, root) is not None]
    where = f' (the "$ref" at {_pointer(loop[0])} leads back without a way out)' if loop else ""
    raise InvalidRequestError(
        f"The JSON schema has no finite instance{where}: no JSON document can satisfy it, so no output could. "
        "Make the recursion optional (a property that is not required, or an array that may be empty).")


def _collect(root: Any) -> dict[int, tuple[Any, tuple[str, ...]]]:
    """Every schema reachable from ``root`` (through subschema keywords and local $refs), keyed by id."""
    found: dict[int, tuple[Any, tuple[str, ...]]] = {}
    stack: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in found or not isinstance(node, dict | bool):
            continue
        found[id(node)] = (node, path)
        if isinstance(node, bool):
            continue
        for sub, at in _children(node, root, path):
            stack.append((sub, at))
    return found


def _children(node: dict[str, Any], root: Any, path: tuple[str, ...]):
    for key in ("additionalProperties", "additionalItems", "items"):
        value = node.get(key)
        if isinstance(value, list):
            yield from ((v, path + (key, str(i))) for i, v in enumerate(value))
        elif value is not None:
            yield value, path + (key,)
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        value = node.get(key)
        if isinstance(value, list):
            yield from ((v, path + (key, str(i))) for i, v in enumerate(value))
    for key in ("properties", "patternProperties", "$defs", "definitions"):
        value = node.get(key)
        if isinstance(value, dict):
            yield from ((v, path + (key, name)) for name, v in value.items())
    target = _target(node, root)
    if target is not None:
        yield target, path + ("$ref",)


def _target(node: dict[str, Any], root: Any) -> Any:
    """The schema a local JSON-pointer ``$ref`` names, or None (no ref, or not one this can follow)."""
    ref = node.get("$ref")
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        return None
    target = root
    for part in ref[2:].split("/") if ref != "#" else ():
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return None
    return target if isinstance(target, dict | bool) else None


def _holds(node: Any, root: Any, productive: dict[int, bool]) -> bool:
    """Whether ``node`` has an instance, given which schemas are known to have one."""
    if isinstance(node, bool):
        return node

    def ok(sub: Any) -> bool:
        if isinstance(sub, bool):
            return sub
        return productive.get(id(sub), True)  # a shape this walk did not collect: not judged here

    target = _target(node, root)
    if target is not None and not ok(target):
        return False
    all_of = node.get("allOf")
    if isinstance(all_of, list) and not all(ok(s) for s in all_of):
        return False
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options and not any(ok(s) for s in options):
            return False
    if "enum" in node or "const" in node:
        return True
    types = node.get("type", sorted(ALL_TYPES))
    types = {types} if isinstance(types, str) else set(types) if isinstance(types, list) else ALL_TYPES
    if types & SCALARS or not types & ALL_TYPES:
        return True
    return ("object" in types and _object_holds(node, ok)) or ("array" in types and _array_holds(node, ok))


def _object_holds(node: dict[str, Any], ok) -> bool:
    props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    extra = node.get("additionalProperties", True)
    required = node.get("required") if isinstance(node.get("required"), list) else []
    return all(ok(props[name]) if name in props else ok(extra) if isinstance(extra, dict | bool) else True
               for name in required if isinstance(name, str))


def _array_holds(node: dict[str, Any], ok) -> bool:
    need = node.get("minItems", 0)
    if not isinstance(need, int) or need <= 0:
        return True
    prefix = node.get("prefixItems") if isinstance(node.get("prefixItems"), list) else []
    items = node.get("items", True)
    if isinstance(items, list):  # draft-07's tuple form
        prefix, items = items, node.get("additionalItems", True)
    for i in range(min(need, len(prefix) + 1)):
        schema = prefix[i] if i < len(prefix) else items
        if isinstance(schema, dict | bool) and not ok(schema):
            return False
    return True


def _pointer(path: tuple[str, ...]) -> str:
    if not path:
        return "the top level"
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)
