"""Tool calls: request validation, format detection from real chat templates, the output parser
(whole and streamed in random pieces), and grammars that accept exactly the calls the declared
tools allow, token by token on each family's tokenizer."""

from __future__ import annotations

import json
import random
import re

import pytest
from transformers import AutoTokenizer

from ondol.constrained.grammar import GrammarCompiler
from ondol.constrained.tool_calls import (
    HERMES,
    LLAMA3_JSON,
    MISTRAL,
    Tool,
    ToolCallDelta,
    ToolChoice,
    detect_tool_format,
    parse_tool_choice,
    parse_tools,
    plan_tools,
)
from ondol.demo import CHAT_TEMPLATE as DEMO_TEMPLATE
from ondol.errors import InvalidRequestError
from ondol.tokenizer import Tokenizer
from tests.tool_fixtures import FAMILIES, family_tokenizer

FORMAT_OF = {"llama3.1": "llama3_json", "llama3.2": "llama3_json", "hermes": "hermes", "qwen2.5": "hermes",
             "mistral_v0.3": "mistral"}
END_TEXT = {"llama3.1": "<|eot_id|>", "llama3.2": "<|eot_id|>", "hermes": "<|im_end|>\n", "qwen2.5": "<|im_end|>\n",
            "mistral_v0.3": "</s>"}

TOOLS_JSON = [
    {"type": "function", "function": {
        "name": "set_ac", "description": "에어컨 온도를 맞춘다",
        "parameters": {"type": "object", "properties": {
            "room": {"type": "string", "enum": ["거실 에어컨", "안방", "주방"], "description": "방"},
            "temp": {"type": "integer", "minimum": 16, "maximum": 30, "description": "섭씨"}},
            "required": ["room", "temp"]}}},
    {"type": "function", "function": {
        "name": "lights_off", "description": "turn off the lights",
        "parameters": {"type": "object", "properties": {"room": {"type": "string", "description": "room"}},
                       "required": ["room"]}}},
]
TOOLS = parse_tools(TOOLS_JSON)
AC_ARGS = {"room": "거실 에어컨", "temp": 24}
LIGHT_ARGS = {"room": "bedroom 안방"}


@pytest.fixture(scope="session")
def tokenizers(tool_models) -> dict[str, Tokenizer]:
    return {family: Tokenizer.from_folder(path) for family, path in tool_models.items()}


@pytest.fixture(scope="session")
def compilers(tokenizers) -> dict[str, GrammarCompiler]:
    return {family: GrammarCompiler(tok, tok.vocab_size) for family, tok in tokenizers.items()}


# -- request validation ----------------------------------------------------------------------------


def test_parse_tools_reads_openai_tools():
    tools = parse_tools(TOOLS_JSON + [{"type": "function", "function": {"name": "ping", "strict": True}}])
    assert [t.name for t in tools] == ["set_ac", "lights_off", "ping"]
    assert tools[0].description == "에어컨 온도를 맞춘다"
    assert tools[0].parameters == TOOLS_JSON[0]["function"]["parameters"]
    assert tools[2] == Tool("ping", None, {"type": "object", "properties": {}})


@pytest.mark.parametrize("tools, message", [
    ({"type": "function"}, "must be a list"),
    (["set_ac"], "tools[0] must be an object"),
    ([{"type": "code_interpreter"}], "tools[0].type must be \"function\""),
    ([{"type": "function"}], "tools[0].function must be an object"),
    ([{"type": "function", "function": {"description": "no name"}}], "name must be 1-64"),
    ([{"type": "function", "function": {"name": "set temperature"}}], "'set temperature'"),
    ([{"type": "function", "function": {"name": "x" * 65}}], "name must be 1-64"),
    ([{"type": "function", "function": {"name": "온도"}}], "name must be 1-64"),
    ([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}],
     "tools[1]: the tool name 'f' is declared twice"),
    ([{"type": "function", "function": {"name": "f", "description": 3}}], "description must be a string"),
    ([{"type": "function", "function": {"name": "f", "parameters": "{}"}}], "parameters must be a JSON schema"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}], "describe an object"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x-guidance": {}}}}],
     "x-guidance"),
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"rooms": {"type": "array", "uniqueItems": True}}}}}], "uniqueItems"),
])
def test_parse_tools_refuses_malformed_tools(tools, message):
    with pytest.raises(InvalidRequestError) as e:
        parse_tools(tools)
    assert message in str(e.value)


