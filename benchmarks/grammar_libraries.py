"""Grammar-constrained decoding libraries measured on this machine: llguidance, xgrammar, outlines-core.

    .venv/bin/python -m benchmarks.grammar_libraries              # every library importable here, 32k + 128k
    .venv/bin/python -m benchmarks.grammar_libraries --quick      # 32k vocabulary only
    .venv/bin/python -m benchmarks.grammar_libraries --python xgrammar=/tmp/gl/v-xgrammar/bin/python \\
        --python outlines_core=/tmp/gl/v-outlines-core/bin/python   # a library from another venv
    .venv/bin/python -m benchmarks.grammar_libraries --json out.json   # also keep the raw numbers

Nothing is downloaded. Two byte-level BPE tokenizers shaped like Llama 3's (its split regex, ByteLevel,
``ignore_merges``, 256 special tokens after the learned vocabulary) are trained in-process with the
``tokenizers`` library on a generated corpus of Korean, English, code and JSON, one with 32,000 tokens
and one with 128,256 (Llama 3's size), and saved as Hugging Face folders under ``--workdir`` (kept and
reused: the 128k one takes minutes to train).

Each library runs in a child process of its own (``--child``), which imports only the standard library,
torch and that library, so a library installed in a throwaway venv can be measured with ``--python``.
For each tokenizer it measures:

* tokenizer conversion: the library's view of the vocabulary (done once per model);
* compile: a JSON schema to the library's compiled form, cold (no cache), median of 5, for a simple
  schema and a smart-home tool-call schema (``$defs``/``$ref``, ``anyOf`` over 10 actions, a 30-name
  device enum with Korean names, integer ranges, patterns, ``additionalProperties: false``,
  ``minItems``/``maxItems``, ``maxLength``); plus a cache hit where the library has a cache;
* mask: per token, while walking valid documents token by token (fill the next-token bitmask into a
  torch int32 tensor, check the document's next token is allowed, accept it), median / p99 / max;
  the first mask after compiling is reported on its own (a lazy library pays there);
* a batch of 8 requests walked in lock step with the library's batch API;
* correctness: every next token allowed, EOS allowed at the end, and invalid documents (device not in
  the enum, temperature out of range, extra key, too many / no actions, reply too long, wrong const,
  pattern broken, missing required) rejected;
* keywords: what the library does with ``format``, ``uniqueItems``, ``not``, ``if``/``then``,
  ``multipleOf``, ``pattern``, recursive ``$ref`` and absent ``additionalProperties``;
* lazy trigger: free text, then ``<tool_call>`` + JSON + ``</tool_call>`` (a plain-text trigger);
* applying a bitmask to float32 logits on the CPU.

Times are wall-clock on a 2-core machine that may be shared; the report prints the load average.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIBRARIES = ("llguidance", "xgrammar", "outlines_core")
DIST_NAMES = {"llguidance": "llguidance", "xgrammar": "xgrammar", "outlines_core": "outlines-core"}
VOCABS = {"32k": 32_000, "128k": 128_256}
N_SPECIAL = 256  # Llama 3: ids 128000..128255
EOS_TOKENS = ("<|eot_id|>", "<|end_of_text|>")
CORPUS_BYTES = 24_000_000
TOKENIZER_VERSION = 1  # bump when the corpus or the tokenizer recipe changes

# --------------------------------------------------------------------------------------------------
# Schemas and documents

DEVICES = [
    "거실 에어컨", "안방 에어컨", "거실 조명", "안방 조명", "주방 조명", "욕실 조명", "현관 조명", "아이방 조명",
    "거실 TV", "안방 TV", "거실 스피커", "주방 스피커", "로봇청소기", "공기청정기", "가습기", "제습기",
    "보일러", "세탁기", "건조기", "식기세척기", "전기밥솥", "현관 도어락", "거실 커튼", "안방 블라인드",
    "living room fan", "bedroom heater", "kitchen hood", "garage door", "porch light", "desk lamp",
]  # fmt: skip
MODES = ["cool", "heat", "dry", "fan", "auto", "eco", "sleep", "제습", "송풍"]
FAN = ["auto", "low", "medium", "high"]
SOURCES = ["radio", "music", "youtube", "podcast"]


def _int(lo: int, hi: int) -> dict:
    return {"type": "integer", "minimum": lo, "maximum": hi}


# action -> (params properties, required params)
ACTIONS: dict[str, tuple[dict, list[str]]] = {
    "turn_on": ({"transition_s": _int(0, 10)}, []),
    "turn_off": ({"transition_s": _int(0, 10)}, []),
    "set_temperature": ({"celsius": _int(16, 30), "fan": {"enum": FAN}}, ["celsius"]),
    "set_brightness": ({"percent": _int(0, 100)}, ["percent"]),
    "set_mode": ({"mode": {"enum": MODES}}, ["mode"]),
    "set_volume": ({"level": _int(0, 50), "mute": {"type": "boolean"}}, ["level"]),
    "set_color": ({"hex": {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"}}, ["hex"]),
    "start_timer": ({"minutes": _int(1, 240), "then": {"enum": ["turn_on", "turn_off"]}}, ["minutes"]),
    "unlock": ({"code": {"type": "string", "pattern": "^[0-9]{4,6}$"}}, ["code"]),
    "play_media": (
        {"query": {"type": "string", "minLength": 1, "maxLength": 80}, "source": {"enum": SOURCES}},
        ["query"],
    ),
}


def device_schema() -> dict:
    """The smart-home tool call: 1-8 actions, each one of 10 action objects, and a short reply."""
    defs: dict = {"device": {"type": "string", "enum": DEVICES}}
    for name, (props, required) in ACTIONS.items():
        defs[name] = {
            "type": "object",
            "properties": {
                "device": {"$ref": "#/$defs/device"},
                "action": {"const": name},
                "params": {
                    "type": "object",
                    "properties": props,
                    "required": required,
                    "additionalProperties": False,
                },
            },
            "required": ["device", "action", "params"],
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "properties": {
            "actions": {
                "type": "array",
                "minItems": 1,
                "maxItems": 8,
                "items": {"anyOf": [{"$ref": f"#/$defs/{name}"} for name in ACTIONS]},
            },
            "reply": {"type": "string", "maxLength": 200},
        },
        "required": ["actions", "reply"],
        "additionalProperties": False,
        "$defs": defs,
    }


SIMPLE_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}

REPLIES = [
    "네, 거실 에어컨을 24도로 맞추고 조명을 50%로 낮췄어요.",
    "Done! The porch light is on and the garage door timer is set.",
    "알겠습니다. 안방 TV 볼륨을 12로 줄이고 제습 모드로 바꿨어요.",
    "현관 도어락을 열었어요. 들어오시면 다시 잠가 드릴까요?",
    "Okay — playing jazz on the kitchen speaker, volume 20.",
    "로봇청소기를 켰고 30분 뒤에 꺼지도록 타이머를 맞췄어요 🙂",
]
QUERIES = ["잔잔한 재즈", "morning news", "아이유 노래", "lofi beats to relax", "KBS 클래식 FM"]


def _params(rng: random.Random, action: str) -> dict:
    if action in ("turn_on", "turn_off"):
        return {"transition_s": rng.randint(0, 10)} if rng.random() < 0.5 else {}
    if action == "set_temperature":
        p = {"celsius": rng.randint(16, 30)}
        return p | ({"fan": rng.choice(FAN)} if rng.random() < 0.5 else {})
    if action == "set_brightness":
        return {"percent": rng.randint(0, 100)}
    if action == "set_mode":
        return {"mode": rng.choice(MODES)}
    if action == "set_volume":
        p = {"level": rng.randint(0, 50)}
        return p | ({"mute": rng.random() < 0.5} if rng.random() < 0.5 else {})
    if action == "set_color":
        return {"hex": f"#{rng.randrange(1 << 24):06X}"}
    if action == "start_timer":
        p = {"minutes": rng.randint(1, 240)}
        return p | ({"then": rng.choice(["turn_on", "turn_off"])} if rng.random() < 0.5 else {})
    if action == "unlock":
        return {"code": "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 6)))}
    if action == "play_media":
        p = {"query": rng.choice(QUERIES)}
        return p | ({"source": rng.choice(SOURCES)} if rng.random() < 0.5 else {})
    raise ValueError(action)


def device_document(seed: int, n_actions: int | None = None) -> dict:
    """A valid document for device_schema(), keys in schema order."""
    rng = random.Random(seed)
    n = n_actions if n_actions is not None else rng.randint(1, 8)
    actions = []
    for _ in range(n):
        action = rng.choice(list(ACTIONS))
        actions.append({"device": rng.choice(DEVICES), "action": action, "params": _params(rng, action)})
    return {"actions": actions, "reply": rng.choice(REPLIES)}


def dumps(doc) -> str:
    return json.dumps(doc, ensure_ascii=False)


def device_documents(n: int) -> list[str]:
    docs = [dumps(device_document(1000 + i)) for i in range(n - 2)]
    docs += [dumps(device_document(7, n_actions=1)), dumps(device_document(8, n_actions=8))]
    return docs


SIMPLE_DOCS = [
    dumps({"name": "김민수", "age": 34}),
    dumps({"name": "Ada Lovelace", "age": 36}),
    dumps({"name": "거실 에어컨 관리자 (home assistant bot)", "age": 0}),
]


def invalid_device_documents() -> dict[str, str]:
    """Documents that break device_schema() in one place each (the rest is valid)."""
    base = device_document(3, n_actions=2)
    base["actions"][0] = {"device": "거실 에어컨", "action": "set_temperature", "params": {"celsius": 24}}

    def with_first(action: dict) -> str:
        doc = json.loads(json.dumps(base))
        doc["actions"][0] = action
        return dumps(doc)

    too_many = device_document(4, n_actions=9)
    return {
        "device not in enum": with_first({"device": "부엌 에어컨", "action": "turn_on", "params": {}}),
        "temperature 35 > maximum 30": with_first(
            {"device": "거실 에어컨", "action": "set_temperature", "params": {"celsius": 35}}
        ),
        "extra key in params": with_first(
            {"device": "거실 에어컨", "action": "set_temperature", "params": {"celsius": 24, "swing": True}}
        ),
        "9 actions > maxItems 8": dumps(too_many),
        "0 actions < minItems 1": dumps({"actions": [], "reply": "ok"}),
        "reply 201 chars > maxLength 200": dumps({"actions": base["actions"], "reply": "가" * 201}),
        "action not one of the consts": with_first({"device": "거실 조명", "action": "explode", "params": {}}),
        "hex breaks pattern": with_first({"device": "거실 조명", "action": "set_color", "params": {"hex": "#GG0000"}}),
        "missing required param": with_first({"device": "거실 에어컨", "action": "set_temperature", "params": {}}),
    }


# name -> (schema, valid document, invalid document); "invalid" breaks only the keyword under test
KEYWORD_PROBES: dict[str, tuple[dict, str, str]] = {
    "format: email": (
        {"type": "object", "properties": {"e": {"type": "string", "format": "email"}}, "required": ["e"]},
        '{"e": "kim@example.com"}',
        '{"e": "not an email"}',
    ),
    "format: unknown name": ({"type": "string", "format": "made-up"}, '"x"', "1"),
    "pattern with look-ahead": ({"type": "string", "pattern": "^(?!admin)[a-z]+$"}, '"bob"', '"admin"'),
    "uniqueItems": (
        {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        "[1, 2, 3]",
        "[1, 1]",
    ),
    "not": (
        {"type": "object", "properties": {"x": {"not": {"type": "string"}}}, "required": ["x"]},
        '{"x": 1}',
        '{"x": "s"}',
    ),
    "if/then": (
        {
            "type": "object",
            "properties": {"kind": {"enum": ["a", "b"]}, "n": {"type": "integer"}},
            "required": ["kind", "n"],
            "if": {"properties": {"kind": {"const": "a"}}},
            "then": {"properties": {"n": {"minimum": 10}}},
        },
        '{"kind": "a", "n": 12}',
        '{"kind": "a", "n": 1}',
    ),
    "multipleOf": ({"type": "integer", "multipleOf": 5}, "15", "7"),
    "pattern": ({"type": "string", "pattern": "^[a-z]{3}-[0-9]{2}$"}, '"abc-12"', '"abc-123"'),
    "recursive $ref": (
        {
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "v": {"type": "integer"},
                        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    },
                    "required": ["v"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/node",
        },
        '{"v": 1, "kids": [{"v": 2, "kids": [{"v": 3, "kids": [{"v": 4}]}]}]}',
        '{"v": 1, "kids": [{"v": "x"}]}',
    ),
    "oneOf": (
        {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        "5",
        "true",
    ),
    "type list [integer, null]": ({"type": ["integer", "null"]}, "null", '"x"'),
    "no additionalProperties (extra key allowed by JSON Schema)": (
        SIMPLE_SCHEMA,
        '{"name": "a", "age": 1, "x": 2}',
        '{"name": "a"}',
    ),
}

TRIGGER, END_TAG = "<tool_call>", "</tool_call>"


def lazy_texts() -> dict[str, str]:
    call = dumps(device_document(11, n_actions=2))
    bad = dumps({"actions": [{"device": "부엌 에어컨", "action": "turn_on", "params": {}}], "reply": "ok"})
    return {
        "text, call, text": f"네, 바로 할게요. {TRIGGER}{call}{END_TAG} 다른 것도 필요하면 말씀해 주세요.",
        "text only": '오늘 서울은 맑고 최고 기온은 24도예요. Anything else? {"not": "a call"}',
        "bad call": f"알겠어요. {TRIGGER}{bad}{END_TAG}",
    }


# --------------------------------------------------------------------------------------------------
# Corpus and tokenizers (parent process only: needs ``tokenizers`` and, to save, ``transformers``)

EN_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who oil its now find long down day did "
    "get come made may part turn set light lights room living bedroom kitchen door lock unlock temperature "
    "please thanks okay sure degrees percent brightness volume music play stop start timer minutes hours "
    "morning night weather today tomorrow home device devices sensor status battery mode cool heat fan dry"
).split()
KO_WORDS = (
    "거실 안방 주방 욕실 현관 아이방 에어컨 조명 불 TV 스피커 로봇청소기 공기청정기 가습기 제습기 보일러 "
    "세탁기 건조기 식기세척기 전기밥솥 도어락 커튼 블라인드 켜줘 꺼줘 맞춰줘 낮춰줘 올려줘 줄여줘 바꿔줘 "
    "알려줘 확인해줘 시작해 네 알겠습니다 알겠어요 오늘 내일 아침 저녁 밤 날씨 온도 습도 밝기 음량 모드 "
    "자동 제습 송풍 냉방 난방 타이머 분 시간 도 퍼센트 지금 바로 다시 모두 전부 좀 그리고 또는 하지만"
).split()
KO_PARTICLES = ["", "", "", "은", "는", "이", "가", "을", "를", "에", "에서", "으로", "로", "도", "만", "요", "의"]
CONSONANTS = "b c d f g h j k l m n p r s t v w z ch sh th st tr pl gr br".split()
VOWELS = "a e i o u ai ea ou ie y".split()


def _zipf_cum(n: int, s: float = 1.05) -> list[float]:
    cum, total = [], 0.0
    for rank in range(1, n + 1):
        total += 1.0 / rank**s
        cum.append(total)
    return cum


def corpus_lines(n_bytes: int = CORPUS_BYTES, seed: int = 0) -> list[str]:
    """Mixed Korean / English / code / JSON text with a large Zipf-distributed lexicon.

    The lexicon (common words plus ~110k made-up English-like and Korean words) is what lets BPE find
    128k merges: a corpus drawn from a few hundred words runs out of pairs long before that.
    """
    rng = random.Random(seed)
    syllables = [chr(c) for c in range(0xAC00, 0xD7A4)]
    common_syll = list("가나다라마바사아자차카타파하거너더러머버서어저처고노도로모보소오조초구누두루무부수우주기니디리미비시이지치"
                       "한국어요는을를에서의고게해서하면지만데도록까지부터와과랑께한다있없되된할수것들이런그런저런")  # fmt: skip
    en = list(EN_WORDS)
    for _ in range(60_000):
        w = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(1, 4)))
        en.append(w + rng.choice(["", "", "", "s", "ed", "ing", "er", "ly", "tion"]))
    ko = list(KO_WORDS)
    for _ in range(50_000):
        n = rng.choice((1, 2, 2, 2, 3, 3, 4))
        ko.append("".join(rng.choice(common_syll) if rng.random() < 0.7 else rng.choice(syllables) for _ in range(n)))
    en = list(dict.fromkeys(en))
    ko = list(dict.fromkeys(ko))
    rng.shuffle(en[len(EN_WORDS) :])
    en_cum, ko_cum = _zipf_cum(len(en)), _zipf_cum(len(ko))

    def en_words(k: int) -> list[str]:
        return rng.choices(en, cum_weights=en_cum, k=k)

    def ko_words(k: int) -> list[str]:
        return [w + rng.choice(KO_PARTICLES) for w in rng.choices(ko, cum_weights=ko_cum, k=k)]

    def ident() -> str:
        return "_".join(en_words(rng.randint(1, 3)))

    def number() -> str:
        r = rng.random()
        if r < 0.5:
            return str(rng.randint(0, 100))
        if r < 0.8:
            return str(rng.randint(0, 10 ** rng.randint(2, 9)))
        return f"{rng.uniform(-1000, 1000):.{rng.randint(1, 4)}f}"

    def json_value(depth: int = 0):
        r = rng.random()
        if depth < 2 and r < 0.25:
            return {ident(): json_value(depth + 1) for _ in range(rng.randint(1, 4))}
        if depth < 2 and r < 0.35:
            return [json_value(depth + 1) for _ in range(rng.randint(0, 4))]
        if r < 0.55:
            return " ".join(ko_words(rng.randint(1, 4)))
        if r < 0.7:
            return " ".join(en_words(rng.randint(1, 4)))
        if r < 0.9:
            return int(number().split(".")[0])
        return rng.choice([True, False, None])

    code_templates = [
        "def {a}({b}, {c}):\n    return {b}.{d}({c}) + {n}",
        "for {a} in {b}:\n    if {a}.{c} > {n}:\n        {d}.append({a})",
        "const {a} = await {b}.{c}({{ {d}: {n} }});",
        '{a} = {{"{b}": {n}, "{c}": "{k}"}}  # {k}',
        'if ({a}.{b} == {n}) {{ {c}("{k}"); }}',
        "SELECT {a}, {b} FROM {c} WHERE {d} = '{k}';",
        "class {A}:\n    def __init__(self, {a}: int = {n}) -> None:\n        self.{a} = {a}",
    ]

    lines: list[str] = []
    size = 0
    while size < n_bytes:
        r = rng.random()
        if r < 0.3:
            line = " ".join(en_words(rng.randint(4, 20)))
            line = line[0].upper() + line[1:] + rng.choice([".", ".", "?", "!", ","])
        elif r < 0.6:
            line = " ".join(ko_words(rng.randint(3, 14))) + rng.choice([".", "?", "!", "", " 🙂", " 🏠"])
        elif r < 0.72:
            line = rng.choice(code_templates).format(
                a=ident(),
                b=ident(),
                c=ident(),
                d=ident(),
                A=ident().title().replace("_", ""),
                n=number(),
                k=" ".join(ko_words(2)),
            )
        elif r < 0.9:
            line = json.dumps(json_value(), ensure_ascii=False, indent=rng.choice([None, None, 2]))
        elif r < 0.96:
            line = dumps(device_document(rng.randrange(10**9)))
        else:
            line = " ".join(number() for _ in range(rng.randint(3, 12)))
        lines.append(line)
        size += len(line.encode()) + 1
    return lines


def special_tokens() -> list[str]:
    named = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
             "<|eot_id|>", "<|python_tag|>"]  # fmt: skip
    return named + [f"<|reserved_special_token_{i}|>" for i in range(N_SPECIAL - len(named))]


def build_tokenizer(lines: list[str], vocab_size: int):
    """Train a Llama-3-shaped byte-level BPE with ``vocab_size`` tokens in all (256 of them special)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    from ondol.tokenizer.gguf_vocab import LLAMA3_SPLIT

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    trainer = BpeTrainer(
        vocab_size=vocab_size - N_SPECIAL, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(lines, trainer)
    trained = json.loads(tok.to_str())["model"]
    tok.model = models.BPE(trained["vocab"], [tuple(m) for m in trained["merges"]], ignore_merges=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in special_tokens()])
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]),
        ]
    )
    return tok


