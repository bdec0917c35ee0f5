"""Random JSON schemas from the subset ondol enforces, for property tests of constrained decoding.

``random_schema(rng)`` draws objects with required and optional properties (``additionalProperties:
false``, or absent), enum and const (Korean strings, numbers, booleans, null), integers and numbers
with ranges, strings with minLength/maxLength and simple patterns, booleans, null, arrays with
minItems/maxItems, nested objects, anyOf, and $ref into $defs.

Every document a schema allows is **bounded in length**, so a model forced through the grammar
(random weights, any temperature) always finishes: ``worst_case_bytes(schema)`` is at most
``MAX_DOC_BYTES``, and a token is at least one byte, so the document fits in that many tokens.
What bounds each part (measured on llguidance 1.9.1 with ondol's JSON options):

* strings: maxLength ≤ 16 characters, always set; a character is at most 6 bytes in the document
  (``\\u001f``: llguidance allows only the control-character ``\\u`` escapes, and no surrogate pairs);
* integers: minimum and maximum (or their exclusive forms) both set;
* numbers: llguidance does **not** bound the fraction digits of a number with only a range
  (``0.123456789012345678901234567890`` passes ``minimum: 0, maximum: 1``), so every number has a
  multipleOf, which bounds them (0.25 allows at most two). The multipleOf values are powers of two
  (0.5, 0.25, 0.125) so that jsonschema's float check agrees: jsonschema computes
  ``0.7 / 0.1 = 6.999…`` and refuses 0.7 as a multiple of 0.1, which llguidance (decimal) allows;
* arrays: maxItems ≤ 4; objects: a fixed set of properties. "additionalProperties absent" would let
  a model add any number of properties with any names and values, so when it is absent every
  property is required and ``maxProperties`` equals their number (llguidance enforces
  maxProperties only in that case);
* nesting: at most ``MAX_DEPTH`` levels; $refs are never recursive.
"""

from __future__ import annotations

import json
import random
from typing import Any

MAX_DEPTH = 3
MAX_DOC_BYTES = 384
MAX_STRING = 16
MAX_ITEMS = 4
CHAR_BYTES = 6  # the most bytes one string character takes in the document (an escape like \u001f)

WORDS = ["거실", "안방", "주방", "현관", "에어컨", "조명", "온도", "밝기", "켜짐", "꺼짐", "자동", "냉방", "난방",
         "보일러", "세탁기", "청소기", "알람", "모드", "on", "off", "auto", "cool", "heat"]  # fmt: skip
NAMES = ["기기", "방", "온도", "밝기", "모드", "상태", "시간", "목록", "설정", "이름", "device", "room", "level",
         "mode", "on", "items", "target", "value"]  # fmt: skip
# (pattern, shortest and longest match in characters): anchored, and read the same by llguidance
# and Python's re (no \w or \b, whose ASCII/Unicode meaning differs).
PATTERNS = [
    ("^[가-힣]{1,6}$", 1, 6),
    ("^[a-z]{2,8}$", 2, 8),
    ("^[0-9]{3}-[0-9]{4}$", 8, 8),
    ("^(켜짐|꺼짐|자동)$", 2, 2),
    ("^방[0-9]{1,2}$", 2, 3),
    ("^[A-Z][a-z]{0,5}$", 1, 6),
    ("^#[0-9a-f]{6}$", 7, 7),
    ("^[가-힣]+ [0-9]+$", 3, MAX_STRING),
]
MULTIPLES = [0.5, 0.25, 0.125]


def random_schema(rng: random.Random, depth: int = 0) -> dict:
    """A random schema from the supported subset; every document it allows has at most
    ``MAX_DOC_BYTES`` bytes (``worst_case_bytes``). ``depth`` > 0 gives a shallower schema."""
    gen = _Generator(rng)
    top = "object" if rng.random() < 0.7 else None
    schema = gen.schema(depth, MAX_DOC_BYTES, kind=top)
    if gen.defs:
        schema = dict(schema)  # a $ref at the top is a dict of its own; $defs go beside it
        schema["$defs"] = gen.defs
    assert worst_case_bytes(schema) <= MAX_DOC_BYTES, schema
    return schema


