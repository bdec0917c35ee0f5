"""Which JSON Schema keywords ondol enforces, checked before a schema is compiled.

llguidance (1.9.1, with ondol's JSON options) does one of three things with a keyword: enforces
it, refuses the schema, or **ignores it silently** and lets output through that breaks it.
``check_schema`` walks every subschema and refuses the third kind (and, for one clear message that
says where, the second kind too), so a request either gets output that validates against its whole
schema or a 400 that names what ondol cannot do. Measured keyword by keyword with token-by-token
matching (tests/unit/test_schema_keywords.py):

================================  ==============================================================
enforced by llguidance            type (string or list), enum, const, minimum, maximum,
                                  exclusiveMinimum, exclusiveMaximum (numbers, and draft-04's
                                  booleans), multipleOf, minLength, maxLength (in characters),
                                  pattern (searched, not anchored, as JSON Schema says; no
                                  look-around or backreferences: llguidance refuses those),
                                  format (on strings: date-time, date, time, duration, email,
                                  hostname, ipv4, ipv6, uri, uuid; date and date-time allow
                                  29 February in every year), items (schema, or draft-07's
                                  array), prefixItems, additionalItems (after an ``items`` array),
                                  minItems, maxItems, properties, patternProperties,
                                  additionalProperties, required, minProperties and maxProperties
                                  (llguidance refuses them unless additionalProperties is false
                                  or every listed property is required), allOf, anyOf, oneOf
                                  (llguidance refuses options it cannot prove disjoint), $ref
                                  (local pointers, anchors, recursion, siblings applied), $defs,
                                  definitions, $anchor, $id, $schema
refused by llguidance (and here   uniqueItems, contains, minContains, maxContains, propertyNames,
first, to say where they are)     dependentRequired, dependentSchemas, dependencies, not, if,
                                  then, else, unevaluatedItems, unevaluatedProperties,
                                  $dynamicRef, $dynamicAnchor, $recursiveRef, $recursiveAnchor,
                                  format names outside the list above (idn-email, idn-hostname,
                                  uri-reference, iri, iri-reference, uri-template, json-pointer,
                                  relative-json-pointer, regex, and OpenAPI's int32, binary…)
silently ignored by llguidance,   contentEncoding, contentMediaType, contentSchema; format on a
now refused here                  schema whose type excludes "string" (OpenAPI's
                                  ``{"type": "integer", "format": "int64"}``); additionalItems
                                  without an ``items`` array (after prefixItems it lets extra
                                  items through); "x-guidance" below the top level; and any key
                                  that is not a keyword (see below)
annotations, fine to ignore       title, description, default, examples, $comment, deprecated,
                                  readOnly, writeOnly, $vocabulary; OpenAPI's example and
                                  discriminator (the oneOf beside it does the enforcing)
================================  ==============================================================

Decisions:

* **Keys that are not keywords are refused.** llguidance ignores them, so a typo (``"requird"``,
  ``"maxLenght"``) would silently drop the constraint the user meant; a demanding user wants to
  hear about it. The error suggests the keyword they probably meant. Keys starting with ``x-``
  are extensions by convention and are allowed (never enforced). OpenAPI's ``nullable`` is
  refused with a hint (``"type": [..., "null"]``): ignoring it would refuse the null its author
  meant to allow. Draft-04 and earlier spellings (``id``, ``divisibleBy``…) count as unknown.
* **"x-guidance"** (llguidance's per-schema options: whitespace, separators, escapes) is allowed at
  the top level only, where llguidance reads it, except ``lenient`` and ``coerce_one_of``: they
  make llguidance ignore unsupported keywords or approximate oneOf by anyOf, which is exactly the
  silent under-enforcement ondol promises not to do.
* **Every subschema is checked**, including $defs nothing refers to (llguidance skips those) and
  schemas that a $ref reaches under an ``x-`` key.
* Values that are data, not schemas (enum, const, default, examples), are not walked.
* A ``$ref`` must be a URI, as JSON Schema says: ``"#/$defs/기기"`` is refused with the
  percent-encoded spelling to use instead (``"#/$defs/%EA%B8%B0%EA%B8%B0"``), which llguidance
  resolves; llguidance's own error for it names a character index only.

Malformed schemas (``"properties": []``, ``"required": "a"``…) are mostly left to llguidance,
whose messages say what it expected; this walk reports only the shapes it needs to walk.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any
from urllib.parse import quote, unquote

from ondol.constrained.finite import check_finite
from ondol.errors import InvalidRequestError

ENFORCED = frozenset({
    "type", "enum", "const",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format",
    "items", "prefixItems", "additionalItems", "minItems", "maxItems",
    "properties", "patternProperties", "additionalProperties", "required", "minProperties", "maxProperties",
    "allOf", "anyOf", "oneOf",
    "$ref", "$defs", "definitions", "$anchor", "$id", "$schema",
})  # fmt: skip

ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
    "$vocabulary",
    "example", "discriminator",  # OpenAPI
})  # fmt: skip

# JSON Schema keywords (draft-07, 2019-09, 2020-12) that are not enforced. Value: a hint, or "".
UNSUPPORTED = {
    "uniqueItems": "",
    "contains": "",
    "minContains": "",
    "maxContains": "",
    "propertyNames": "list the allowed names in properties with additionalProperties false, or use patternProperties",
    "dependentRequired": "",
    "dependentSchemas": "",
    "dependencies": "",
    "not": "",
    "if": "write the cases as anyOf",
    "then": "",
    "else": "",
    "unevaluatedItems": "use items",
    "unevaluatedProperties": "use additionalProperties",
    "$dynamicRef": "use $ref",
    "$dynamicAnchor": "",
    "$recursiveRef": "use $ref",
    "$recursiveAnchor": "",
    "contentEncoding": "use pattern",
    "contentMediaType": "",
    "contentSchema": "",
}

# Not keywords, but spelled by people who mean something by them.
UNKNOWN_HINTS = {
    "nullable": 'OpenAPI\'s; write "type": [..., "null"]',
    "id": 'draft-04\'s; write "$id"',
    "divisibleBy": 'draft-03\'s; write "multipleOf"',
    "optional": 'draft-03\'s; list required properties in "required"',
    "extends": 'draft-03\'s; write "allOf"',
}

FORMATS = ("date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uuid")

# llguidance options a schema may set in "x-guidance"; the others loosen enforcement.
GUIDANCE_LOOSENING = ("lenient", "coerce_one_of")

SCHEMA_VALUED = ("additionalProperties", "additionalItems")  # "items" is handled apart (schema or array)
SCHEMA_ARRAYS = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")

# What a URI may hold besides letters, digits and "-._~" (RFC 3986), and "%" of escapes already there.
URI_CHARACTERS = ":/?#[]@!$&'()*+,;=%"

KNOWN = ENFORCED | ANNOTATIONS | UNSUPPORTED.keys()
MAX_LISTED = 10


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidRequestError naming any keyword that would not be enforced."""
    walk = _Walk(schema)
    walk.run()
    sentences = []
    if walk.unsupported:
        sentences.append(f"The JSON schema uses keywords ondol cannot enforce: {_listing(walk.unsupported)}. "
                         "Remove them, or rewrite the constraint with keywords ondol enforces "
                         "(ondol refuses a schema rather than enforce only part of it).")
    if walk.unknown:
        sentences.append(f"The JSON schema has keys that are not JSON Schema keywords: {_listing(walk.unknown)}. "
                         'Fix or remove them; extension keys must start with "x-".')
    if sentences:
        raise InvalidRequestError(" ".join(sentences))
    check_finite(schema)


