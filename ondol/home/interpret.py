"""Models that turn an utterance into calls: ondol's embedded model, or any tool-calling Llama.

``EmbeddedInterpreter`` prompts with ``<|user|> utterance<|calls|>`` and decodes greedily under the
home's call grammar (ondol/home/intent.py), so every output parses and names only what the home
has. A grammar cannot say "this home has no such device", though: asked for the garage door in a
flat without one, a constrained model is forced onto some name it does have. So the decode keeps
the model's own (unconstrained) probabilities; when a token the grammar forced was one the model
itself found unlikely and the resulting target is not what the person said, the utterance is
decoded again without the grammar, and a target the person did say that names nothing in the home
is refused by name instead of guessed. Targets are then checked against the words said
(ondol/home/grounding.py).

``ToolInterpreter`` gives a chat model the home's tools (ondol/home/tools.py) through its own chat
template's tool-call format (docs/structured-output.md); the calls it makes are the same ``Call``s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ondol.constrained import Grammar
from ondol.engine.sampler import SamplingParams
from ondol.home.errors import HomeError, TargetError
from ondol.home.grounding import ground
from ondol.home.home import Home
from ondol.home.intent import PROMPT_END, PROMPT_START, Call, call_grammar, model_prompt, parse_calls
from ondol.home.names import normalize

# A forced token the model gave less than this probability means the grammar overruled it.
FORCED = math.log(0.02)
MAX_CALL_TOKENS = 128
# The KV cache an utterance needs: prompts and calls are tens of tokens.
SMALL_KV_BYTES = 16 << 20


@dataclass
class Interpreted:
    calls: list[Call]
    raw: str | None = None  # what the model wrote
    missing: str | None = None  # a target the home does not have, as the person said it
    chat_reply: str | None = None  # a chat model's own answer when it called nothing
    details: dict[str, Any] = field(default_factory=dict)


def is_embedded_format(llm: Any) -> bool:
    """Models trained on ondol's compact calls carry its prompt markers as special tokens."""
    backend = llm.tokenizer
    return all(backend.token_to_id(t) is not None for t in (PROMPT_START, PROMPT_END))


def interpreter_for(model: Any, home: Home) -> Any:
    from ondol.llm import LLM

    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise HomeError(f"No model at {path}." + (" The embedded model is built by `ondol train --recipe home-tiny`."
                                                      if path.name == "home-tiny" else ""))
        # float32: for a model this small, CPU bf16 matmuls cost more in conversion than they save
        # in memory traffic (measured: 12 decode steps 171 ms in bf16, 36 ms in float32).
        small = _is_small(path)
        llm = LLM(path, dtype="float32" if small else "auto", kv_cache_bytes=SMALL_KV_BYTES if small else 1 << 30,
                  max_num_seqs=4, progress=False)
    else:
        llm = model
    return EmbeddedInterpreter(llm, home) if is_embedded_format(llm) else ToolInterpreter(llm, home)


def _is_small(path: Path) -> bool:
    weights = list(path.glob("*.safetensors")) if path.is_dir() else []
    return bool(weights) and sum(w.stat().st_size for w in weights) < 200 << 20


def home_grammar(home: Home) -> str:
    """The call grammar over this home's names, lowercased as the embedded tokenizer sees text."""
    from ondol.home.devices import DEVICE_TYPES

    names = {n.lower() for d in home.spec.devices for n in d.names}
    areas = {n.lower() for a in home.spec.areas for n in a.names}
    kinds = set()
    for name, dtype in DEVICE_TYPES.items():
        kinds.update(w.lower() for w in (name.replace("_", " "), *dtype.kind_names))
        for words in dtype.class_names.values():
            kinds.update(w.lower() for w in words)
    return call_grammar(names, areas, kinds)


class EmbeddedInterpreter:
    def __init__(self, llm: Any, home: Home) -> None:
        self.llm, self.home = llm, home
        self.grammar = Grammar.lark(home_grammar(home))
        self.constrained = SamplingParams(temperature=0.0, max_tokens=MAX_CALL_TOKENS, grammar=self.grammar, logprobs=0,
                                          skip_special_tokens=True)
        self.free = SamplingParams(temperature=0.0, max_tokens=MAX_CALL_TOKENS, skip_special_tokens=True)

    def warm_up(self) -> None:
        """Compile the grammar and run the model once, so the first request is as fast as the rest."""
        self.interpret("불 켜줘")

    def interpret(self, text: str) -> Interpreted:
        prompt = model_prompt(text)
        out = self.llm.generate(prompt, self.constrained)
        try:
            calls = parse_calls(out.text)
        except HomeError as e:  # only when cut off by max_tokens: the grammar admits nothing else
            return Interpreted([], out.text, details={"error": str(e)})
        calls = ground(calls, text, self.home.spec)
        lowest = min((lp.logprob for lp in out.logprobs or ()), default=0.0)
        said = normalize(text)
        unsaid = [c for c in calls if isinstance(c.target, str) and normalize(c.target) not in said]
        if unsaid and lowest < FORCED:
            missing = self._missing_target(prompt, said)
            if missing is not None:
                return Interpreted([], out.text, missing=missing, details={"lowest_logprob": lowest})
        return Interpreted(calls, out.text, details={"lowest_logprob": lowest})

    def _missing_target(self, prompt: str, said: str) -> str | None:
        """A target the person said (it is in the utterance) that the model, free of the grammar,
        writes too, and that names nothing in this home."""
        free = self.llm.generate(prompt, self.free)
        try:
            calls = parse_calls(free.text)
        except HomeError:
            return None
        for call in calls:
            if not isinstance(call.target, str) or normalize(call.target) not in said:
                continue
            try:
                self.home.names.phrase(call.target, True)
            except TargetError as e:
                if not e.ambiguous:
                    return call.target
        return None


SYSTEM = {
    "ko": "당신은 집 안의 기기를 다루는 도우미입니다. 기기를 조작하거나 상태를 물으면 도구를 호출하고, "
          "그 밖의 질문에는 짧게 한국어로 답하세요.",
    "en": "You control the devices of this home. Call a tool to act on devices or to read their state; "
          "answer anything else briefly.",
}


class ToolInterpreter:
    def __init__(self, llm: Any, home: Home, tool_choice: str = "auto") -> None:
        self.llm, self.home, self.tool_choice = llm, home, tool_choice
        self.tools = home.tools()
        self.params = SamplingParams(temperature=0.0, max_tokens=512)

    def warm_up(self) -> None:
        pass

    def interpret(self, text: str) -> Interpreted:
        from ondol.home.korean import has_hangul

        messages = [{"role": "system", "content": SYSTEM["ko" if has_hangul(text) else "en"]},
                    {"role": "user", "content": text}]
        out = self.llm.chat(messages, self.params, tools=self.tools, tool_choice=self.tool_choice)
        calls = []
        for n, tc in enumerate(out.tool_calls):
            try:
                args = json.loads(tc.arguments)
                calls.append(Call(tc.name, dict(args["target"]), dict(args.get("params") or {})))
            except (ValueError, KeyError, TypeError) as e:
                if n == len(out.tool_calls) - 1 and out.finish_reason == "length":
                    break  # the last of several calls cut off by max_tokens: keep the finished ones
                return Interpreted([], out.text, details={"error": f"a malformed tool call: {e}"})
        return Interpreted(calls, out.text, chat_reply=None if calls else (out.content or None))


__all__ = ["EmbeddedInterpreter", "Interpreted", "ToolInterpreter", "home_grammar", "interpreter_for",
           "is_embedded_format", "model_prompt"]