def worst_case_bytes(schema: Any, root: Any = None) -> int:
    """An upper bound on the UTF-8 length of any document ``schema`` allows, written the way
    ondol's JSON options force (``json.dumps(doc, ensure_ascii=False)``). Only for schemas from
    ``random_schema``."""
    root = schema if root is None else root
    if "$ref" in schema:
        return worst_case_bytes(root["$defs"][schema["$ref"].removeprefix("#/$defs/")], root)
    if "anyOf" in schema:
        return max(worst_case_bytes(option, root) for option in schema["anyOf"])
    if "const" in schema:
        return _size(schema["const"])
    if "enum" in schema:
        return max(_size(v) for v in schema["enum"])
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return max(_type_bytes(schema, t, root) for t in types)


def _type_bytes(schema: dict, kind: str, root: Any) -> int:
    if kind == "null":
        return 4
    if kind == "boolean":
        return 5
    if kind == "integer":
        low, high = _bounds(schema)
        return max(len(str(low)), len(str(high)), 2)  # 2: "-0"
    if kind == "number":
        low, high = _bounds(schema)
        fraction = len(repr(schema["multipleOf"]).split(".")[1])
        return max(len(str(int(low))), len(str(int(high))), 2) + 1 + fraction
    if kind == "string":
        return 2 + schema["maxLength"] * CHAR_BYTES
    if kind == "array":
        return 2 + schema["maxItems"] * (worst_case_bytes(schema["items"], root) + 2)
    if kind == "object":
        return 2 + sum(_size(name) + 2 + worst_case_bytes(sub, root) + 2 for name, sub in schema["properties"].items())
    raise ValueError(f"not a generated schema: {schema}")


def _bounds(schema: dict) -> tuple[float, float]:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    return low, high


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


