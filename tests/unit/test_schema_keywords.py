"""JSON Schema keywords under ondol's grammar compiler (llguidance + ondol/constrained/schema.py).

For each keyword that is enforced: a valid document is accepted token by token, and a document
that breaks only that keyword has a token refused (and would be valid with the keyword removed,
which the test checks with jsonschema). For each keyword that is not: an InvalidRequestError that
names it and says where it is. Documents are written the way ondol's JSON options force:
``json.dumps(doc, ensure_ascii=False)``, properties in schema order.
"""

import copy
import json

import jsonschema
import pytest

from ondol.constrained.grammar import Grammar, GrammarCompiler
from ondol.constrained.schema import check_schema
from ondol.errors import InvalidRequestError
from ondol.tokenizer import Tokenizer

DRAFT7 = "http://json-schema.org/draft-07/schema#"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir) -> Tokenizer:
    return Tokenizer.from_folder(tiny_model_dir)  # Llama 3-style byte-level BPE


@pytest.fixture(scope="module")
def compiler(tokenizer) -> GrammarCompiler:
    return GrammarCompiler(tokenizer, tokenizer.vocab_size)


def feed(compiler: GrammarCompiler, tokenizer: Tokenizer, schema: dict, document) -> tuple[int | None, bool]:
    """Feed ``document`` token by token: (index of the first refused token or None, accepting at the end)."""
    matcher = compiler.matcher(Grammar.json_schema(schema))
    tokens = tokenizer.encode(json.dumps(document, ensure_ascii=False), add_special_tokens=False)
    for i, token in enumerate(tokens):
        if not matcher.accept(token):
            return i, False
    return None, matcher.is_accepting


def validator(schema: dict) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def without(schema, keyword: str):
    """``schema`` with ``keyword`` removed wherever it is a keyword (enum and const values kept)."""
    if isinstance(schema, list):
        return [without(s, keyword) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: v if k in ("enum", "const") else without(v, keyword) for k, v in schema.items() if k != keyword}


def prop(schema: dict, name: str = "값") -> dict:
    """``schema`` as the one required property of an object: after a scalar that could still
    grow ("2" → "25"), the closing brace is where the grammar has to refuse."""
    return {"type": "object", "properties": {name: schema}, "required": [name], "additionalProperties": False}


