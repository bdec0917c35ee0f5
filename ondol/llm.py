"""The Python API every other layer of ondol uses.

    from ondol import LLM, SamplingParams
    llm = LLM("path/to/model")                     # HF folder or .gguf file
    llm.generate("서울의 날씨는", SamplingParams(max_tokens=32, temperature=0)).text
    llm.chat([{"role": "user", "content": "안녕!"}]).text
    for piece in llm.stream("Once upon a time"): print(piece, end="")

    # structure: a JSON schema, any JSON object, or tool calls (OpenAI's forms)
    llm.chat(messages, response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}})
    llm.chat(messages, tools=[{"type": "function", "function": {...}}], tool_choice="auto").tool_calls
    llm.generate(prompt, SamplingParams(grammar=Grammar.json_schema(schema)))

A prompt is a string or a list of token ids; ``generate`` on a list of prompts returns a list, and
runs them as one continuously batched workload on the same engine the server uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ondol.constrained.chat import ChatCompletion, chat_completion, chat_constraints, template_messages
from ondol.engine.engine import Engine, EngineConfig, Generation
from ondol.engine.kv_cache import PagedKVCache
from ondol.engine.output import Completion
from ondol.cpu import physical_cores
from ondol.engine.sampler import SamplingParams
from ondol.errors import InvalidRequestError
from ondol.loaders import load
from ondol.tokenizer.bounded import TemplateBudget
from ondol.tokenizer.chat import REASONING_FIELDS

Prompt = str | Sequence[int]
Message = dict[str, Any]


class LLM:
    def __init__(self, model: str | Path, *, dtype: str | torch.dtype = "auto", quant: str | None = None,
                 kernels: str = "auto", max_model_len: int | None = None,
                 progress: bool | None = None, kv_cache_bytes: int = 1 << 30, max_num_seqs: int = 64,
                 max_num_batched_tokens: int = 512, block_size: int = 16, enable_prefix_caching: bool = True,
                 num_kv_blocks: int | None = None, threads: int | None = None,
                 template_timeout: float = 2.0) -> None:
        """Load a model. ``dtype`` "auto" keeps fp32/bf16 checkpoints as stored and runs fp16 and
        quantized ones in bf16. ``quant`` ("int8" or "int4") quantizes a full-precision model's
        weights as they load (quantized files run as stored; docs/quantization.md); ``kernels``
        "reference" runs quantized matmuls in plain PyTorch. ``max_model_len`` caps the context
        below the model's own; left unset, it is the model's context or what ``kv_cache_bytes``
        holds, whichever is less.
        ``progress`` shows a loading bar (default: when stderr is a terminal). The rest size the
        engine: KV-cache memory, requests and tokens per step, block size, prefix caching.
        ``threads`` sets PyTorch's (process-wide) thread count; default one per physical core.
        ``template_timeout`` is the seconds a chat template may run before it is stopped; what it
        may write is bounded by the context (docs/security.md)."""
        if threads is not None and threads < 1:
            raise InvalidRequestError("threads must be at least 1.")
        torch.set_num_threads(threads or physical_cores())
        loaded = load(model, dtype=dtype, progress=progress, quant=quant, kernels=kernels)
        self.checkpoint = loaded.checkpoint
        self.config = loaded.config
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        limit = self.config.max_position_embeddings
        if max_model_len is not None and not 1 < max_model_len <= limit:
            raise InvalidRequestError(f"max_model_len must be between 2 and the model's context of {limit}.")
        if max_model_len is None:
            # A 128k-context model on a device with little memory: fit the context to the KV cache
            # rather than fail, as a user who did not ask for a length expects.
            per_block = PagedKVCache.bytes_per_block(self.config, block_size, self.model.dtype)
            fits = EngineConfig(limit, block_size, kv_cache_bytes, num_kv_blocks).num_blocks(per_block) * block_size
            max_model_len = min(limit, fits)
        self.max_model_len = max_model_len
        # No token stands for more than max_token_chars characters, so a text longer than this
        # cannot fit the context whatever it says: it is refused before tokenizing (which would
        # cost seconds and gigabytes for a 30 MB prompt) and a template may write no more. A
        # tokenizer that can merge characters (NFC, stripping) gets 8x slack: the bound is then a
        # cap on work, not exact.
        self._chars_per_token = self.tokenizer.max_token_chars * (8 if self.tokenizer.merges_characters else 1)
        self.max_prompt_chars = max_model_len * self._chars_per_token
        self.tokenizer.template_budget = TemplateBudget(seconds=template_timeout, max_chars=self.max_prompt_chars)
        self.engine = Engine(self.model, self.tokenizer, EngineConfig(
            max_model_len, block_size, kv_cache_bytes, num_kv_blocks, max_num_seqs, max_num_batched_tokens,
            enable_prefix_caching))

    def default_sampling_params(self) -> SamplingParams:
        """The model's own defaults from generation_config.json (greedy when it says do_sample=false)."""
        gen = self.checkpoint.generation_config
        keys = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
        values = {k: gen[k] for k in keys if gen.get(k) is not None}
        if gen.get("do_sample") is False:
            values["temperature"] = 0.0
        return SamplingParams(**values)

    def encode(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            self._check_chars(len(prompt), "The prompt")
            return self.tokenizer.encode(prompt)
        return [int(t) for t in prompt]

    def _check_chars(self, chars: int, what: str) -> None:
        if chars > self.max_prompt_chars:
            raise InvalidRequestError(
                f"{what} has {chars} characters, more than the {self.max_prompt_chars} that can fit the "
                f"context of {self.max_model_len} tokens (at most {self._chars_per_token} characters a token "
                "for this model's tokenizer).")

    def chat_prompt(self, messages: list[Message], *, tools: list[dict] | None = None,
                    add_generation_prompt: bool = True, **template_kwargs: Any) -> list[int]:
        """Token ids of the conversation rendered with the model's chat template."""
        self._check_chars(_text_chars((messages, tools, template_kwargs)), "The conversation")
        text = self.tokenizer.apply_chat_template(template_messages(messages),
                                                  add_generation_prompt=add_generation_prompt, tools=tools,
                                                  **template_kwargs)
        # The template writes BOS itself when the model wants one, so no special tokens are added.
        return self.tokenizer.encode(text, add_special_tokens=False)

    def generate(self, prompts: Prompt | Sequence[Prompt], params: SamplingParams | None = None) -> Completion | list[Completion]:
        """One Completion for one prompt (a string or token ids); a list for a list of prompts."""
        params = params or self.default_sampling_params()
        if _is_batch(prompts):
            return self.engine.generate([self.encode(p) for p in prompts], params)
        return self.engine.generate([self.encode(prompts)], params)[0]

    def chat(self, messages: list[Message], params: SamplingParams | None = None, *,
             tools: list[dict] | None = None, tool_choice: str | dict | None = None,
             parallel_tool_calls: bool = True, response_format: dict | None = None,
             **template_kwargs: Any) -> ChatCompletion:
        """One assistant turn. ``messages``, ``tools``, ``tool_choice`` and ``response_format`` take
        OpenAI's forms; tool calls come back parsed in ``.tool_calls`` (never left in
        ``.content``), and structured output is valid by construction (docs/structured-output.md)."""
        constraints = chat_constraints(self.tokenizer, tools=tools, tool_choice=tool_choice,
                                       parallel_tool_calls=parallel_tool_calls, response_format=response_format)
        ids = self.chat_prompt(messages, tools=constraints.template_tools(), **template_kwargs)
        params = constraints.apply(params or self.default_sampling_params())
        return chat_completion(self.engine.generate([ids], params)[0], constraints)

    def stream(self, prompt: Prompt | list[Message], params: SamplingParams | None = None, *,
               tools: list[dict] | None = None, **template_kwargs: Any) -> Generation:
        """Iterate for text pieces as they are generated (``.completion`` holds the result once
        iteration ends); a list of message dicts is a chat. The pieces never split a UTF-8
        character and join to exactly the final text."""
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
            ids = self.chat_prompt(prompt, tools=tools, **template_kwargs)
        else:
            ids = self.encode(prompt)
        return self.engine.stream(ids, params or self.default_sampling_params())


def _text_chars(value: Any, depth: int = 0) -> int:
    """Characters of all the strings in a JSON-like value (what a template can copy into the prompt)."""
    if isinstance(value, str):
        return len(value)
    if depth > 64:  # request bodies are bounded in depth before they get here; this is a backstop
        raise InvalidRequestError("The conversation is nested too deeply.")
    if isinstance(value, dict):  # reasoning of past turns is dropped by many templates: not counted
        return sum(_text_chars(v, depth + 1) for k, v in value.items() if k not in REASONING_FIELDS)
    if isinstance(value, (list, tuple)):
        return sum(_text_chars(v, depth + 1) for v in value)
    return 0


def _is_batch(prompts: Any) -> bool:
    return not isinstance(prompts, str) and isinstance(prompts, Sequence) and bool(prompts) and \
        not isinstance(prompts[0], int)