def test_parse_tool_choice():
    assert parse_tool_choice(None, TOOLS) == ToolChoice("auto")
    assert parse_tool_choice(None, []) == ToolChoice("none")
    for mode in ("auto", "none", "required"):
        assert parse_tool_choice(mode, TOOLS) == ToolChoice(mode)
    named = {"type": "function", "function": {"name": "lights_off"}}
    assert parse_tool_choice(named, TOOLS) == ToolChoice("function", "lights_off")
    with pytest.raises(InvalidRequestError, match="'open_door', which is not in tools .declared: 'set_ac', "):
        parse_tool_choice({"type": "function", "function": {"name": "open_door"}}, TOOLS)
    with pytest.raises(InvalidRequestError, match="not 'any'"):
        parse_tool_choice("any", TOOLS)
    with pytest.raises(InvalidRequestError, match="must be a string or"):
        parse_tool_choice({"type": "function", "name": "set_ac"}, TOOLS)
    with pytest.raises(InvalidRequestError, match="needs at least one tool"):
        parse_tool_choice("required", [])


# -- templates and format detection ----------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_detects_the_format_of_each_template(tokenizers, family):
    assert detect_tool_format(tokenizers[family]).name == FORMAT_OF[family]


def test_a_template_without_tools_has_no_format():
    backend = family_tokenizer("llama3.1")
    plain = Tokenizer(backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                      eos_token_ids=(backend.token_to_id("<|eot_id|>"),), chat_template=DEMO_TEMPLATE)
    assert detect_tool_format(plain) is None
    with pytest.raises(InvalidRequestError, match="does not support tools"):
        plan_tools(plain, TOOLS, ToolChoice("auto"))
    assert plan_tools(plain, TOOLS, ToolChoice("none")).grammar is None


def _assistant_turn(tok: Tokenizer, family: str, calls: list[tuple[str, dict]]) -> str:
    """What the template writes for an assistant turn of ``calls``: what the model was trained
    to generate (everything after the generation prompt, without the end token)."""
    user = {"role": "user", "content": "거실 에어컨 24도로 맞춰줘"}
    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call{i}ABCD", "type": "function", "function": {"name": name, "arguments": args}}
        for i, (name, args) in enumerate(calls)]}
    prompt = tok.apply_chat_template([user], tools=TOOLS_JSON)
    whole = tok.apply_chat_template([user, assistant], tools=TOOLS_JSON, add_generation_prompt=False)
    assert whole.startswith(prompt) and whole.endswith(END_TEXT[family])
    return whole[len(prompt):-len(END_TEXT[family])]


@pytest.mark.parametrize("family", FAMILIES)
def test_templates_render_tool_conversations_and_the_parser_reads_their_calls(tool_models, tokenizers, family):
    """ondol's sandbox renders each template as transformers does, and what a template writes for
    a call is what the parser reads."""
    tok = tokenizers[family]
    messages = [
        {"role": "system", "content": "너는 집안 기기를 제어하는 비서야."},
        {"role": "user", "content": "거실 에어컨 24도로 맞춰줘"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "abcDEF123", "type": "function", "function": {"name": "set_ac", "arguments": AC_ARGS}}]},
        {"role": "tool", "tool_call_id": "abcDEF123", "name": "set_ac", "content": '{"ok": true}'},
        {"role": "assistant", "content": "거실 에어컨을 24도로 맞췄어요."},
        {"role": "user", "content": "고마워"},
    ]
    text = tok.apply_chat_template(messages, tools=TOOLS_JSON)
    # (Llama writes a tool result string with tojson, so it comes out quoted.)
    assert "set_ac" in text and "거실 에어컨" in text and "ok" in text and "24도로 맞췄어요" in text
    reference = AutoTokenizer.from_pretrained(tool_models[family])
    assert text == reference.apply_chat_template(messages, tools=TOOLS_JSON, tokenize=False, add_generation_prompt=True)
    content, calls = detect_tool_format(tok).parse(_assistant_turn(tok, family, [("set_ac", AC_ARGS)]))
    assert content is None
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("set_ac", AC_ARGS)]