# (keyword, schema, valid document, document breaking only that keyword)
ENFORCED = [
    ("type", {"type": "string"}, "거실 조명", 3),
    ("type", {"type": "integer"}, 24, 24.5),
    ("type", {"type": "number"}, 22.5, "22.5"),
    ("type", {"type": "boolean"}, True, "참"),
    ("type", {"type": "null"}, None, 0),
    ("type", {"type": "object"}, {"방": "거실"}, ["거실"]),
    ("type", {"type": "array"}, ["거실", 24], {"방": "거실"}),
    ("type", {"type": ["string", "null"]}, None, 24),
    ("type", {"type": ["integer", "boolean"]}, False, "거짓"),
    ("enum", {"enum": ["거실", "안방", "주방"]}, "안방", "현관"),
    ("enum", {"enum": ["꺼짐", 0, None, True]}, None, "켜짐"),
    ("enum", {"enum": [{"방": "거실"}, ["안방"]]}, ["안방"], ["주방"]),
    ("const", {"const": "켜짐"}, "켜짐", "꺼짐"),
    ("const", {"const": {"방": "거실", "온도": 24}}, {"방": "거실", "온도": 24}, {"방": "거실", "온도": 25}),
    ("minimum", prop({"type": "integer", "minimum": 18}), {"값": 18}, {"값": 17}),
    ("maximum", prop({"type": "integer", "maximum": 30}), {"값": 30}, {"값": 31}),
    ("exclusiveMinimum", prop({"type": "integer", "exclusiveMinimum": 0}), {"값": 1}, {"값": 0}),
    ("exclusiveMaximum", prop({"type": "integer", "exclusiveMaximum": 100}), {"값": 99}, {"값": 100}),
    ("minimum", prop({"type": "number", "minimum": -10.5}), {"값": -10.5}, {"값": -10.75}),
    ("maximum", prop({"type": "number", "maximum": 40.5}), {"값": 36.5}, {"값": 40.75}),
    ("exclusiveMinimum", prop({"type": "number", "exclusiveMinimum": 0}), {"값": 0.5}, {"값": 0.0}),
    ("exclusiveMaximum", prop({"type": "number", "exclusiveMaximum": 1.5}), {"값": 1.25}, {"값": 1.5}),
    ("multipleOf", prop({"type": "integer", "multipleOf": 5}), {"값": 25}, {"값": 27}),
    ("multipleOf", prop({"type": "number", "multipleOf": 0.5}), {"값": 22.5}, {"값": 22.25}),
    ("minLength", {"type": "string", "minLength": 2}, "거실", "방"),
    ("maxLength", {"type": "string", "maxLength": 4}, "거실조명", "거실 조명등"),
    ("pattern", {"type": "string", "pattern": "^[가-힣]+$"}, "거실", "거실1"),
    ("pattern", {"type": "string", "pattern": "^[0-9]{3}-[0-9]{4}-[0-9]{4}$"}, "010-1234-5678", "010-12345678"),
    # JSON Schema's pattern is searched for, not anchored.
    ("pattern", {"type": "string", "pattern": "방"}, "안방 조명", "거실 조명"),
    ("format", {"type": "string", "format": "date-time"}, "2024-05-01T07:30:00+09:00", "2024-05-01 07:30"),
    ("format", {"type": "string", "format": "date"}, "2024-05-01", "2024-5-1"),
    ("format", {"type": "string", "format": "time"}, "07:30:00+09:00", "7시 30분"),
    ("format", {"type": "string", "format": "duration"}, "PT30M", "30분"),
    ("format", {"type": "string", "format": "email"}, "home@example.com", "home.example.com"),
    ("format", {"type": "string", "format": "uuid"}, "123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b"),
    ("format", {"type": "string", "format": "ipv4"}, "192.168.0.10", "192.168.0"),
    ("format", {"type": "string", "format": "ipv6"}, "fe80::1", "192.168.0.10"),
    ("format", {"type": "string", "format": "hostname"}, "hub.local", "hub..local"),
    ("format", {"type": "string", "format": "uri"}, "https://example.com/rooms?name=%EA%B1%B0%EC%8B%A4", "거실 조명"),
    ("items", {"type": "array", "items": {"type": "string"}}, ["거실", "안방"], ["거실", 1]),
    ("items", {"type": "array", "prefixItems": [{"type": "string"}], "items": False}, ["거실"], ["거실", "안방"]),
    ("prefixItems", {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}, ["거실", 24], [24, "거실"]),
    ("items", {"$schema": DRAFT7, "type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
     ["거실", 24], [24, "거실"]),
    ("additionalItems", {"$schema": DRAFT7, "type": "array", "items": [{"type": "string"}], "additionalItems": False},
     ["거실"], ["거실", "안방"]),
    ("minItems", {"type": "array", "items": {"type": "string"}, "minItems": 1}, ["거실"], []),
    ("maxItems", {"type": "array", "items": {"type": "string"}, "maxItems": 2}, ["거실", "안방"], ["거실", "안방", "주방"]),
    ("properties", {"type": "object", "properties": {"방": {"type": "string"}}}, {"방": "거실"}, {"방": 1}),
    ("required", {"type": "object", "properties": {"방": {"type": "string"}, "층": {"type": "integer"}},
                  "required": ["층"]}, {"층": 2}, {"방": "거실"}),
    ("additionalProperties", {"type": "object", "properties": {"방": {"type": "string"}}, "additionalProperties": False},
     {"방": "거실"}, {"방": "거실", "층": 2}),
    ("additionalProperties", {"type": "object", "additionalProperties": {"type": "integer"}}, {"거실": 24}, {"거실": "24도"}),
    ("patternProperties", {"type": "object", "patternProperties": {"^온도_": {"type": "integer"}}},
     {"온도_거실": 24}, {"온도_거실": "24도"}),
    # llguidance enforces min/maxProperties after additionalProperties false, or when every listed
    # property is required; otherwise it refuses the schema (see test_what_llguidance_refuses...).
    ("minProperties", {"type": "object", "properties": {"방": {"type": "string"}, "층": {"type": "integer"}},
                       "additionalProperties": False, "minProperties": 1}, {"층": 2}, {}),
    ("maxProperties", {"type": "object", "properties": {"방": {"type": "string"}, "층": {"type": "integer"}},
                       "additionalProperties": False, "maxProperties": 1}, {"방": "거실"}, {"방": "거실", "층": 2}),
    ("maxProperties", {"type": "object", "additionalProperties": {"type": "integer"}, "maxProperties": 1},
     {"거실": 24}, {"거실": 24, "안방": 22}),
    ("properties", {"type": "object", "properties": {"기기": {"type": "object", "properties": {"방": {"type": "object", "properties": {
        "이름": {"enum": ["거실", "안방"]}}, "required": ["이름"]}}, "required": ["방"]}}, "required": ["기기"]},
     {"기기": {"방": {"이름": "거실"}}}, {"기기": {"방": {"이름": "현관"}}}),
    ("anyOf", {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]}, "거실", "거실조명"),
    ("anyOf", {"anyOf": [{"type": "object", "properties": {"켜기": {"type": "boolean"}}, "required": ["켜기"],
                          "additionalProperties": False},
                         {"type": "object", "properties": {"온도": {"type": "integer"}}, "required": ["온도"],
                          "additionalProperties": False}]},
     {"온도": 24}, {"밝기": 50}),
    ("oneOf", {"oneOf": [{"type": "object", "properties": {"기기": {"const": "에어컨"}, "온도": {"type": "integer"}},
                          "required": ["기기", "온도"], "additionalProperties": False},
                         {"type": "object", "properties": {"기기": {"const": "조명"}, "밝기": {"type": "integer"}},
                          "required": ["기기", "밝기"], "additionalProperties": False}]},
     {"기기": "조명", "밝기": 50}, {"기기": "조명", "온도": 24}),
    ("allOf", prop({"allOf": [{"type": "integer"}, {"minimum": 18}]}), {"값": 18}, {"값": 17}),
    ("$ref", {"$defs": {"room": {"enum": ["거실", "안방"]}}, "type": "object",
              "properties": {"방": {"$ref": "#/$defs/room"}}, "required": ["방"]}, {"방": "거실"}, {"방": "주방"}),
    ("$ref", {"$schema": DRAFT7, "definitions": {"room": {"enum": ["거실", "안방"]}}, "$ref": "#/definitions/room"},
     "안방", "주방"),
    ("$ref", {"$defs": {"방": {"enum": ["거실", "안방"]}}, "$ref": "#/$defs/%EB%B0%A9"}, "안방", "주방"),
    ("$ref", {"$defs": {"room": {"$anchor": "room", "enum": ["거실", "안방"]}}, "$ref": "#room"}, "거실", "주방"),
    # keywords beside a $ref apply too (2020-12)
    ("maximum", {"$defs": {"temp": {"type": "integer"}}, "$ref": "#/$defs/temp", "maximum": 30}, 30, 31),
    # recursive: a room tree
    ("$ref", {"$defs": {"room": {"type": "object", "properties": {"이름": {"type": "string"}, "하위": {
        "type": "array", "items": {"$ref": "#/$defs/room"}}}, "required": ["이름", "하위"], "additionalProperties": False}},
              "$ref": "#/$defs/room"},
     {"이름": "집", "하위": [{"이름": "거실", "하위": []}, {"이름": "안방", "하위": [{"이름": "옷방", "하위": []}]}]},
     {"이름": "집", "하위": [{"이름": "거실", "하위": [{"이름": "베란다"}]}]}),
    ("$ref", {"type": "object", "properties": {"이름": {"type": "string"}, "다음": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
              "required": ["이름", "다음"], "additionalProperties": False},
     {"이름": "거실", "다음": {"이름": "안방", "다음": None}}, {"이름": "거실", "다음": {"이름": "안방"}}),
    ("properties", {"type": "object", "properties": {"방": {"type": "string"}, "비밀": False}}, {"방": "거실"},
     {"방": "거실", "비밀": 1}),
]


@pytest.mark.parametrize(
    "keyword, schema, valid, invalid", ENFORCED,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(ENFORCED)],
)
def test_enforced_keyword(compiler, tokenizer, keyword, schema, valid, invalid):
    check = validator(schema)
    assert check.is_valid(valid)
    assert keyword in json.dumps(schema)
    # The invalid document breaks this keyword and nothing else.
    assert validator(without(schema, keyword)).is_valid(invalid)
    if not (keyword == "format" and schema["format"] not in check.FORMAT_CHECKER.checkers):
        assert not check.is_valid(invalid)

    refused_at, accepting = feed(compiler, tokenizer, schema, valid)
    assert refused_at is None and accepting, json.dumps(valid, ensure_ascii=False)
    refused_at, _ = feed(compiler, tokenizer, schema, invalid)
    assert refused_at is not None, f"{json.dumps(invalid, ensure_ascii=False)} was accepted"


