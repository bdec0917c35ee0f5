"""Chat templates render exactly like transformers' apply_chat_template, and hostile ones are refused."""

import pytest
from transformers import AutoTokenizer

from ondol.errors import ChatTemplateError, InvalidRequestError
from ondol.tokenizer import Tokenizer, render_chat_template
from tests.tokenizer_fixtures import byte_level_bpe, save_hf_folder

# Meta's published Llama 3.1 Instruct template (tools in the first user message, <|eot_id|>).
LLAMA31_TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# ChatML with tools, as published for Qwen2.5 Instruct.
CHATML_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful home assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are a helpful home assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# Exercises the rest of the environment: namespace, dict(), loop controls, tojson's arguments,
# strftime_now, undefined variables, reasoning fields and None-valued keys.
FEATURES_TEMPLATE = r"""{% set ns = namespace(count=0, last='') %}
{% for m in messages %}
  {% if m.role == 'system' %}{% continue %}{% endif %}
  {% set ns.count = ns.count + 1 %}
  {% if ns.count > 3 %}{% break %}{% endif %}
  [{{ m.role }}] {{ m.content if m.content is defined else '(none)' }}
  {% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}
{% endfor %}
{{ dict(a=1, b='바') | tojson(sort_keys=True, separators=(',', ':')) }}
{{ tools | tojson(indent=2) }}|{{ undefined_thing }}|{{ strftime_now('%Y') }}
{% if add_generation_prompt %}<assistant>{% endif %}"""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_temperature",
            "description": "방의 온도를 설정합니다 (sets a room's temperature).",
            "parameters": {
                "type": "object",
                "properties": {
                    "room": {"type": "string", "enum": ["거실", "안방", "주방"]},
                    "celsius": {"type": "number", "description": "목표 온도 🌡️"},
                },
                "required": ["room", "celsius"],
            },
        },
    }
]