# -- parsing ---------------------------------------------------------------------------------------

AC = '{"name": "set_ac", "%s": {"room": "거실 에어컨", "temp": 24}}'
LIGHT = '{"name": "lights_off", "%s": {"room": "bedroom 안방"}}'

OUTPUTS = {
    HERMES: [
        f"<tool_call>\n{AC % 'arguments'}\n</tool_call>",
        f"거실 에어컨을 켤게요.\n<tool_call>\n{AC % 'arguments'}\n</tool_call>\n<tool_call>\n"
        f"{LIGHT % 'arguments'}\n</tool_call>",
        "안녕하세요! <tool 이라는 말은 태그가 아니에요.",
        "Sure, which room? <tool_call",
        "\n\n",
    ],
    MISTRAL: [
        f"[TOOL_CALLS] [{AC % 'arguments'}, {LIGHT % 'arguments'}]",
        f"[TOOL_CALLS] [{AC % 'arguments'}]",
        " 어느 방의 불을 끌까요? [TOOL_CALL 아님",
    ],
    LLAMA3_JSON: [
        AC % "parameters",
        f"{AC % 'parameters'}; {LIGHT % 'parameters'}",
        f"<|python_tag|>{LIGHT % 'parameters'}",
        "거실 에어컨을 24도로 맞출까요? {\"name\"}은 JSON이 아니에요.",
        "  turn off the lights?",
    ],
}


def test_parse_hermes():
    content, calls = HERMES.parse(OUTPUTS[HERMES][1])
    assert content == "거실 에어컨을 켤게요."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("set_ac", AC_ARGS), ("lights_off", LIGHT_ARGS)]
    assert calls[0].arguments == '{"room": "거실 에어컨", "temp": 24}'  # exactly as generated
    assert HERMES.parse(OUTPUTS[HERMES][2]) == (OUTPUTS[HERMES][2], [])
    assert HERMES.parse(OUTPUTS[HERMES][3]) == ("Sure, which room? <tool_call", [])
    assert HERMES.parse("\n\n") == (None, [])


def test_parse_mistral():
    content, calls = MISTRAL.parse(OUTPUTS[MISTRAL][0])
    assert content is None
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("set_ac", AC_ARGS), ("lights_off", LIGHT_ARGS)]
    assert all(re.fullmatch(r"[A-Za-z0-9]{9}", c.id) for c in calls)  # what its template requires
    assert MISTRAL.parse(OUTPUTS[MISTRAL][2]) == (OUTPUTS[MISTRAL][2], [])
    # The template writes the id back into the call; reading it must not disturb the arguments.
    _, calls = MISTRAL.parse('[TOOL_CALLS] [{"name": "set_ac", "arguments": {"temp": 20}, "id": "a1b2c3d4e"}]')
    assert [(c.name, c.arguments) for c in calls] == [("set_ac", '{"temp": 20}')]


def test_parse_llama3_json():
    content, calls = LLAMA3_JSON.parse(OUTPUTS[LLAMA3_JSON][1])
    assert content is None
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("set_ac", AC_ARGS), ("lights_off", LIGHT_ARGS)]
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", c.id) for c in calls) and calls[0].id != calls[1].id
    assert LLAMA3_JSON.parse(OUTPUTS[LLAMA3_JSON][2])[1][0].arguments == '{"room": "bedroom 안방"}'
    # A call only as the whole answer: JSON inside text stays text.
    assert LLAMA3_JSON.parse(OUTPUTS[LLAMA3_JSON][3]) == (OUTPUTS[LLAMA3_JSON][3], [])
    assert LLAMA3_JSON.parse('{"name": "set_ac", "arguments": {"temp": 18}}')[1][0].arguments == '{"temp": 18}'