def test_annotations_are_accepted(compiler, tokenizer):
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://example.com/thermostat",
        "$comment": "거실 온도 조절기", "title": "온도 설정", "description": "목표 온도", "type": "object",
        "properties": {"온도": {"type": "integer", "minimum": 16, "maximum": 30, "default": 24, "examples": [22],
                              "deprecated": False, "readOnly": False, "writeOnly": False, "x-unit": "섭씨"}},
        "required": ["온도"], "additionalProperties": False, "x-order": 1,
    }
    assert feed(compiler, tokenizer, schema, {"온도": 22}) == (None, True)
    assert feed(compiler, tokenizer, schema, {"온도": 31})[0] is not None


# (keyword named in the error, schema, where it is)
UNSUPPORTED = [
    ("uniqueItems", {"type": "array", "uniqueItems": True}, "the top level"),
    ("contains", {"type": "array", "contains": {"const": "거실"}}, "the top level"),
    ("minContains", {"type": "array", "contains": {"const": "거실"}, "minContains": 2}, "the top level"),
    ("maxContains", {"type": "array", "contains": {"const": "거실"}, "maxContains": 1}, "the top level"),
    ("propertyNames", {"type": "object", "propertyNames": {"maxLength": 4}}, "the top level"),
    ("dependentRequired", {"type": "object", "dependentRequired": {"온도": ["방"]}}, "the top level"),
    ("dependentSchemas", {"type": "object", "dependentSchemas": {"온도": {"required": ["방"]}}}, "the top level"),
    ("dependencies", {"$schema": DRAFT7, "type": "object", "dependencies": {"온도": ["방"]}}, "the top level"),
    ("not", {"not": {"const": "현관"}}, "the top level"),
    ("if", {"if": {"type": "integer"}, "then": {"minimum": 0}, "else": {"type": "string"}}, "the top level"),
    ("then", {"if": {"type": "integer"}, "then": {"minimum": 0}}, "the top level"),
    ("else", {"if": {"type": "integer"}, "else": {"type": "string"}}, "the top level"),
    ("unevaluatedItems", {"type": "array", "prefixItems": [{"type": "string"}], "unevaluatedItems": False},
     "the top level"),
    ("unevaluatedProperties", {"type": "object", "properties": {"방": {}}, "unevaluatedProperties": False},
     "the top level"),
    ("$dynamicRef", {"$dynamicAnchor": "node", "type": "object", "properties": {"c": {"$dynamicRef": "#node"}}},
     "/properties/c"),
    ("$dynamicAnchor", {"$dynamicAnchor": "node", "type": "object"}, "the top level"),
    ("$recursiveRef", {"$recursiveAnchor": True, "type": "object", "properties": {"c": {"$recursiveRef": "#"}}},
     "/properties/c"),
    ("contentEncoding", {"type": "string", "contentEncoding": "base64"}, "the top level"),
    ("contentMediaType", {"type": "string", "contentMediaType": "application/json"}, "the top level"),
    ("contentSchema", {"type": "string", "contentMediaType": "application/json", "contentSchema": {"type": "object"}},
     "the top level"),
    # format: names llguidance does not know, and formats on what is not a string
    ("format", {"type": "string", "format": "idn-email"}, "the top level"),
    ("format", {"type": "string", "format": "uri-reference"}, "the top level"),
    ("format", {"type": "string", "format": "binary"}, "the top level"),
    ("format", {"type": "integer", "format": "int64"}, "the top level"),
    ("format", {"type": ["number", "null"], "format": "double"}, "the top level"),
    # additionalItems only follows an "items" array; after prefixItems llguidance ignores it
    ("additionalItems", {"type": "array", "prefixItems": [{"type": "string"}], "additionalItems": False},
     "the top level"),
    ("additionalItems", {"type": "array", "items": {"type": "string"}, "additionalItems": False}, "the top level"),
    # llguidance options that loosen enforcement, and options where llguidance does not read them
    ("x-guidance.lenient", {"type": "array", "x-guidance": {"lenient": True}}, "the top level"),
    ("x-guidance.coerce_one_of", {"oneOf": [{"type": "integer"}, {"minimum": 3}], "x-guidance": {"coerce_one_of": True}},
     "the top level"),
    ("x-guidance", {"type": "object", "properties": {"방": {"type": "string", "x-guidance": {}}}}, "/properties/방"),
]