class _Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.defs: dict[str, dict] = {}
        self._def_bytes: dict[str, int] = {}
        self._count = 0

    def schema(self, depth: int, budget: int, kind: str | None = None) -> dict:
        """A schema whose documents take at most ``budget`` bytes."""
        for _ in range(8):
            kind_now = kind or self._kind(depth)
            schema = getattr(self, "_" + kind_now)(depth, budget)
            if schema is not None and self._bytes(schema) <= budget:
                return schema
            kind = None
        return {"type": "boolean"} if budget >= 5 else {"type": "null"}

    def _bytes(self, schema: dict) -> int:
        return worst_case_bytes(schema, {"$defs": self.defs})

    def _kind(self, depth: int) -> str:
        leaves = ["string", "string", "integer", "number", "boolean", "null", "enum", "const"]
        nodes = ["object", "object", "array", "array", "anyOf", "ref"] if depth < MAX_DEPTH else []
        return self.rng.choice(leaves + nodes)

    def _null(self, depth: int, budget: int) -> dict:
        return {"type": "null"}

    def _boolean(self, depth: int, budget: int) -> dict:
        return {"type": "boolean"}

    def _word(self) -> str:
        return self.rng.choice(WORDS)

    def _scalar(self) -> Any:
        r = self.rng.random()
        if r < 0.6:
            return self._word()
        if r < 0.8:
            return self.rng.randint(-100, 100)
        if r < 0.9:
            return self.rng.choice([0.5, -2.25, 36.5])
        return self.rng.choice([True, False, None])

    def _enum(self, depth: int, budget: int) -> dict:
        values = {}  # keyed by JSON text: 1 and true are different JSON values, equal in Python
        for _ in range(self.rng.randint(1, 5)):
            value = self._scalar()
            values.setdefault(json.dumps(value), value)
        values = list(values.values())
        schema: dict = {"enum": values}
        if all(isinstance(v, str) for v in values) and self.rng.random() < 0.5:
            schema = {"type": "string", **schema}
        return schema

    def _const(self, depth: int, budget: int) -> dict:
        return {"const": self._scalar()}

    def _integer(self, depth: int, budget: int) -> dict:
        low = self.rng.choice([-1000, -50, -1, 0, 0, 1, 16])
        high = low + self.rng.choice([0, 1, 9, 30, 100, 5000])
        schema: dict = {"type": "integer"}
        schema.update({"exclusiveMinimum": low - 1} if self.rng.random() < 0.2 else {"minimum": low})
        schema.update({"exclusiveMaximum": high + 1} if self.rng.random() < 0.2 else {"maximum": high})
        if self.rng.random() < 0.2:
            step = self.rng.choice([2, 5, 10])
            schema["multipleOf"] = step
            if high - low < step:  # make sure a multiple lies in the range
                schema.update({"minimum": 0, "maximum": step * 3})
                schema.pop("exclusiveMinimum", None)
                schema.pop("exclusiveMaximum", None)
        return schema

    def _number(self, depth: int, budget: int) -> dict:
        low = self.rng.choice([-40, -1, 0, 0, 0.5, 18])
        high = low + self.rng.choice([1, 2.5, 10, 60, 1000])
        schema: dict = {"type": "number", "multipleOf": self.rng.choice(MULTIPLES)}
        schema.update({"exclusiveMinimum": low} if self.rng.random() < 0.2 else {"minimum": low})
        schema.update({"exclusiveMaximum": high} if self.rng.random() < 0.2 else {"maximum": high})
        return schema

    def _string(self, depth: int, budget: int) -> dict | None:
        longest = min(MAX_STRING, (budget - 2) // CHAR_BYTES)
        if longest < 1:
            return None
        if self.rng.random() < 0.35:
            pattern, shortest, pattern_longest = self.rng.choice(PATTERNS)
            if shortest > longest:
                return None
            high = self.rng.randint(shortest, min(longest, pattern_longest))
            return {"type": "string", "pattern": pattern, "maxLength": high}
        high = self.rng.randint(1, longest)
        low = self.rng.randint(0, min(high, 3))
        schema: dict = {"type": "string", "maxLength": high}
        if low or self.rng.random() < 0.3:
            schema["minLength"] = low
        return schema

    def _array(self, depth: int, budget: int) -> dict | None:
        most = self.rng.randint(1, MAX_ITEMS)
        least = self.rng.randint(0, min(most, 2))
        item_budget = (budget - 2) // most - 2
        if item_budget < 5:
            return None
        items = self.schema(depth + 1, item_budget)
        return {"type": "array", "items": items, "minItems": least, "maxItems": most}

    def _object(self, depth: int, budget: int) -> dict | None:
        names = self.rng.sample(NAMES, self.rng.randint(0 if depth else 1, 4))
        properties, left = {}, budget - 2
        for i, name in enumerate(names):
            share = (left - (len(names) - i - 1) * 12) // (len(names) - i)  # keep ~12 bytes for each next one
            value_budget = share - _size(name) - 4
            if value_budget < 5:
                break
            properties[name] = self.schema(depth + 1, value_budget)
            left -= _size(name) + 4 + self._bytes(properties[name])
        schema: dict = {"type": "object", "properties": properties}
        if self.rng.random() < 0.6:
            schema["required"] = [n for n in properties if self.rng.random() < 0.6]
            schema["additionalProperties"] = False
        else:
            # additionalProperties absent: bounded by requiring every property and no more.
            schema["required"] = list(properties)
            schema["maxProperties"] = len(properties)
        if not schema["required"]:
            del schema["required"]
        return schema

    def _anyOf(self, depth: int, budget: int) -> dict:
        return {"anyOf": [self.schema(depth + 1, budget) for _ in range(self.rng.randint(2, 3))]}

    def _ref(self, depth: int, budget: int) -> dict | None:
        fitting = [name for name, size in self._def_bytes.items() if size <= budget]
        if fitting and self.rng.random() < 0.5:
            return {"$ref": f"#/$defs/{self.rng.choice(fitting)}"}
        self._count += 1  # before generating the target, which may define others: names stay unique
        name = f"{self.rng.choice(['device', 'room', 'setting', 'value'])}{self._count}"  # ASCII: a $ref is a URI
        target = self.schema(depth + 1, budget)
        self.defs[name] = target
        self._def_bytes[name] = self._bytes(target)
        return {"$ref": f"#/$defs/{name}"}