def test_a_call_cut_short_keeps_what_it_got():
    content, calls = HERMES.parse('<tool_call>\n{"name": "set_ac", "arguments": {"room": "거실')
    assert content is None and [(c.name, c.arguments) for c in calls] == [("set_ac", '{"room": "거실')]
    assert HERMES.parse('<tool_call>\n{"name": "set_') == (None, [])  # never announced


def test_output_that_is_not_a_call_stays_content():
    assert LLAMA3_JSON.parse('{"room": "거실"} 이건 호출이 아니에요') == ('{"room": "거실"} 이건 호출이 아니에요', [])
    content, calls = HERMES.parse(f"<tool_call>\n{AC % 'arguments'}\n</tool_call>\n추가 설명")
    assert content == "추가 설명" and len(calls) == 1


def _random_pieces(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12)))) if len(text) > 1 else []
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


@pytest.mark.parametrize("fmt", [HERMES, MISTRAL, LLAMA3_JSON], ids=lambda f: f.name)
def test_streaming_matches_parse_whatever_the_pieces(fmt):
    rng = random.Random(4)
    for text in OUTPUTS[fmt]:
        expected_content, expected_calls = fmt.parse(text)
        for _ in range(300):
            parser, content, args, firsts = fmt.stream_parser(), [], {}, {}
            for piece in [*_random_pieces(text, rng), None]:
                new_content, deltas = parser.feed(piece) if piece is not None else parser.finish()
                content.append(new_content)
                for d in deltas:
                    if d.index not in firsts:
                        assert d.id is not None and d.name is not None
                        firsts[d.index] = d
                    else:
                        assert d.id is None and d.name is None
                    args[d.index] = args.get(d.index, "") + d.arguments
            assert "".join(content) == (expected_content or "")
            assert sorted(firsts) == list(range(len(expected_calls)))
            assert [firsts[i].name for i in sorted(firsts)] == [c.name for c in expected_calls]
            assert [args[i] for i in sorted(args)] == [c.arguments for c in expected_calls]
            assert [firsts[i].id for i in sorted(firsts)] == [c.id for c in parser.calls]


def test_streaming_holds_back_only_what_may_be_a_marker():
    parser = HERMES.stream_parser()
    assert parser.feed("거실 불을 <tool") == ("거실 불을", [])  # the space may precede a marker
    assert parser.feed("box> 켤게요") == (" <toolbox> 켤게요", [])
    parser = HERMES.stream_parser()
    assert parser.feed("네 <tool_") == ("네", [])
    assert parser.feed('call>\n{"name": "set_') == ("", [])  # no partial names
    _, deltas = parser.feed('ac", "arguments": {"room"')
    assert [(d.index, d.name, d.arguments) for d in deltas] == [(0, "set_ac", '{"room"')]
    assert deltas[0].id == parser.calls[0].id
    # Arguments go out as they come, before the call is complete.
    assert parser.feed(': "거실 에어컨", "temp": 2') == ("", [ToolCallDelta(0, arguments=': "거실 에어컨", "temp": 2')])
    assert parser.feed("4}}\n</tool") == ("", [ToolCallDelta(0, arguments="4}")])
    assert parser.feed("_call>") == ("", [])
    assert parser.finish() == ("", [])
    assert parser.calls[0].arguments == '{"room": "거실 에어컨", "temp": 24}'


# -- grammars --------------------------------------------------------------------------------------


def _ids(tok: Tokenizer, *pieces: str | int) -> list[int]:
    """Token ids of an output: text encoded without special tokens added (a marker written in it
    becomes its token, as the model emits it), ints as given."""
    out: list[int] = []
    for piece in pieces:
        out += [piece] if isinstance(piece, int) else tok.encode(piece, add_special_tokens=False)
    return out