@pytest.mark.parametrize(
    "keyword, schema, where", UNSUPPORTED, ids=[f"{case[0]}-{i}" for i, case in enumerate(UNSUPPORTED)],
)
def test_unsupported_keyword_is_refused_by_name(compiler, keyword, schema, where):
    with pytest.raises(InvalidRequestError, match="cannot enforce") as err:
        compiler.compile(Grammar.json_schema(schema))
    assert f'"{keyword}" at {where}' in str(err.value)


def test_unsupported_keywords_are_found_in_every_subschema():
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "a/b": {"anyOf": [{"type": "string"}, {"type": "array", "contains": {"const": 1}}]},
            "nested": {"type": "object", "properties": {"x": {"allOf": [{"not": {"type": "null"}}]}}},
        },
        "$defs": {"unused": {"type": "string", "contentEncoding": "base64"}},
        "x-parts": {"room": {"type": "string", "contentMediaType": "text/plain"}},
        "items": [{"oneOf": [{"if": {}}]}],
        "additionalProperties": {"propertyNames": {"pattern": "^a"}},
        "patternProperties": {"^t": {"dependentRequired": {}}},
        "prefixItems": [{"unevaluatedItems": False}],
        "$ref": "#/x-parts/room",
    }
    with pytest.raises(InvalidRequestError) as err:
        check_schema(schema)
    message = str(err.value)
    for entry in ['"uniqueItems" at /properties/tags', '"contains" at /properties/a~1b/anyOf/1',
                  '"not" at /properties/nested/properties/x/allOf/0', '"contentEncoding" at /$defs/unused',
                  '"contentMediaType" at /x-parts/room', '"if" at /items/0/oneOf/0',
                  '"propertyNames" at /additionalProperties', '"dependentRequired" at /patternProperties/^t',
                  '"unevaluatedItems" at /prefixItems/0']:
        assert entry in message


