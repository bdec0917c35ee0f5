"""Home files as PyYAML node graphs: YAML 1.2 core-schema scalars, and bounds on the graph.

``homefile`` walks nodes (not loaded Python objects) so every problem can name its line. Plain
scalars resolve by YAML 1.2 core rules (``off`` is text, ``012`` is twelve). A graph is measured
before anything walks it (``compose``): YAML aliases (*name) repeat a node without copying it, so
1 KB can stand for billions of values ("billion laughs"), and nesting can be as deep as the text
is long; past the bounds below the file is refused, in time linear in its size.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

MAX_DEPTH = 32
MAX_VALUES = 100_000
MAX_ALIASES = 1_000
MAX_SHOWN = 80  # characters of one value quoted in an error

_T = "tag:yaml.org,2002:"
NULL, BOOL, INT, FLOAT, STR, SEQ, MAP = (_T + t for t in ("null", "bool", "int", "float", "str", "seq", "map"))


class Loader(yaml.SafeLoader):
    """SafeLoader whose implicit (plain scalar) resolution follows the YAML 1.2 core schema."""

    # A fresh dict: add_implicit_resolver below must not touch SafeLoader's own table.
    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in (
    (NULL, r"(?:~|null|Null|NULL|)\Z", ["~", "n", "N", ""]),
    (BOOL, r"(?:true|True|TRUE|false|False|FALSE)\Z", list("tTfF")),
    # int before float: the resolver takes the first pattern that matches.
    (INT, r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z", list("-+0123456789")),
    (FLOAT, r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z", list("-+.0123456789")),
):
    Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


class Bad(Exception):
    """A problem with one node (None: the file as a whole). The home file reader collects these
    into its HomeFileError; they never escape ondol.home.homefile."""

    def __init__(self, node: yaml.Node | None, message: str):
        super().__init__(message)
        self.node, self.message = node, message


def text(node: yaml.ScalarNode) -> str:
    # PyYAML decodes a JSON "\ud83d\ude00" escape into two lone surrogates; join them.
    value = node.value
    if any("\ud800" <= c <= "\udfff" for c in value):
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def scalar(node: yaml.ScalarNode) -> Any:
    """The value of a scalar node under the core schema; explicit tags beyond it are refused."""
    tag, raw = node.tag, node.value
    try:
        if tag == STR:
            return text(node)
        if tag == NULL:
            return None
        if tag == BOOL:
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return raw.lower() == "true"
        if tag == INT:
            return int(raw, 0) if raw[:2].lower() in ("0o", "0x") else int(raw, 10)
        if tag == FLOAT:
            low = raw.lower().lstrip("+")
            return {".inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}.get(low) or float(raw)
    except ValueError:
        raise Bad(node, f"{show(raw)} is not a valid {tag.rsplit(':', 1)[-1]}") from None
    raise Bad(node, f"unsupported YAML tag {tag!r}")


def plain(node: yaml.Node) -> Any:
    """A node as plain Python data (for state values, which may be lists or objects)."""
    if isinstance(node, yaml.ScalarNode):
        return scalar(node)
    if isinstance(node, yaml.SequenceNode) and node.tag == SEQ:
        return [plain(n) for n in node.value]
    if isinstance(node, yaml.MappingNode) and node.tag == MAP:
        return {key(k): plain(v) for k, v in node.value}
    raise Bad(node, f"unsupported YAML tag {node.tag!r}")


def key(node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise Bad(node, "a key must be a plain word, not a list or mapping")
    return text(node)


def show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_shape(root: yaml.Node) -> None:
    """Refuse a graph nested deeper than MAX_DEPTH, holding more than MAX_VALUES values once its
    aliases are expanded, using more than MAX_ALIASES aliases, or with an alias inside its own
    anchor. Iterative, and linear in the nodes as written (each distinct node is measured once)."""
    size: dict[int, int] = {}  # id(node) -> values it expands to
    height: dict[int, int] = {}  # id(node) -> levels it expands to (a scalar: 1)
    on_path: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            kids = children(node)
            size[key] = 1 + sum(size[id(c)] for c in kids)
            height[key] = 1 + max((height[id(c)] for c in kids), default=0)
            if size[key] > MAX_VALUES:
                raise Bad(node, f"the file holds more than {MAX_VALUES} values once its YAML aliases are "
                                 "expanded; write the values out instead")
            continue
        if key in size:  # a node seen before: this is an alias to it, expanded here at this depth
            aliases += 1
            if aliases > MAX_ALIASES:
                raise Bad(node, f"the file uses more than {MAX_ALIASES} YAML aliases")
            if depth + height[key] - 1 > MAX_DEPTH:
                raise Bad(node, f"values are nested more than {MAX_DEPTH} deep")
            continue
        if key in on_path:
            raise Bad(node, "a YAML alias refers to the value that contains it")
        if depth > MAX_DEPTH:
            raise Bad(node, f"values are nested more than {MAX_DEPTH} deep")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children(node))


def line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def compose(source: str) -> yaml.Node | None:
    """The node graph of ``source`` (None for an empty document), checked by ``check_shape``.

    Raises Bad (a node and a message), yaml.YAMLError, or Bad on the first line when the nesting
    is too deep for PyYAML's recursive composer."""
    try:
        root = yaml.compose(source, Loader=Loader)
    except RecursionError:
        raise Bad(None, f"values are nested more than {MAX_DEPTH} deep") from None
    if root is not None:
        check_shape(root)
    return root