def _spelled(tok: Tokenizer, text: str) -> list[int]:
    """``text`` one ASCII character per token (a marker spelled out, not its single token)."""
    ids = [tok.token_to_id(ch) if tok.token_to_id(ch) is not None else tok.token_to_id(f"<0x{ord(ch):02X}>")
           for ch in text]
    assert None not in ids and tok.decode(ids, skip_special_tokens=False).strip() == text
    return ids


def _run(compiler: GrammarCompiler, grammar, ids: list[int]):
    """(the matcher, the decoded text it accepted before refusing a token, or None if it took all)."""
    matcher = compiler.matcher(grammar)
    for i, token in enumerate(ids):
        if not matcher.accept(token):
            return matcher, compiler.tokenizer.decode(ids[:i], skip_special_tokens=False)
    return matcher, None


def _call_text(family: str, *calls: tuple[str, dict]) -> str:
    """A call output in the family's format, as its template writes it."""
    fmt = {"llama3_json": LLAMA3_JSON, "hermes": HERMES, "mistral": MISTRAL}[FORMAT_OF[family]]
    key = "parameters" if fmt is LLAMA3_JSON else "arguments"
    objects = [json.dumps({"name": name, key: args}, ensure_ascii=False) for name, args in calls]
    if fmt is HERMES:
        return "\n".join(f"<tool_call>\n{o}\n</tool_call>" for o in objects)
    if fmt is MISTRAL:
        return f"[TOOL_CALLS] [{', '.join(objects)}]"
    return "; ".join(objects)


BAD_CALLS = {  # (name, arguments) a grammar must refuse, and the text it must accept before refusing
    "unknown function": (("open_door", {"room": "거실"}), '"name": "'),
    "room out of enum": (("set_ac", {"room": "화장실", "temp": 24}), '"room": "'),
    "temp out of range": (("set_ac", {"room": "안방", "temp": 31}), '"temp": '),
    "missing required": (("set_ac", {"room": "안방"}), '"room": "안방'),
    "wrong type": (("lights_off", {"room": 3}), '"room": '),
    "undeclared argument": (("lights_off", {"room": "안방", "force": True}), '"room": "안방'),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["auto", "required", "function"])
