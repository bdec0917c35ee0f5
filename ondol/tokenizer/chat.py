"""Rendering chat templates: the Jinja2 programs models ship to turn messages into a prompt.

The output must match transformers' ``apply_chat_template(..., tokenize=False)`` byte for byte,
so the environment is set up exactly like transformers': trim_blocks, lstrip_blocks, loop
controls, its ``tojson``, ``raise_exception`` and ``strftime_now``, and the same variables.

Templates are untrusted code: a GGUF file carries one, and a crafted template is a classic way to
reach Python internals (``''.__class__.__mro__[1].__subclasses__()``). They run in Jinja's
immutable sandbox, made stricter in one way: touching an unsafe attribute fails at once instead
of yielding a silent empty value.
"""

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ondol.errors import ChatTemplateError, InvalidRequestError

# Names a message's reasoning may come under; transformers copies it to all, as templates differ.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class _Sandbox(ImmutableSandboxedEnvironment):
    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # Jinja returns an Undefined that only fails when used further, so `{{ f.__globals__ }}`
        # would quietly print "". A template has no business asking, so refuse outright.
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} object is not allowed")


class _Namespace(jinja2.utils.Namespace):
    """``namespace()`` that refuses underscore names, as transformers' does (defence in depth)."""

    def __init__(*args: Any, **kwargs: Any):  # Jinja's signature trick, so namespace(self=...) works
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"namespace attribute {name!r} starts with an underscore")


class _Dict:
    """``dict`` for templates without the type itself (its class attributes invite type-hackery)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"The chat template rejected the conversation: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys=False) -> str:
    # Jinja's own tojson HTML-escapes and sorts keys; templates expect transformers' plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


_ENV = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
_ENV.filters["tojson"] = _tojson
_ENV.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_Dict(), namespace=_Namespace)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    try:
        return _ENV.from_string(template)
    except TemplateSyntaxError as err:
        raise ChatTemplateError(
            f"The chat template has a syntax error on line {err.lineno}: {(err.message or '').rstrip('.')}."
        ) from err


def _prepare(message: Any) -> dict:
    if not isinstance(message, Mapping):
        raise InvalidRequestError(
            f"Each chat message must be an object with a role and content, not a {type(message).__name__}."
        )
    # As transformers 5 does: a None value (OpenAI's "content": null) means the key is absent, and
    # reasoning is offered under every name a template may read it by.
    message = {key: value for key, value in message.items() if value is not None}
    reasoning = next((message[key] for key in REASONING_FIELDS if key in message), None)
    if reasoning is not None:
        message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
    return message


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    tools: Sequence[Mapping[str, Any]] | None = None,
    max_chars: int | None = None,
    **kwargs: Any,
) -> str:
    """Render ``messages`` (and ``tools``, and any extra template variables) with a chat template.

    Raises ChatTemplateError if the template is malformed, fails, rejects the conversation through
    ``raise_exception``, attempts something the sandbox forbids, or (with ``max_chars``) writes
    more than ``max_chars`` characters. This runs the template in the calling process with no time
    limit: ``ondol.tokenizer.bounded`` runs it under a budget, and model-loaded tokenizers use that.
    """
    compiled = _compile(template)
    messages = [_prepare(m) for m in messages]
    variables = {"documents": None, **kwargs}  # transformers always defines `documents`
    try:
        # generate() yields the output piece by piece, so a template that writes without end is
        # stopped once it is over the bound rather than after it has filled memory.
        pieces = compiled.generate(
            messages=messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **variables,
        )
        if max_chars is None:
            return "".join(pieces)
        out, written = [], 0
        for piece in pieces:
            written += len(piece)
            if written > max_chars:
                raise ChatTemplateError(
                    f"The chat template wrote more than {max_chars} characters, more than the context can hold.")
            out.append(piece)
        return "".join(out)
    except SecurityError as err:
        raise ChatTemplateError(f"The chat template tried an operation the sandbox forbids ({err}).") from err
    except TemplateError as err:
        raise ChatTemplateError(f"The chat template failed to render: {err}.") from err
    except (TypeError, ValueError, LookupError, ArithmeticError, RecursionError, RuntimeError, AssertionError) as err:
        # Template code is data, not ondol: its runtime errors (e.g. adding a list to a string
        # because the request's content was not what the template expects) are the user's.
        raise ChatTemplateError(f"The chat template failed to render: {type(err).__name__}: {err}.") from err
