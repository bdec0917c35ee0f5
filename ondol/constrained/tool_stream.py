"""Reading tool calls out of a model's output text, incrementally.

One state machine serves every format (``tool_calls.ToolFormat`` says which markers and
punctuation it uses) and both uses: ``ToolFormat.parse`` is ``feed(text)`` then ``finish()``, so a
whole output and the same output streamed in any pieces give the same content and calls by
construction, not by keeping two parsers in step.

What it promises, whatever the pieces:

* Text that could still turn out to be a marker (``<tool`` of ``<tool_call>``) is held back until
  it is known not to be one, like a stop string; markers and call JSON never reach the content.
* Whitespace is held until text follows it. Whitespace before a call or at the very end after a
  call is dropped (templates write it back as a separator); so content is None or has text.
* A call's id and name go out together once the name is complete (OpenAI never sends a partial
  name); its arguments go out as they arrive, exactly as generated (the raw JSON text of the
  value), so the fragments of a call concatenate to its ``ToolCall.arguments``.
* Output the grammar would not have allowed (a model run without one, or a format bug) is never
  lost: anything unexpected outside a call's JSON becomes content. A call cut off by max_tokens
  keeps the arguments it got (OpenAI does the same with finish_reason "length"); one cut off
  before its name is complete is dropped, since it was never announced.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ondol.constrained.tool_calls import ToolFormat

_ALNUM = string.ascii_letters + string.digits
BLANK = " \t\r\n"  # whitespace as JSON and the templates mean it
# Inside a call object; and all the states whose text is kept to give back if it was no call.
_CALL_STATES = frozenset({"key", "key_text", "colon", "value_start", "value", "after_value"})
_TRACKED = _CALL_STATES | {"block", "object"}
# Llama 3 was trained on "parameters", later models and vLLM's parsers on "arguments": take either.
ARGUMENT_KEYS = ("arguments", "parameters")


def new_call_id(style: str) -> str:
    """OpenAI-style ``call_`` + 24 alphanumerics, or Mistral's 9 alphanumerics (its template
    refuses any other id when the conversation is sent back)."""
    if style == "mistral":
        return "".join(secrets.choice(_ALNUM) for _ in range(9))
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


@dataclass(frozen=True)
class ToolCall:
    """One call in a finished message (OpenAI's ``message.tool_calls[i]``)."""

    id: str
    name: str
    arguments: str  # the JSON text of the arguments object, exactly as generated


@dataclass(frozen=True)
class ToolCallDelta:
    """One streaming event (OpenAI's ``delta.tool_calls[i]``): the first for a call carries its
    id and name; the ``arguments`` fragments of a call concatenate to its ``ToolCall.arguments``."""

    index: int  # which call of the message
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class _Call:
    id: str
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    announced: bool = False  # the delta with id and name has gone out
    unsent: int = 0  # arguments pieces not yet in a delta


class _JsonValue:
    """Finds where one JSON value ends, a character at a time, without parsing it. ``step``
    returns False for the first character after a scalar (``24`` ends at ``}``), which the caller
    must then read itself."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = self.in_string = self.escape = self.scalar = self.done = False

    def step(self, ch: str) -> bool:
        if not self.started:
            self.started = True
            if ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth = 1
            else:
                self.scalar = True
            return True
        if self.in_string:
            if self.escape:
                self.escape = False
            elif ch == "\\":
                self.escape = True
            elif ch == '"':
                self.in_string = False
                self.done = self.depth == 0
            return True
        if self.scalar:
            if ch in BLANK or ch in ",}]":
                self.done = True
                return False
            return True
        if ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1
            self.done = self.depth == 0
        return True


class ToolStreamParser:
    """Splits one output, fed in pieces, into content text and tool-call deltas.

    States: "start" (Llama: text or calls, not yet known), "text" (a marker opens calls),
    "text_plain" (text to the end), "block" (after the marker), then the call object's JSON:
    "object", "key", "key_text", "colon", "value_start", "value", "after_value"; "after_call"
    (a separator, the end of the list, or Hermes' closing marker, read in "close")."""

    def __init__(self, fmt: ToolFormat) -> None:
        self.fmt = fmt
        self._calls: list[_Call] = []
        self._content: list[str] = []  # content produced by the current feed
        self._buf = ""  # text not yet given out: held whitespace, a possible marker prefix
        self._state = "start" if fmt.opens_at_start_only else "text"
        self._last: str | None = None  # "content" or "call": what went out last
        self._in_list = False  # inside Mistral's [...] of calls
        self._raw: list[str] = []  # the call object being read, as text (given back if it is not one)
        self._key: list[str] = []  # raw JSON text of the key being read
        self._current_key: object = None
        self._value = _JsonValue()
        self._name: list[str] = []
        self._saw_args = False

    @property
    def calls(self) -> list[ToolCall]:
        """The calls announced so far (with the arguments received so far)."""
        return [ToolCall(c.id, c.name or "", "".join(c.arguments)) for c in self._calls if c.announced]

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """New content text and new tool-call deltas after ``text`` (one piece of the output)."""
        i = 0
        while i < len(text):
            if self._state in ("text", "text_plain"):
                i = self._read_text(text, i)
            else:
                self._steps(text[i])
                i += 1
        if self._state in ("text", "text_plain"):
            self._flush_text(final=False)
        return self._drain()

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        """What is left at the end of the output: held text that was not a marker after all."""
        if self._state in ("text", "text_plain", "start"):
            self._flush_text(final=True)
        self._buf = ""
        return self._drain()

    # -- content ---------------------------------------------------------------------------------

    def _read_text(self, text: str, i: int) -> int:
        """Take text from ``text[i:]`` up to and including an opening marker (whole runs at a
        time: the per-character machine is for JSON). Returns where reading stopped."""
        held = len(self._buf)
        self._buf += text[i:]
        if self._state == "text_plain":
            return len(text)
        at = self._buf.find(self.fmt.open)
        if at < 0:
            return len(text)
        self._give_before_marker(self._buf[:at])
        stop = i + at + len(self.fmt.open) - held
        self._buf, self._raw, self._state = "", [], "block"
        return stop

    def _flush_text(self, final: bool) -> None:
        """Give out the held text that can no longer become a marker, keeping back trailing
        whitespace: it may precede a marker, or end the output after a call (both dropped)."""
        buf = self._buf
        if final:
            self._buf = ""
            if buf.strip(BLANK):
                self._give(buf.lstrip(BLANK) if self._last == "call" else buf)
            elif self._last == "content":
                self._give(buf)  # a text answer's own trailing whitespace
            return
        keep = _marker_prefix_len(buf, self.fmt.open) if self._state == "text" else 0
        end = len(buf[: len(buf) - keep].rstrip(BLANK))
        if end:
            self._give(buf[:end].lstrip(BLANK) if self._last == "call" else buf[:end])
            self._buf = buf[end:]

    def _give_before_marker(self, text: str) -> None:
        text = text.rstrip(BLANK)
        if text.strip(BLANK):
            self._give(text.lstrip(BLANK) if self._last == "call" else text)

    def _give(self, text: str) -> None:
        if text:
            self._content.append(text)
            self._last = "content"

    # -- the state machine -----------------------------------------------------------------------

    def _consume(self, ch: str) -> bool:
        """Read one character in the current state; False means "read it again" (the state
        changed and the character belongs to the new one)."""
        state, fmt = self._state, self.fmt
        if state == "start":  # Llama: calls only as the whole answer
            self._buf += ch
            head = self._buf.lstrip(BLANK)
            if head == fmt.open:
                self._buf, self._raw, self._state = "", [], "block"
            elif head == "{" and fmt.bare_json:
                self._buf, self._raw, self._state = "", [], "object"
                return False
            elif head and not fmt.open.startswith(head):
                self._state = "text_plain"  # a marker later in the text is not a call
            return True
        if state in ("text", "text_plain"):
            self._buf += ch
            if state == "text" and self._buf.endswith(fmt.open):
                self._give_before_marker(self._buf[: -len(fmt.open)])
                self._buf, self._raw, self._state = "", [], "block"
            return True
        if state == "block":  # after the opening marker
            if ch in BLANK:
                return True
            if ch == "[" and fmt.list_open and not self._in_list:
                self._in_list = True
                return True
            if ch == "{":
                self._state = "object"
                return False
            return self._junk()
        if state == "object":  # a call object begins
            if ch in BLANK:
                return True
            if ch != "{":
                return self._junk()
            self._calls.append(_Call(new_call_id(fmt.id_style)))
            self._saw_args, self._state = False, "key"
            return True
        if state == "key":
            if ch in BLANK:
                return True
            if ch == '"':
                self._key, self._state = [ch], "key_text"
                return True
            if ch == "}":
                return self._end_object()
            return self._junk()
        if state == "key_text":
            self._key.append(ch)
            if ch == '"' and not _escaped(self._key):
                self._current_key = _loads_str("".join(self._key))
                self._state = "colon"
            return True
        if state == "colon":
            if ch in BLANK:
                return True
            if ch != ":":
                return self._junk()
            self._state = "value_start"
            return True
        if state == "value_start":
            if ch in BLANK:
                return True
            self._value, self._name, self._state = _JsonValue(), [], "value"
            return False
        if state == "value":
            return self._read_value(ch)
        if state == "after_value":
            if ch in BLANK:
                return True
            if ch == ",":
                self._state = "key"
                return True
            if ch == "}":
                return self._end_object()
            return self._junk()
        if state == "after_call":
            return self._after_call(ch)
        if state == "close":  # Hermes' </tool_call>
            self._buf += ch
            if fmt.close.startswith(self._buf):
                if self._buf == fmt.close:
                    self._buf, self._state = "", "text"
                return True
            pending, self._buf, self._state = self._buf, "", "text"
            self._steps(pending)  # not the closing marker after all: text
            return True
        raise AssertionError(state)

    def _steps(self, text: str) -> None:
        for ch in text:
            while True:
                tracked = self._state in _TRACKED
                if self._consume(ch):
                    if tracked and self._state in _TRACKED:  # not the "}" that ended a call
                        self._raw.append(ch)
                    break

    def _read_value(self, ch: str) -> bool:
        value, call, key = self._value, self._calls[-1], self._current_key
        consumed = value.step(ch)
        if not consumed:
            pass  # the character after a scalar: the caller reads it in "after_value"
        elif key == "name" and call.name is None:
            self._name.append(ch)
        elif key in ARGUMENT_KEYS and not self._saw_args:
            call.arguments.append(ch)
            call.unsent += 1
        if value.done:
            if key == "name" and call.name is None:
                name = _loads_str("".join(self._name))
                call.name = name if isinstance(name, str) else "".join(self._name)
            elif key in ARGUMENT_KEYS:
                self._saw_args = True
            self._state = "after_value"
        return consumed

    def _end_object(self) -> bool:
        call = self._calls[-1]
        if call.name is None:
            return self._junk()  # an object, but not a call: text
        if not call.arguments:
            call.arguments.append("{}")  # no arguments at all: OpenAI sends {}
            call.unsent += 1
        self._raw, self._state, self._last = [], "after_call", "call"
        return True

    def _after_call(self, ch: str) -> bool:
        fmt = self.fmt
        if ch in BLANK:
            return True
        if fmt.separator and ch == fmt.separator and self._in_list == fmt.list_open:
            self._raw, self._state = [], "object"
            return True
        if self._in_list and ch == "]":
            self._in_list, self._state = False, "text"
            return True
        if fmt.close and ch == fmt.close[0]:
            self._buf, self._state = "", "close"
            return False
        return self._junk()

    def _junk(self) -> bool:
        """Something no call could hold. From here on it is text (in which, for formats whose
        marker may come anywhere, a marker opens calls again); what was read since the marker
        goes back to text as written unless it announced a call, so nothing is lost."""
        text = ""
        in_call = self._state in _CALL_STATES
        if not in_call or self._calls[-1].name is None:
            if in_call:
                self._calls.pop()
            text = "".join(self._raw)
        self._raw, self._in_list = [], False
        self._state = "text_plain" if self.fmt.opens_at_start_only else "text"
        self._steps(text)
        return False

    def _drain(self) -> tuple[str, list[ToolCallDelta]]:
        deltas = []
        for index, call in enumerate(self._calls):
            if call.name is None or (call.announced and not call.unsent):
                continue
            fresh = "".join(call.arguments[len(call.arguments) - call.unsent:]) if call.unsent else ""
            if call.announced:
                deltas.append(ToolCallDelta(index, arguments=fresh))
            else:
                deltas.append(ToolCallDelta(index, id=call.id, name=call.name, arguments=fresh))
                call.announced = True
            call.unsent = 0
        content, self._content = "".join(self._content), []
        return content, deltas


def _marker_prefix_len(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def _escaped(chars: list[str]) -> bool:
    """Whether the last character (a quote) is escaped by an odd run of backslashes before it."""
    n, i = 0, len(chars) - 2
    while i >= 0 and chars[i] == "\\":
        n, i = n + 1, i - 1
    return n % 2 == 1 or len(chars) == 1


def _loads_str(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip('"')