def test_grammar_accepts_valid_calls_and_refuses_invalid_ones(tokenizers, compilers, family, mode):
    tok, compiler = tokenizers[family], compilers[family]
    plan = plan_tools(tok, TOOLS, ToolChoice(mode, "set_ac" if mode == "function" else None))
    assert plan.format.name == FORMAT_OF[family] and plan.banned_token_ids == ()
    assert plan.grammar.lazy == (mode == "auto")
    assert plan.skip_special_tokens == (FORMAT_OF[family] == "hermes")  # <tool_call> is not special
    compiler.compile(plan.grammar)

    # The call as the template writes it (and so as the model learnt it) is accepted and complete.
    matcher, refused = _run(compiler, plan.grammar, _ids(tok, _assistant_turn(tok, family, [("set_ac", AC_ARGS)])
                                                         .replace(', "id": "call0ABCD"', "")))
    assert refused is None and matcher.is_accepting
    # Terminated: the engine ends the request (llguidance then refuses even an end token). A single
    # call ends the output where no second may follow: a named function, Mistral's closed list, and
    # Llama, whose templates take one call per turn.
    assert matcher.is_terminated == (mode == "function" or FORMAT_OF[family] in ("mistral", "llama3_json"))
    assert matcher.is_terminated or all(matcher.allows(eos) for eos in tok.eos_token_ids)

    for what, ((name, args), accepted) in BAD_CALLS.items():
        if mode == "function" and name == "lights_off":
            continue
        _, refused = _run(compiler, plan.grammar, _ids(tok, _call_text(family, (name, args))))
        assert refused is not None and accepted in refused, (what, refused)
    if mode == "function":  # only the named tool
        _, refused = _run(compiler, plan.grammar, _ids(tok, _call_text(family, ("lights_off", LIGHT_ARGS))))
        assert refused is not None and refused.endswith('"name": "')


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("parallel", [True, False])
def test_parallel_calls_only_when_allowed(tokenizers, compilers, family, parallel):
    tok, compiler = tokenizers[family], compilers[family]
    two = _call_text(family, ("set_ac", AC_ARGS), ("lights_off", LIGHT_ARGS))
    for mode in ("auto", "required"):
        plan = plan_tools(tok, TOOLS, ToolChoice(mode), parallel_tool_calls=parallel)
        matcher, refused = _run(compiler, plan.grammar, _ids(tok, two))
        if parallel and FORMAT_OF[family] != "llama3_json":  # Llama: one call per turn, always
            assert refused is None and matcher.is_accepting
        else:  # refused once the first call is complete
            assert refused is not None and _call_text(family, ("set_ac", AC_ARGS))[:-1] in refused
    content, calls = detect_tool_format(tok).parse(two)
    assert content is None and [c.name for c in calls] == ["set_ac", "lights_off"]


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_accepts_plain_text(tokenizers, compilers, family):
    tok, compiler = tokenizers[family], compilers[family]
    plan = plan_tools(tok, TOOLS, ToolChoice("auto"))
    for text in ["거실 에어컨을 몇 도로 맞출까요?", "Which room should I turn the lights off in?\n\nThanks!", ""]:
        matcher, refused = _run(compiler, plan.grammar, _ids(tok, text))
        assert refused is None and matcher.is_accepting and not matcher.is_terminated
        assert detect_tool_format(tok).parse(text) == (text or None, [])
    required = plan_tools(tok, TOOLS, ToolChoice("required"))
    assert _run(compiler, required.grammar, _ids(tok, "거실 에어컨을 몇 도로 맞출까요?"))[1] == ""


@pytest.mark.parametrize("family", ["hermes", "qwen2.5", "mistral_v0.3"])
def test_auto_constrains_a_call_begun_after_text(tokenizers, compilers, family):
    tok, compiler = tokenizers[family], compilers[family]
    fmt = detect_tool_format(tok)
    plan = plan_tools(tok, TOOLS, ToolChoice("auto"))
    call = _call_text(family, ("set_ac", AC_ARGS))
    matcher, refused = _run(compiler, plan.grammar, _ids(tok, "알겠어요, 맞출게요.", call))
    assert refused is None and matcher.is_accepting
    assert fmt.parse("알겠어요, 맞출게요." + call)[0].strip() == "알겠어요, 맞출게요."
    if fmt is HERMES:  # a newline may end parallel calls, so it cannot force another call
        two = _call_text(family, ("set_ac", AC_ARGS), ("lights_off", LIGHT_ARGS))
        matcher, refused = _run(compiler, plan.grammar, _ids(tok, two, "\n"))
        assert refused is None and all(matcher.allows(eos) for eos in tok.eos_token_ids)
    bad = _call_text(family, ("set_ac", {"room": "거실 에어컨", "temp": 40}))
    assert _run(compiler, plan.grammar, _ids(tok, "알겠어요.", bad))[1] is not None
    # The marker spelled out in text, token by token, opens the call as well as its single token.
    marker, rest = bad[:len(fmt.open)], bad[len(fmt.open):]
    spelled = _spelled(tok, marker)
    _, refused = _run(compiler, plan.grammar, _ids(tok, "알겠어요. ", *spelled, rest))
    assert refused is not None and refused.endswith('"temp": ')