def test_many_problems_are_listed_up_to_ten():
    schema = {"type": "object", "properties": {f"p{i}": {"type": "array", "uniqueItems": True} for i in range(14)}}
    with pytest.raises(InvalidRequestError) as err:
        check_schema(schema)
    assert '"uniqueItems" at /properties/p9' in str(err.value)
    assert "/properties/p10" not in str(err.value) and "and 4 more" in str(err.value)


@pytest.mark.parametrize("key, hint", [
    ("requird", 'did you mean "required"?'),
    ("maxLenght", 'did you mean "maxLength"?'),
    ("additionalproperties", 'did you mean "additionalProperties"?'),
    ("nullable", '"type": [..., "null"]'),
    ("id", '"$id"'),
    ("divisibleBy", '"multipleOf"'),
    ("component", ""),
])
def test_keys_that_are_not_keywords_are_refused(compiler, key, hint):
    schema = {"type": "object", "properties": {"방": {"type": "string", key: True}}}
    with pytest.raises(InvalidRequestError, match="not JSON Schema keywords") as err:
        compiler.compile(Grammar.json_schema(schema))
    assert f'"{key}" at /properties/방' in str(err.value)
    assert hint in str(err.value)


def test_extension_keys_and_openapi_annotations_are_accepted(compiler):
    schema = {"type": "object", "x-order": [1], "properties": {"방": {"type": "string", "x-필드": {"not": {}},
                                                                      "example": "거실"}},
              "discriminator": {"propertyName": "방"}}
    compiler.compile(Grammar.json_schema(schema))


