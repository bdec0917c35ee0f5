"""Schemas with no finite instance are refused before they reach llguidance (ondol/constrained/finite.py)."""

import pytest

from ondol.constrained.finite import check_finite
from ondol.constrained.schema import check_schema
from ondol.errors import InvalidRequestError

NO_INSTANCE = [
    {"$ref": "#"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]},
    {"type": "array", "items": {"$ref": "#"}, "minItems": 1},
    {"$defs": {"기기": {"type": "object", "properties": {"다음": {"$ref": "#/$defs/%EA%B8%B0%EA%B8%B0"}},
                      "required": ["다음"]}}, "$ref": "#/$defs/%EA%B8%B0%EA%B8%B0"},
    {"anyOf": [{"$ref": "#"}, {"$ref": "#"}]},
    {"type": "object", "properties": {"a": False}, "required": ["a"]},
    {"allOf": [{"type": "string"}, {"$ref": "#"}]},
]

HAS_INSTANCE = [
    {},
    {"type": "object", "properties": {"x": {"$ref": "#"}}},  # x may be left out
    {"type": "array", "items": {"$ref": "#"}},  # [] ends it
    {"anyOf": [{"$ref": "#"}, {"type": "string"}]},
    {"$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                                                          "name": {"type": "string"}},
                        "required": ["name", "children"]}}, "$ref": "#/$defs/node"},
    {"type": ["object", "null"], "properties": {"next": {"$ref": "#"}}, "required": ["next"]},  # null ends it
    {"type": "object", "properties": {"k": {"enum": [1, 2]}}, "required": ["k"]},
]


@pytest.mark.parametrize("schema", NO_INSTANCE)
def test_a_schema_with_no_finite_instance_is_refused(schema):
    with pytest.raises(InvalidRequestError, match="no finite instance"):
        check_schema(schema)


@pytest.mark.parametrize("schema", HAS_INSTANCE)
def test_recursive_schemas_that_can_end_are_accepted(schema):
    check_finite(schema)


def test_the_message_says_where_the_loop_is():
    with pytest.raises(InvalidRequestError, match=r'"\$ref" at /properties/x'):
        check_finite({"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]})