@pytest.mark.parametrize("family", ["llama3.1", "llama3.2"])
def test_llama_auto_is_text_or_calls_from_the_start(tokenizers, compilers, family):
    tok, compiler = tokenizers[family], compilers[family]
    plan = plan_tools(tok, TOOLS, ToolChoice("auto"))
    tag = tok.token_to_id("<|python_tag|>")
    matcher, refused = _run(compiler, plan.grammar, _ids(tok, tag, _call_text(family, ("lights_off", LIGHT_ARGS))))
    assert refused is None and matcher.is_accepting
    assert _run(compiler, plan.grammar, _ids(tok, " ", "{"))[1] == " "  # "{" after blanks would be a call
    assert _run(compiler, plan.grammar, _ids(tok, "네. ", tag))[1] == "네. "  # the tag only first
    assert _run(compiler, plan.grammar, _spelled(tok, "<|python_tag|>"))[1] == "<|python_tag|"


@pytest.mark.parametrize("family", FAMILIES)
def test_tool_choice_none_bans_the_call_marker(tokenizers, family):
    tok = tokenizers[family]
    plan = plan_tools(tok, TOOLS, ToolChoice("none"))
    marker = detect_tool_format(tok).open
    assert plan.grammar is None and plan.format is None and plan.skip_special_tokens
    assert plan.banned_token_ids == (tok.token_to_id(marker),)


def test_schemas_with_refs_are_enforced_inside_calls(tokenizers, compilers):
    tok, compiler = tokenizers["qwen2.5"], compilers["qwen2.5"]
    room = {"$defs": {"room": {"type": "string", "enum": ["거실", "안방"]}}, "type": "object",
            "properties": {"room": {"$ref": "#/$defs/room"}}, "required": ["room"]}
    for tools in (parse_tools([{"type": "function", "function": {"name": "f", "parameters": room}}]),
                  parse_tools([{"type": "function", "function": {"name": "f", "parameters": room}}, TOOLS_JSON[1]])):
        plan = plan_tools(tok, tools, ToolChoice("required"))
        good = _run(compiler, plan.grammar, _ids(tok, _call_text("qwen2.5", ("f", {"room": "안방"}))))
        assert good[1] is None and good[0].is_accepting
        _, refused = _run(compiler, plan.grammar, _ids(tok, _call_text("qwen2.5", ("f", {"room": "현관"}))))
        assert refused is not None and refused.endswith('"room": "')


def test_undeclared_arguments_only_when_the_schema_allows_them(tokenizers, compilers):
    tok, compiler = tokenizers["llama3.2"], compilers["llama3.2"]
    extra = _call_text("llama3.2", ("f", {"room": "안방", "force": True}))
    for additional, accepted in ((None, False), (True, True), ({"type": "boolean"}, True), ({"type": "string"}, False)):
        parameters = {"type": "object", "properties": {"room": {"type": "string"}}}
        if additional is not None:
            parameters["additionalProperties"] = additional
        tools = parse_tools([{"type": "function", "function": {"name": "f", "parameters": parameters}}])
        assert tools[0].parameters == parameters  # the template shows the tool as declared
        refused = _run(compiler, plan_tools(tok, tools, ToolChoice("required")).grammar, _ids(tok, extra))[1]
        assert (refused is None) == accepted, additional
    no_arguments = parse_tools([{"type": "function", "function": {"name": "f"}}])
    grammar = plan_tools(tok, no_arguments, ToolChoice("required")).grammar
    assert _run(compiler, grammar, _ids(tok, '{"name": "f", "parameters": {}}'))[1] is None
    assert _run(compiler, grammar, _ids(tok, '{"name": "f", "parameters": {"x": 1}}'))[1] is not None


def test_control_characters_count_as_content_both_ways():
    # str.strip() would call "\x1e" blank; the stream parser does not, and the two must agree.
    from ondol.constrained.tool_calls import HERMES

    text = '\x1e<tool_call>\n{"name": "set_ac", "arguments": {"room": "안방", "temp": 20}}\n</tool_call>'
    content, calls = HERMES.parse(text)
    parser = HERMES.stream_parser()
    streamed = "".join(parser.feed(ch)[0] for ch in text) + parser.finish()[0]
    assert content == streamed == "\x1e" and [c.name for c in calls] == ["set_ac"]