def test_x_guidance_whitespace_options_are_allowed(compiler, tokenizer):
    schema = {"type": "object", "properties": {"방": {"type": "string"}}, "required": ["방"],
              "x-guidance": {"whitespace_flexible": True, "key_separator": ":", "item_separator": ","}}
    matcher = compiler.matcher(Grammar.json_schema(schema))
    # (with ondol's separators still set, whitespace could only go around ": ", not replace it)
    for token in tokenizer.encode('{ "방" :\n"거실" }', add_special_tokens=False):
        assert matcher.accept(token)
    assert matcher.is_accepting


@pytest.mark.parametrize("schema, message", [
    # cannot be enforced in this combination: llguidance says so itself
    ({"oneOf": [{"type": "integer"}, {"type": "integer", "minimum": 3}]}, "oneOf"),
    ({"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a"], "maxProperties": 1}, "maxProperties"),
    ({"type": "string", "pattern": "^(?=거)거실$"}, "look-around"),
    ({"type": "string", "pattern": "^(거)\\1$"}, "backreferences"),
    ({"$ref": "https://example.com/room.json"}, "example.com/room.json"),
    ({"$ref": "#/$defs/missing"}, "/$defs/missing"),
    ({"type": "string", "minLength": 3, "maxLength": 2}, "minLength"),
])
def test_what_llguidance_refuses_is_an_invalid_request(compiler, schema, message):
    with pytest.raises(InvalidRequestError, match="cannot be enforced") as err:
        compiler.compile(Grammar.json_schema(schema))
    assert message in str(err.value)


@pytest.mark.parametrize("schema, message", [
    ({"properties": []}, '"properties" at the top level must be an object, not an array'),
    ({"anyOf": {"type": "string"}}, '"anyOf" at the top level must be an array of schemas, not an object'),
    ({"items": {"anyOf": ["string"]}}, "the schema at /items/anyOf/0 is a string"),
    ({"$defs": 3}, '"$defs" at the top level must be an object, not a number'),
    ({"type": "number", "maximum": float("inf")}, '"maximum" at the top level must be a finite number'),
    ({"x-guidance": "lenient"}, '"x-guidance" must be an object'),
    ({"$defs": {"기기": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/기기"}}},
     '"$ref" at /properties/a must be a URI reference, with characters outside ASCII and spaces percent-encoded: '
     'write "#/$defs/%EA%B8%B0%EA%B8%B0" for "#/$defs/기기"'),
])
def test_malformed_schemas_say_where(schema, message):
    with pytest.raises(InvalidRequestError, match="The JSON schema is invalid") as err:
        check_schema(schema)
    assert message in str(err.value)


def test_deep_schemas_do_not_exhaust_the_stack():
    schema: dict = {"type": "string", "maxLenght": 3}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidRequestError, match='"maxLenght" at /items/items/'):
        check_schema(schema)


@pytest.mark.parametrize("source, message", [
    ("{", "not valid JSON"),
    ('{"type": "string"} x', "not valid JSON"),
    ("", "not valid JSON"),
    ("[1]", "must be a JSON object"),
    ("true", "must be a JSON object"),
    ('"string"', "must be a JSON object"),
])
def test_json_schema_text_errors(source, message):
    with pytest.raises(InvalidRequestError, match=message):
        Grammar.json_schema(source)


def test_check_schema_does_not_modify_the_schema():
    schema = {"type": "object", "properties": {"방": {"$ref": "#/$defs/room"}}, "$defs": {"room": {"enum": ["거실"]}}}
    before = copy.deepcopy(schema)
    check_schema(schema)
    assert schema == before