class _Walk:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.unsupported: list[str] = []
        self.unknown: list[str] = []
        self._seen: set[int] = set()
        self._stack: list[tuple[Any, tuple[str, ...]]] = [(root, ())]

    def run(self) -> None:
        # An explicit stack: a deeply nested schema must not end in a RecursionError.
        while self._stack:
            node, path = self._stack.pop()
            if isinstance(node, bool):
                continue
            if not isinstance(node, dict):
                raise InvalidRequestError(f"The JSON schema is invalid: the schema at {_where(path)} is "
                                          f"{_kind(node)}; a schema is an object, true or false.")
            if id(node) in self._seen:
                continue
            self._seen.add(id(node))
            # Pushed in reverse so that problems are listed in the schema's order.
            self._stack.extend(reversed(list(self._visit(node, path))))

    def _visit(self, node: dict[str, Any], path: tuple[str, ...]):
        """Check one schema object; yield its subschemas as (node, path)."""
        for key, value in node.items():
            at = path + (key,)
            if key == "x-guidance":
                self._guidance(value, path)
            elif key.startswith("x-"):
                continue
            elif key in UNSUPPORTED:
                self.unsupported.append(_entry(key, path, UNSUPPORTED[key]))
            elif key in ANNOTATIONS:
                continue
            elif key not in ENFORCED:
                self.unknown.append(_entry(key, path, _suggest(key)))
            elif key in SCHEMA_VALUED:
                if key == "additionalItems" and not isinstance(node.get("items"), list):
                    self.unsupported.append(_entry(key, path, 'it applies only after a draft-07 "items" array; '
                                                              'after "prefixItems" write "items"'))
                else:
                    yield value, at
            elif key == "items":
                if isinstance(value, list):
                    yield from ((item, at + (str(i),)) for i, item in enumerate(value))
                else:
                    yield value, at
            elif key in SCHEMA_ARRAYS:
                if not isinstance(value, list):
                    raise InvalidRequestError(f'The JSON schema is invalid: "{key}" at {_where(path)} must be an array '
                                              f"of schemas, not {_kind(value)}.")
                yield from ((item, at + (str(i),)) for i, item in enumerate(value))
            elif key in SCHEMA_MAPS:
                if not isinstance(value, dict):
                    raise InvalidRequestError(f'The JSON schema is invalid: "{key}" at {_where(path)} must be an '
                                              f"object, not {_kind(value)}.")
                yield from ((sub, at + (name,)) for name, sub in value.items())
            elif key == "format":
                self._format(node, value, path)
            elif key in NUMERIC:
                if isinstance(value, float) and not math.isfinite(value):
                    raise InvalidRequestError(f'The JSON schema is invalid: "{key}" at {_where(path)} must be a '
                                              f"finite number, not {value}.")
            elif key == "$ref" and isinstance(value, str):
                if (encoded := quote(value, safe=URI_CHARACTERS)) != value:
                    # llguidance: "Invalid URI reference '#/$defs/기기': unexpected character at index 8"
                    raise InvalidRequestError(f'The JSON schema is invalid: "$ref" at {_where(path)} must be a URI '
                                              f"reference, with characters outside ASCII and spaces percent-encoded: "
                                              f"write {_json(encoded)} for {_json(value)}.")
                target = self._resolve(value)
                if target is not None:
                    yield target

    def _format(self, node: dict[str, Any], value: Any, path: tuple[str, ...]) -> None:
        types = node.get("type")
        types = [types] if isinstance(types, str) else types if isinstance(types, list) else None
        if types is not None and "string" not in types:
            self.unsupported.append(_entry("format", path, f'{_json(value)} on {_json(node["type"])}: ondol '
                                                           "enforces formats on strings only; for numbers use "
                                                           "minimum and maximum"))
        elif value not in FORMATS:
            self.unsupported.append(_entry("format", path, f"{_json(value)} is not one ondol knows; it knows "
                                                           f"{', '.join(FORMATS)}"))

    def _guidance(self, value: Any, path: tuple[str, ...]) -> None:
        if path:
            self.unsupported.append(_entry("x-guidance", path, "llguidance reads it at the top level only"))
        elif isinstance(value, dict):
            for option in GUIDANCE_LOOSENING:
                if value.get(option):
                    self.unsupported.append(_entry(f"x-guidance.{option}", path, "it would let llguidance "
                                                   "ignore or approximate keywords instead of enforcing them"))
        else:
            raise InvalidRequestError(f'The JSON schema is invalid: "x-guidance" must be an object of llguidance '
                                      f"options, not {_kind(value)}.")

    def _resolve(self, ref: str) -> tuple[Any, tuple[str, ...]] | None:
        """The subschema a local JSON-pointer $ref names, so that schemas kept under keys this walk does
        not enter (an "x-" key) are checked too. Other references are llguidance's to resolve."""
        if not ref.startswith("#/"):
            return None
        node: Any = self.root
        path = tuple(unquote(part).replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/"))
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None  # llguidance says that the pointer does not exist
        return (node, path) if isinstance(node, dict | bool) else None


def _entry(key: str, path: tuple[str, ...], hint: str) -> str:
    return f'"{key}" at {_where(path)}' + (f" ({hint})" if hint else "")


def _listing(entries: list[str]) -> str:
    shown = ", ".join(entries[:MAX_LISTED])
    more = len(entries) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _where(path: tuple[str, ...]) -> str:
    """A JSON pointer (RFC 6901), or "the top level"."""
    if not path:
        return "the top level"
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def _suggest(key: str) -> str:
    if key in UNKNOWN_HINTS:
        return UNKNOWN_HINTS[key]
    close = difflib.get_close_matches(key, KNOWN, n=1, cutoff=0.7)
    return f'did you mean "{close[0]}"?' if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