CONVERSATIONS = {
    "korean": [
        {"role": "system", "content": "너는 집안 기기를 제어하는 비서야. 🏠"},
        {"role": "user", "content": "거실 에어컨 24도로 맞춰줘"},
        {"role": "assistant", "content": "네, 거실 에어컨을 24도로 설정했어요. 🎉"},
        {"role": "user", "content": "  그리고 안방 불 꺼줘  "},
    ],
    "english_no_system": [{"role": "user", "content": "turn off all the bedroom lights"}],
    "tool_call": [
        {"role": "user", "content": "거실 온도 22도로 맞춰줘"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "set_temperature", "arguments": {"room": "거실", "celsius": 22}},
                }
            ],
        },
        {"role": "tool", "content": '{"ok": true, "온도": 22}'},
    ],
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One HF folder per template, saved with transformers and loaded back by both libraries."""
    result = {}
    for name, template in [("llama31", LLAMA31_TEMPLATE), ("chatml", CHATML_TEMPLATE), ("features", FEATURES_TEMPLATE)]:
        path = save_hf_folder(
            byte_level_bpe(), tmp_path_factory.mktemp(name), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
            chat_template=template,
        )
        result[name] = (Tokenizer.from_folder(path), AutoTokenizer.from_pretrained(path))
    return result


@pytest.mark.parametrize("template", ["llama31", "chatml"])
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("tools", [None, TOOLS], ids=["no_tools", "tools"])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_matches_transformers(folders, template, conversation, tools, add_generation_prompt):
    ours, reference = folders[template]
    messages = CONVERSATIONS[conversation]
    expected = reference.apply_chat_template(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    assert ours.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt) == expected


def test_template_variables_match_transformers(folders):
    ours, reference = folders["llama31"]
    messages = CONVERSATIONS["korean"]
    kwargs = {"date_string": "09 Oct 2025", "tools_in_user_message": False, "builtin_tools": ["brave_search"]}
    expected = reference.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True, **kwargs
    )
    assert ours.apply_chat_template(messages, tools=TOOLS, **kwargs) == expected


def test_environment_features_match_transformers(folders):
    ours, reference = folders["features"]
    messages = [
        {"role": "system", "content": "skipped by continue"},
        {"role": "user", "content": "안녕 👋"},
        {"role": "assistant", "content": "반가워요", "reasoning_content": "인사에 답하자"},
        {"role": "assistant", "content": None, "thinking": "older name for reasoning"},
        {"role": "user", "content": "cut off by break"},
    ]
    expected = reference.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    rendered = ours.apply_chat_template(messages, tools=TOOLS)
    assert rendered == expected
    assert '{"a":1,"b":"바"}' in rendered and "(none)" in rendered and "cut off" not in rendered


def test_raise_exception_gives_its_message():
    template = (
        "{% if messages[0].role != 'user' %}"
        "{{ raise_exception('Conversation must start with a user message') }}"
        "{% endif %}ok"
    )
    assert render_chat_template(template, [{"role": "user", "content": "hi"}]) == "ok"
    with pytest.raises(ChatTemplateError, match="Conversation must start with a user message"):
        render_chat_template(template, [{"role": "assistant", "content": "hi"}])
    # The published Llama 3.1 template refuses parallel tool calls this way.
    call = {"type": "function", "function": {"name": "f", "arguments": {}}}
    with pytest.raises(ChatTemplateError, match="single tool-calls"):
        render_chat_template(LLAMA31_TEMPLATE, [{"role": "assistant", "tool_calls": [call, call]}])


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ raise_exception.__globals__ }}",
        "{{ strftime_now.__globals__['datetime'] }}",
        "{{ messages.__class__ }}",
        "{{ joiner.__init__.__globals__.os.system('echo pwned') }}",
        "{{ '{0.__class__}'.format(messages) }}",
        "{{ messages.append(1) }}",
        "{% set ns = namespace() %}{% set ns.__dict__ = 1 %}",
        "{{ namespace(_hidden=1) }}",
        "{{ dict.__call__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
    ],
)
def test_hostile_templates_are_refused(template):
    with pytest.raises(ChatTemplateError):
        render_chat_template(template, [{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "template",
    ["{% for m in messages %}{{ m.content }}", "{{ messages[0].content + 1 }}", "{{ undefined_fn() }}"],
    ids=["syntax", "type_error", "undefined_call"],
)
def test_broken_templates_raise_chat_template_error(template):
    with pytest.raises(ChatTemplateError):
        render_chat_template(template, [{"role": "user", "content": "hi"}])


def test_messages_must_be_objects():
    with pytest.raises(InvalidRequestError):
        render_chat_template("{{ messages }}", ["just a string"])


def test_model_without_template(tmp_path):
    path = save_hf_folder(byte_level_bpe(), tmp_path, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    with pytest.raises(ChatTemplateError, match="no chat template"):
        Tokenizer.from_folder(path).apply_chat_template([{"role": "user", "content": "hi"}])


def test_tool_use_template_is_used_when_tools_are_passed(tmp_path):
    # Hermes 2 Pro ships {"default", "tool_use"} templates; transformers 5 writes the second to
    # additional_chat_templates/tool_use.jinja, older folders keep a list in tokenizer_config.json.
    from ondol.constrained.tool_calls import detect_tool_format

    templates = {"default": "{% for m in messages %}{{ m.content }}{% endfor %}",
                 "tool_use": "{% for t in tools %}<tool_call>{{ t.function.name }}</tool_call>{% endfor %}"
                             "{% for m in messages %}{{ m.content }}{% endfor %}"}
    save_hf_folder(byte_level_bpe(), tmp_path, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                   chat_template=templates)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    tok = Tokenizer.from_folder(tmp_path)
    tools = [{"type": "function", "function": {"name": "lights_off", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "불 꺼줘"}]
    assert tok.apply_chat_template(messages) == "불 꺼줘"
    assert tok.apply_chat_template(messages, tools=tools) == "<tool_call>lights_off</tool_call>불 꺼줘" == \
        hf.apply_chat_template(messages, tools=tools, tokenize=False)
    assert detect_tool_format(tok).name == "hermes"