def prepare(workdir: Path, names: list[str]) -> dict:
    """Build (or reuse) the tokenizer folders and tokenize every document; returns the cases."""
    from tokenizers import Tokenizer

    workdir.mkdir(parents=True, exist_ok=True)
    lines = None
    cases: dict = {"tokenizers": {}}
    for name in names:
        folder = workdir / f"tokenizer-{name}-v{TOKENIZER_VERSION}"
        if not (folder / "tokenizer.json").is_file():
            if lines is None:
                t0 = time.perf_counter()
                lines = corpus_lines()
                print(f"corpus: {sum(len(x.encode()) + 1 for x in lines) / 1e6:.1f} MB in "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
            t0 = time.perf_counter()
            backend = build_tokenizer(lines, VOCABS[name])
            train_s = time.perf_counter() - t0
            _save_folder(backend, folder)
            (folder / "train_seconds.txt").write_text(f"{train_s:.1f}\n")
            print(f"tokenizer {name}: {backend.get_vocab_size(with_added_tokens=True)} tokens, trained in "
                  f"{train_s:.0f} s -> {folder}", file=sys.stderr)  # fmt: skip
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        size = backend.get_vocab_size(with_added_tokens=True)
        if size != VOCABS[name]:
            raise SystemExit(f"{folder}: {size} tokens, expected {VOCABS[name]} (delete it to rebuild)")

        def enc(text: str, backend=backend) -> list[int]:
            return backend.encode(text, add_special_tokens=False).ids

        device_docs = device_documents(8)
        cases["tokenizers"][name] = {
            "folder": str(folder),
            "vocab_size": size,
            "eos": [backend.token_to_id(t) for t in EOS_TOKENS],
            "train_seconds": (folder / "train_seconds.txt").read_text().strip(),
            "docs": {
                "simple": [enc(d) for d in SIMPLE_DOCS],
                "device": [enc(d) for d in device_docs],
            },
            "invalid": {k: _case(backend, v) for k, v in invalid_device_documents().items()},
            "probes": {k: [_case(backend, v), _case(backend, i)] for k, (_, v, i) in KEYWORD_PROBES.items()},
            "lazy": {
                k: _case(backend, v) | {"trigger_at": _trigger_index(backend, v)} for k, v in lazy_texts().items()
            },
            "doc_chars": {"device": [len(d) for d in device_docs]},
        }
    return cases


def _save_folder(backend, folder: Path) -> None:
    """A Hugging Face tokenizer folder, written by transformers when it is installed."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        folder.mkdir(parents=True, exist_ok=True)
        backend.save(str(folder / "tokenizer.json"))
        config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                  "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072}  # fmt: skip
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        return
    hf = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", model_max_length=131072
    )
    hf.save_pretrained(folder)


def _case(backend, text: str) -> dict:
    """Token ids of ``text`` and where each token starts (to show where a library rejected it)."""
    enc = backend.encode(text, add_special_tokens=False)
    return {"text": text, "ids": enc.ids, "starts": [start for start, _ in enc.offsets]}


def _trigger_index(backend, text: str) -> int | None:
    """Index of the first token that ends past the trigger (None when the text has none)."""
    at = text.find(TRIGGER)
    if at < 0:
        return None
    end = at + len(TRIGGER)
    offsets = backend.encode(text, add_special_tokens=False).offsets
    return next(i for i, (_, stop) in enumerate(offsets) if stop >= end)


# --------------------------------------------------------------------------------------------------
# Child: one library (imports only the standard library, torch and that library)


class CompileError(Exception):
    pass


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, reversed: the characters of a byte-level token -> bytes.
    (ondol.tokenizer.gguf_vocab.byte_level_alphabet is the same table; the library children run in
    venvs without ondol's dependencies, so this file cannot import it.)"""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _vocab_from_tokenizer_json(folder: str) -> tuple[list[str], set[int], dict[int, str]]:
    """(token strings by id as tokenizer.json spells them, special ids, added tokens by id)."""
    data = json.loads(Path(folder, "tokenizer.json").read_text())
    vocab = dict(data["model"]["vocab"])
    added = {t["id"]: t["content"] for t in data.get("added_tokens", [])}
    special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
    size = max(max(vocab.values()), max(added, default=-1)) + 1
    tokens = [""] * size
    for text, i in vocab.items():
        tokens[i] = text
    for i, text in added.items():
        tokens[i] = text
    return tokens, special, added


class Adapter:
    """What ondol needs from a library: compile, per-request matcher, fill a mask row, accept, rollback."""

    name = ""
    has_cache = False
    has_lazy = False
    has_batch = False

    def version(self) -> str:
        return importlib.metadata.version(DIST_NAMES[self.name])


class LLGuidanceAdapter(Adapter):
    name = "llguidance"
    has_lazy = True
    has_batch = True

    def __init__(self):
        import llguidance
        import llguidance.torch

        self.L, self.LT = llguidance, llguidance.torch

    def load_tokenizer(self, folder: str, vocab_size: int, eos: list[int]):
        # What llguidance.hf.from_tokenizer does, minus transformers: the tokenizers JSON itself.
        return self.L.LLTokenizer(Path(folder, "tokenizer.json").read_text(), n_vocab=vocab_size, eos_token=eos)

    def compile(self, tok, schema: dict):
        grammar = self.L.LLMatcher.grammar_from_json_schema(schema)
        matcher = self.L.LLMatcher(tok, grammar, log_level=0)
        if matcher.is_error():
            raise CompileError(matcher.get_error())
        return matcher  # a pristine matcher is the compiled form; requests take deep copies

    def warnings(self, compiled) -> list[str]:
        return compiled.get_grammar_warnings()

    def matcher(self, compiled):
        return compiled.deep_copy()

    def fill(self, m, bitmask, row: int) -> None:
        self.LT.fill_next_token_bitmask(m, bitmask, row)

    def accept(self, m, token: int) -> bool:
        return m.consume_token(token)

    def rollback(self, m, n: int) -> None:
        m.rollback(n)

    def accepting(self, m) -> bool:
        return m.is_accepting()

    def terminated(self, m) -> bool:
        return m.is_stopped()

    def batch(self):
        return self.L.LLExecutor()

    def batch_fill(self, executor, matchers: list, rows: list[int], bitmask) -> None:
        self.LT.fill_next_token_bitmask_par(executor, list(zip(matchers, rows)), bitmask)

    def compile_lazy(self, tok, schema: dict):
        tag = self.L.StructTag(trigger=TRIGGER, begin=TRIGGER, grammar=schema, end=END_TAG)
        # assume_special=False: "<tool_call>" is plain text here (a lazy lexeme), not a special token
        lark = self.L.StructTag.to_grammar([tag], assume_special=False)
        matcher = self.L.LLMatcher(tok, self.L.LLMatcher.grammar_from_lark(lark), log_level=0)
        if matcher.is_error():
            raise CompileError(matcher.get_error())
        return matcher

    def apply(self):
        import llguidance.numpy as LN

        return lambda logits, bitmask: LN.apply_token_bitmask_inplace(logits.numpy(), bitmask.numpy())

    def apply_compiled(self):
        return self.LT.apply_token_bitmask_inplace


class XGrammarAdapter(Adapter):
    name = "xgrammar"
    has_cache = True
    has_lazy = True
    has_batch = True

    def __init__(self):
        import xgrammar

        self.X = xgrammar

    def load_tokenizer(self, folder: str, vocab_size: int, eos: list[int]):
        # What TokenizerInfo.from_huggingface does for a byte-level fast tokenizer, from tokenizer.json,
        # except that special tokens are blanked: xgrammar takes a token that decodes to "" for a
        # special one; given their text ("<|start_header_id|>") it allows them inside strings and
        # free text, and from_huggingface does give their text.
        tokens, special, _ = _vocab_from_tokenizer_json(folder)
        tokens = ["" if i in special else t for i, t in enumerate(tokens)]
        info = self.X.TokenizerInfo(tokens, self.X.VocabType.BYTE_LEVEL, vocab_size=vocab_size, stop_token_ids=eos)
        self.cold = self.X.GrammarCompiler(info, cache_enabled=False)
        self.cached = self.X.GrammarCompiler(info)
        return info

    def compile(self, tok, schema: dict, cached: bool = False):
        compiler = self.cached if cached else self.cold
        try:
            return compiler.compile_json_schema(json.dumps(schema))
        except Exception as err:  # noqa: BLE001 - report whatever the library raises
            raise CompileError(f"{type(err).__name__}: {err}") from err

    def warnings(self, compiled) -> list[str]:
        return []

    def memory(self, compiled) -> int:
        return compiled.memory_size_bytes

    def matcher(self, compiled):
        return self.X.GrammarMatcher(compiled)

    def fill(self, m, bitmask, row: int) -> None:
        m.fill_next_token_bitmask(bitmask, row)

    def accept(self, m, token: int) -> bool:
        return m.accept_token(token)

    def rollback(self, m, n: int) -> None:
        m.rollback(n)

    def accepting(self, m) -> bool:
        return m.is_completed()

    def terminated(self, m) -> bool:
        return m.is_terminated()

    def batch(self):
        return self.X.BatchGrammarMatcher()

    def batch_fill(self, batcher, matchers: list, rows: list[int], bitmask) -> None:
        batcher.batch_fill_next_token_bitmask(matchers, bitmask, rows)

    def compile_lazy(self, tok, schema: dict):
        tag = {
            "type": "structural_tag",
            "format": {
                "type": "triggered_tags",
                "triggers": [TRIGGER],
                "tags": [
                    {
                        "type": "tag",
                        "begin": TRIGGER,
                        "content": {"type": "json_schema", "json_schema": schema},
                        "end": END_TAG,
                    }
                ],  # fmt: skip
            },
        }
        try:
            return self.cold.compile_structural_tag(json.dumps(tag))
        except Exception as err:  # noqa: BLE001
            raise CompileError(f"{type(err).__name__}: {err}") from err

    def apply(self):
        return lambda logits, bitmask: self.X.apply_token_bitmask_inplace(logits, bitmask, backend="cpu")

    def apply_compiled(self):
        return None


class OutlinesCoreAdapter(Adapter):
    name = "outlines_core"

    def __init__(self):
        import outlines_core
        from outlines_core.json_schema import build_regex_from_schema

        self.O, self.regex = outlines_core, build_regex_from_schema

    def load_tokenizer(self, folder: str, vocab_size: int, eos: list[int]):
        # What Vocabulary.from_pretrained does, from tokenizer.json: byte-level tokens -> bytes.
        # Only one EOS id is possible; special tokens stay out of the vocabulary (never allowed).
        tokens, special, added = _vocab_from_tokenizer_json(folder)
        table = _byte_decoder()
        mapping: dict[bytes, list[int]] = {}
        for i, text in enumerate(tokens):
            if i in special or not text:
                continue
            raw = text.encode() if i in added else bytes(table[c] for c in text)
            mapping.setdefault(raw, []).append(i)
        return self.O.Vocabulary(eos[0], mapping)

    def compile(self, tok, schema: dict):
        try:
            return self.O.Index(self.regex(json.dumps(schema)), tok)
        except Exception as err:  # noqa: BLE001
            raise CompileError(f"{type(err).__name__}: {err}") from err

    def warnings(self, compiled) -> list[str]:
        return []

    def matcher(self, compiled):
        return self.O.Guide(compiled, max_rollback=64)

    def fill(self, m, bitmask, row: int) -> None:
        m.write_mask_into(bitmask[row].data_ptr(), bitmask.shape[1], 4)

    def accept(self, m, token: int) -> bool:
        try:
            m.advance(token, return_tokens=False)
            return True
        except Exception:  # noqa: BLE001 - the Guide raises on a token it does not allow
            return False

    def rollback(self, m, n: int) -> None:
        m.rollback_state(n)

    def accepting(self, m) -> bool:
        return m.is_finished()

    def terminated(self, m) -> bool:
        return m.is_finished()

    def apply(self):
        return None

    def apply_compiled(self):
        import outlines_core.kernels.torch as OT

        return OT.apply_token_bitmask_inplace


ADAPTERS = {"llguidance": LLGuidanceAdapter, "xgrammar": XGrammarAdapter, "outlines_core": OutlinesCoreAdapter}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _stats(ns: list[int]) -> dict:
    """Median, p99, max and mean of times in nanoseconds, in microseconds."""
    if not ns:
        return {}
    s = sorted(ns)
    p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
    return {"n": len(s), "median_us": s[len(s) // 2] / 1e3, "p99_us": p99 / 1e3, "max_us": s[-1] / 1e3,
            "mean_us": sum(s) / len(s) / 1e3}  # fmt: skip


def _allowed(bitmask, row: int, token: int) -> bool:
    return bool((int(bitmask[row, token >> 5]) >> (token & 31)) & 1)


def _walk(
    ad: Adapter,
    m,
    ids: list[int],
    bitmask,
    eos: list[int],
    times: list[int] | None = None,
    accepts: list[int] | None = None,
) -> dict:
    """Mask, check, accept each token of ``ids``; then whether EOS is allowed. Stops at the first refusal."""
    from time import perf_counter_ns

    for k, token in enumerate(ids):
        t0 = perf_counter_ns()
        ad.fill(m, bitmask, 0)
        t1 = perf_counter_ns()
        if times is not None:
            times.append(t1 - t0)
        allowed = _allowed(bitmask, 0, token)
        t2 = perf_counter_ns()
        accepted = ad.accept(m, token)
        if accepts is not None:
            accepts.append(perf_counter_ns() - t2)
        if not (allowed and accepted):
            return {"ok": False, "at": k, "mask_allowed": allowed, "accepted": accepted}
    ad.fill(m, bitmask, 0)
    eos_ok = any(_allowed(bitmask, 0, e) for e in eos)
    return {"ok": eos_ok, "at": None if eos_ok else len(ids), "eos_allowed": eos_ok, "accepting": ad.accepting(m)}


def _where(case: dict, at: int | None) -> str:
    if at is None:
        return ""
    if at >= len(case["ids"]):
        return "at the end (EOS refused)"
    start = case["starts"][at]
    text = case["text"]
    return f"token {at}/{len(case['ids'])}: …{text[max(0, start - 12) : start]}⟨{text[start : start + 8]}⟩"


def run_child(lib: str, cases: dict, torch_compile: bool) -> dict:
    import torch

    from time import perf_counter as now

    ad = ADAPTERS[lib]()
    out: dict = {"library": lib, "version": ad.version(), "torch": torch.__version__, "vocabs": {}}
    schemas = {"simple": SIMPLE_SCHEMA, "device": device_schema()}
    for vname, tc in cases["tokenizers"].items():
        V, eos = tc["vocab_size"], tc["eos"]
        res: dict = {}
        gc.collect()
        rss0 = _status("VmRSS")
        t0 = now()
        tok = ad.load_tokenizer(tc["folder"], V, eos)
        res["tokenizer_s"] = now() - t0
        res["tokenizer_rss_mb"] = (_status("VmRSS") - rss0) / 1e6
        bitmask = torch.full((8, (V + 31) // 32), -1, dtype=torch.int32)
        compiled_by_schema = {}
        for sname, schema in schemas.items():
            r: dict = {}
            rss1 = _status("VmRSS")
            compile_s, first_mask_s, fresh_ns, walks = [], [], [], []
            try:
                docs = tc["docs"][sname]
                for i in range(max(5, len(docs))):
                    gc.collect()
                    t0 = now()
                    compiled = ad.compile(tok, schema)
                    t1 = now()
                    m = ad.matcher(compiled)
                    t2 = now()
                    ad.fill(m, bitmask, 0)
                    t3 = now()
                    if i == 0:
                        r["rss_mb"] = (_status("VmRSS") - rss1) / 1e6  # after the first compile
                    if i < 5:
                        compile_s.append(t1 - t0)
                        first_mask_s.append(t3 - t2)
                    if i < len(docs):  # walk each document on a grammar compiled just for it
                        walks.append(_walk(ad, ad.matcher(compiled), docs[i], bitmask, eos, fresh_ns))
                r["compile_ms"] = statistics.median(compile_s) * 1e3
                r["compile_ms_all"] = [x * 1e3 for x in compile_s]
                r["first_mask_ms"] = statistics.median(first_mask_s) * 1e3
                if ad.has_cache:
                    ad.compile(tok, schema, cached=True)
                    t0 = now()
                    ad.compile(tok, schema, cached=True)
                    r["cache_hit_ms"] = (now() - t0) * 1e3
                if hasattr(ad, "memory"):
                    r["compiled_bytes"] = ad.memory(compiled)
                r["warnings"] = ad.warnings(compiled)
                t0 = now()
                for _ in range(20):
                    ad.matcher(compiled)
                r["new_matcher_us"] = (now() - t0) / 20 * 1e6
                r["mask_fresh"] = _stats(fresh_ns)
                # the same grammar reused: one walk to warm up, then every document again
                warm_ns: list[int] = []
                accept_ns: list[int] = []
                _walk(ad, ad.matcher(compiled), docs[0], bitmask, eos)
                for ids in docs:
                    walks.append(_walk(ad, ad.matcher(compiled), ids, bitmask, eos, warm_ns, accept_ns))
                r["mask_reused"] = _stats(warm_ns)
                r["accept"] = _stats(accept_ns)
                r["docs_ok"] = sum(w["ok"] for w in walks)
                r["docs"] = len(walks)
                r["walk_failures"] = [w for w in walks if not w["ok"]][:3]
                compiled_by_schema[sname] = compiled
            except CompileError as err:
                r["error"] = str(err)[:400]
            res[sname] = r

        device = compiled_by_schema.get("device")
        if device is not None:
            res["rollback"] = _check_rollback(ad, device, tc["docs"]["device"][0], bitmask)
            res["invalid"] = {}
            for name, case in tc["invalid"].items():
                w = _walk(ad, ad.matcher(device), case["ids"], bitmask, eos)
                res["invalid"][name] = "ACCEPTED" if w["ok"] else "rejected " + _where(case, w["at"])
            res["batch8"] = _batch_walk(ad, device, tc["docs"]["device"], bitmask)

        res["probes"] = {}
        for name, (schema, _, _) in KEYWORD_PROBES.items():
            good, bad = tc["probes"][name]
            try:
                compiled = ad.compile(tok, schema)
            except CompileError as err:
                res["probes"][name] = {"result": "compile error", "detail": str(err)[:200]}
                continue
            wg = _walk(ad, ad.matcher(compiled), good["ids"], bitmask, eos)
            wb = _walk(ad, ad.matcher(compiled), bad["ids"], bitmask, eos)
            if not wg["ok"]:
                result = "valid doc refused"
            elif wb["ok"]:
                result = "ignored (invalid doc accepted)"
            else:
                result = "enforced"
            res["probes"][name] = {"result": result, "warnings": ad.warnings(compiled),
                                   "valid": _where(good, wg["at"]), "invalid": _where(bad, wb["at"])}  # fmt: skip

        if ad.has_lazy:
            res["lazy"] = _lazy(ad, tok, tc, bitmask, eos)
        res["apply"] = _apply_times(ad, V, torch_compile)
        res["rss_total_mb"] = _status("VmRSS") / 1e6
        res["peak_rss_mb"] = _status("VmHWM") / 1e6
        out["vocabs"][vname] = res
    return out


def _check_rollback(ad: Adapter, compiled, ids: list[int], bitmask) -> str:
    """Mask at step k, accept 5 more tokens, roll back 5: the mask must be the same again."""
    m = ad.matcher(compiled)
    k = len(ids) // 2
    for t in ids[:k]:
        ad.accept(m, t)
    ad.fill(m, bitmask, 0)
    before = bitmask[0].clone()
    for t in ids[k : k + 5]:
        ad.accept(m, t)
    try:
        ad.rollback(m, 5)
    except Exception as err:  # noqa: BLE001
        return f"rollback failed: {err}"
    ad.fill(m, bitmask, 0)
    if not bool((bitmask[0] == before).all()):
        return "mask differs after rollback"
    ok = all(ad.accept(m, t) for t in ids[k:])
    return "ok" if ok else "tokens refused after rollback"


def _batch_walk(ad: Adapter, compiled, docs: list[list[int]], bitmask) -> dict:
    """Eight requests in lock step: one batched mask fill per step, then each accepts its token."""
    from time import perf_counter_ns

    matchers = [ad.matcher(compiled) for _ in docs[:8]]
    batcher = ad.batch() if ad.has_batch else None
    ns: list[int] = []
    rows_total = 0
    for step in range(max(len(d) for d in docs[:8])):
        live = [i for i, d in enumerate(docs[:8]) if step < len(d)]
        t0 = perf_counter_ns()
        if batcher is not None:
            ad.batch_fill(batcher, [matchers[i] for i in live], live, bitmask)
        else:
            for i in live:
                ad.fill(matchers[i], bitmask, i)
        ns.append(perf_counter_ns() - t0)
        rows_total += len(live)
        for i in live:
            ad.accept(matchers[i], docs[i][step])
    st = _stats(ns)
    st["per_row_us"] = sum(ns) / rows_total / 1e3
    st["api"] = "batch" if batcher is not None else "loop"
    return st


def _lazy(ad: Adapter, tok, tc: dict, bitmask, eos: list[int]) -> dict:
    from time import perf_counter as now

    out: dict = {}
    try:
        t0 = now()
        compiled = ad.compile_lazy(tok, device_schema())
        out["compile_ms"] = (now() - t0) * 1e3
    except CompileError as err:
        return {"error": str(err)[:300]}
    before, after, accept_before = [], [], []
    for name, case in tc["lazy"].items():
        times: list[int] = []
        accepts: list[int] = []
        w = _walk(ad, ad.matcher(compiled), case["ids"], bitmask, eos, times, accepts)
        cut = case["trigger_at"] if case["trigger_at"] is not None else len(times)
        before += times[:cut]
        after += times[cut:]
        accept_before += accepts[:cut]
        out[name] = "accepted, EOS allowed" if w["ok"] else "rejected " + _where(case, w["at"])
    out["mask_free_text"] = _stats(before)
    out["mask_after_trigger"] = _stats(after)
    out["accept_free_text"] = _stats(accept_before)
    return out


def _apply_bitmask_torch(logits, bitmask) -> None:
    """Plain-torch reference: unpack the bits, fill -inf where a bit is 0 (and past the mask)."""
    import torch

    vocab = logits.shape[-1]
    shifts = torch.arange(32, dtype=torch.int32)
    bits = ((bitmask.unsqueeze(-1) >> shifts) & 1).bool().flatten(-2)
    if bits.shape[-1] < vocab:
        logits[..., bits.shape[-1] :] = float("-inf")
    logits.masked_fill_(~bits[..., :vocab], float("-inf"))


def _apply_bitmask_numpy(logits, bitmask) -> None:
    """numpy's unpackbits (one C pass) to a bool row, then one masked_fill_."""
    import numpy as np
    import torch

    vocab = logits.shape[-1]
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=-1, count=vocab, bitorder="little")
    if bits.shape[-1] < vocab:
        bits = np.pad(bits, [(0, 0)] * (bits.ndim - 1) + [(0, vocab - bits.shape[-1])])
    logits.masked_fill_(~torch.from_numpy(bits.view(np.bool_)), float("-inf"))


def _pack(allowed) -> object:
    """A bool row -> the int32 bitmask the libraries write (bit i of word i // 32 is token i)."""
    import torch

    vocab = allowed.shape[-1]
    padded = torch.zeros(((vocab + 31) // 32) * 32, dtype=torch.int64)
    padded[:vocab] = allowed.to(torch.int64)
    words = (padded.view(-1, 32) << torch.arange(32, dtype=torch.int64)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).unsqueeze(0)


def _apply_times(ad: Adapter, vocab: int, torch_compile: bool) -> dict:
    """Time each kernel on two masks like real ones: an enum position (1% allowed) and string content (90%)."""
    import torch

    from time import perf_counter as now

    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, vocab, generator=g)
    kernels = {"plain torch (shifts)": _apply_bitmask_torch, "numpy unpackbits + masked_fill_": _apply_bitmask_numpy}
    kernels[ad.name] = ad.apply()
    if torch_compile:
        kernels[f"{ad.name} torch.compile"] = ad.apply_compiled()
    out: dict = {}
    for mask_name, frac in (("1% allowed", 0.01), ("90% allowed", 0.9)):
        bitmask = _pack(torch.rand(vocab, generator=g) < frac)
        expected = base.clone()
        _apply_bitmask_torch(expected, bitmask)
        for name, fn in kernels.items():
            if fn is None:
                continue
            try:
                logits = base.clone()
                t0 = now()
                fn(logits, bitmask)
                first = now() - t0
                if not torch.equal(logits, expected):
                    out.setdefault(name, {})[mask_name] = {"error": "result differs from the reference"}
                    continue
                ts = []
                for _ in range(50):
                    logits = base.clone()
                    t0 = now()
                    fn(logits, bitmask)
                    ts.append(now() - t0)
                out.setdefault(name, {})[mask_name] = {"median_us": statistics.median(ts) * 1e6, "first_call_s": first}
            except Exception as err:  # noqa: BLE001
                out.setdefault(name, {})[mask_name] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
    return out


# --------------------------------------------------------------------------------------------------
# Parent: prepare, run each library in a child, print the report


def _fmt(x, digits: int = 1) -> str:
    if x is None or x == "":
        return "–"
    if isinstance(x, float):
        if x >= 100:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}" if x >= 1 else f"{x:.{digits + 1}g}"
    return str(x)


def report(results: list[dict], cases: dict, skipped: dict[str, str]) -> str:
    load = os.getloadavg()
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.",
        "",
    ]
    for lib, why in skipped.items():
        lines.append(f"Skipped {lib}: {why}")
    if skipped:
        lines.append("")
    lines.append("| library | version | torch |")
    lines.append("|---|---|---|")
    for r in results:
        lines.append(f"| {r['library']} | {r['version']} | {r['torch']} |")
    for vname, tc in cases["tokenizers"].items():
        lines += ["", f"### {vname} vocabulary ({tc['vocab_size']:,} tokens)", ""]
        lines.append(
            "| library | schema | tokenizer conv. s | compile ms (cold, median of 5) | cache hit ms | first mask ms "
            "| new matcher µs | mask µs fresh grammar: median / p99 / max | mask µs reused grammar: median / p99 / max "
            "| accept µs median | walks ok | RSS after 1st compile, MB |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            res = r["vocabs"].get(vname, {})
            for sname in ("simple", "device"):
                s = res.get(sname, {})
                if "error" in s:
                    lines.append(
                        f"| {r['library']} | {sname} | {_fmt(res.get('tokenizer_s'), 2)} | error: {s['error'][:120]} |||||||"
                    )
                    continue
                fr, wr = s.get("mask_fresh", {}), s.get("mask_reused", {})
                lines.append(
                    f"| {r['library']} | {sname} | {_fmt(res.get('tokenizer_s'), 2)} | {_fmt(s.get('compile_ms'))} "
                    f"| {_fmt(s.get('cache_hit_ms'), 2)} | {_fmt(s.get('first_mask_ms'), 2)} | {_fmt(s.get('new_matcher_us'))} "
                    f"| {_fmt(fr.get('median_us'))} / {_fmt(fr.get('p99_us'))} / {_fmt(fr.get('max_us'))} "
                    f"| {_fmt(wr.get('median_us'))} / {_fmt(wr.get('p99_us'))} / {_fmt(wr.get('max_us'))} "
                    f"| {_fmt(s.get('accept', {}).get('median_us'))} | {s.get('docs_ok')}/{s.get('docs')} "
                    f"| {_fmt(max(0.0, s.get('rss_mb', 0.0)))} |"
                )
        lines += [
            "",
            "| library | batch of 8, per step µs: median / p99 | per row µs | API | rollback | tokenizer RSS MB | peak RSS MB |",
        ]
        lines.append("|---|---|---|---|---|---|---|")
        for r in results:
            res = r["vocabs"].get(vname, {})
            b = res.get("batch8", {})
            lines.append(
                f"| {r['library']} | {_fmt(b.get('median_us'))} / {_fmt(b.get('p99_us'))} | {_fmt(b.get('per_row_us'))} "
                f"| {b.get('api', '–')} | {res.get('rollback', '–')} | {_fmt(res.get('tokenizer_rss_mb'))} "
                f"| {_fmt(res.get('peak_rss_mb'))} |"
            )
    # correctness, keywords, lazy and apply: from the largest vocabulary that ran
    vname = list(cases["tokenizers"])[-1]
    lines += [
        "",
        f"### Invalid documents ({vname})",
        "",
        "| document | " + " | ".join(r["library"] for r in results) + " |",
    ]
    lines.append("|---|" + "---|" * len(results))
    for name in invalid_device_documents():
        cells = [r["vocabs"].get(vname, {}).get("invalid", {}).get(name, "–") for r in results]
        lines.append(f"| {name} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += [
        "",
        f"### JSON Schema keywords ({vname})",
        "",
        "| keyword | " + " | ".join(r["library"] for r in results) + " |",
    ]
    lines.append("|---|" + "---|" * len(results))
    for name in KEYWORD_PROBES:
        cells = []
        for r in results:
            p = r["vocabs"].get(vname, {}).get("probes", {}).get(name, {})
            cell = p.get("result", "–")
            if p.get("detail"):
                cell += f": {p['detail'][:90]}"
            if p.get("warnings"):
                cell += f" (warning: {'; '.join(p['warnings'])[:90]})"
            cells.append(cell.replace("|", "\\|").replace("\n", " "))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"### Lazy trigger `{TRIGGER}` ({vname})", ""]
    lines.append("| library | compile ms | mask µs free text: median / p99 | accept µs free text: median / p99 "
                 "| mask µs after trigger: median / p99 | " + " | ".join(lazy_texts()) + " |")  # fmt: skip
    lines.append("|---|---|---|---|---|" + "---|" * len(lazy_texts()))
    for r in results:
        lz = r["vocabs"].get(vname, {}).get("lazy")
        if lz is None:
            lines.append(f"| {r['library']} | not supported ||||" + "|" * len(lazy_texts()))
            continue
        if "error" in lz:
            lines.append(f"| {r['library']} | error: {lz['error'][:150]} ||||" + "|" * len(lazy_texts()))
            continue
        a, b, c = lz["mask_free_text"], lz["mask_after_trigger"], lz.get("accept_free_text", {})
        lines.append(
            f"| {r['library']} | {_fmt(lz['compile_ms'])} | {_fmt(a.get('median_us'))} / {_fmt(a.get('p99_us'))} "
            f"| {_fmt(c.get('median_us'))} / {_fmt(c.get('p99_us'))} "
            f"| {_fmt(b.get('median_us'))} / {_fmt(b.get('p99_us'))} | "
            + " | ".join(lz[k].replace("|", "\\|") for k in lazy_texts())
            + " |"
        )
    lines += ["", "### Applying a bitmask to float32 logits (1 row), µs", ""]
    cols = [(vn, mk) for vn in cases["tokenizers"] for mk in ("1% allowed", "90% allowed")]
    lines.append("| kernel | " + " | ".join(f"{vn}, {mk}" for vn, mk in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    seen: dict = {}
    for r in results:
        for vn in cases["tokenizers"]:
            for k, per_mask in r["vocabs"].get(vn, {}).get("apply", {}).items():
                for mk, v in per_mask.items():
                    seen.setdefault(k, {}).setdefault((vn, mk), v)
    for k, per in seen.items():
        cells = []
        for col in cols:
            v = per.get(col, {})
            cell = v.get("error") or _fmt(v.get("median_us"))
            if v.get("first_call_s", 0) > 1:
                cell += f" (first call {v['first_call_s']:.0f} s)"
            cells.append(cell)
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    p.add_argument("--python", action="append", default=[], metavar="LIB=PYTHON",
                   help="run LIB's child with this interpreter (e.g. a throwaway venv's)")  # fmt: skip
    p.add_argument("--vocabs", nargs="+", default=list(VOCABS), choices=list(VOCABS))
    p.add_argument("--quick", action="store_true", help="32k vocabulary only")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ondol-grammar-bench")
    p.add_argument("--torch-compile", action="store_true", help="also time the torch.compile bitmask kernels")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for one library's child")
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    p.add_argument("--cases", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        cases = json.loads(args.cases.read_text())
        print(json.dumps(run_child(args.child, cases, args.torch_compile)))
        return 0

    vocabs = ["32k"] if args.quick else args.vocabs
    cases = prepare(args.workdir, vocabs)
    cases_path = args.workdir / "cases.json"
    cases_path.write_text(json.dumps(cases, ensure_ascii=False))
    pythons = dict(item.split("=", 1) for item in args.python)
    root = Path(__file__).resolve().parent.parent
    results, skipped = [], {}
    for lib in args.libraries:
        python = pythons.get(lib, sys.executable)
        probe = subprocess.run([python, "-c", f"import {lib}"], capture_output=True, text=True)
        if probe.returncode != 0:
            skipped[lib] = f"not importable with {python}"
            continue
        cmd = [python, "-m", "benchmarks.grammar_libraries", "--child", lib, "--cases", str(cases_path)]
        if args.torch_compile:
            cmd.append("--torch-compile")
        print(f"{lib}: {' '.join(cmd)}", file=sys.stderr)
        env = os.environ | {"PYTHONPATH": str(root), "PYTHONWARNINGS": "ignore"}
        try:
            proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            skipped[lib] = f"timed out after {args.timeout:.0f} s"
            continue
        if proc.returncode != 0:
            skipped[lib] = (
                f"child failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
            )
            print(proc.stderr, file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "skipped": skipped}, ensure_ascii=False, indent=1))
    print(report(results, cases, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
