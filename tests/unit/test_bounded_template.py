"""Chat templates under a budget (ondol/tokenizer/bounded.py): the worker renders exactly what the
in-process reference renders, and a template that loops, writes without end or allocates without
bound is stopped within its budget with an error naming it, after which rendering goes on."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ondol.errors import ChatTemplateError, InvalidRequestError
from ondol.tokenizer import Tokenizer, render_chat_template
from ondol.tokenizer.bounded import BoundedRenderer, TemplateBudget
from tests.model_fixtures import LLAMA3_TEMPLATE
from tests.tokenizer_fixtures import byte_level_bpe, spm_bpe

LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HUGE = "{{ 'a' * 100000000 }}"
CONVERSATION = [{"role": "system", "content": "너는 집 비서야."},
                {"role": "user", "content": "거실 에어컨 24도로 맞춰줘 🌡️"},
                {"role": "assistant", "content": "네, 24도로 맞췄어요."},
                {"role": "user", "content": "turn off all the bedroom lights"}]


@pytest.fixture
def renderer():
    r = BoundedRenderer(TemplateBudget(seconds=0.5, max_chars=10_000))
    yield r
    r.close()


def test_the_worker_renders_what_the_reference_renders(renderer):
    for add in (True, False):
        expected = render_chat_template(LLAMA3_TEMPLATE, CONVERSATION, add_generation_prompt=add, bos_token="<s>")
        got = renderer.render(LLAMA3_TEMPLATE, "the chat template of t", CONVERSATION, add_generation_prompt=add,
                              bos_token="<s>")
        assert got == expected and "거실 에어컨 24도로" in got and "🌡️" in got


def test_a_looping_template_is_stopped_within_its_budget_and_rendering_goes_on(renderer):
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match=r"^The chat template of /models/loop did not finish within 0\.5 s"):
        renderer.render(LOOP, "the chat template of /models/loop", CONVERSATION)
    assert time.monotonic() - start < 0.5 + 1.0
    assert renderer.render("{{ messages[1].content }}", "t", CONVERSATION) == "거실 에어컨 24도로 맞춰줘 🌡️"


def test_a_template_that_writes_too_much_is_refused(renderer):
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match="wrote more than 10000 characters"):
        renderer.render("{% for i in range(100000) %}abcdefgh{% endfor %}", "the chat template of t", [])
    assert time.monotonic() - start < 0.5 + 1.0
    # One expression that builds 100 MB at once: stopped by the output bound or the clock, never
    # by the server running out of memory.
    big = BoundedRenderer(TemplateBudget(seconds=2.0, max_chars=10_000))
    try:
        start = time.monotonic()
        with pytest.raises(ChatTemplateError, match="(wrote more than 10000 characters|did not finish within 2 s)"):
            big.render(HUGE, "the chat template of t", [])
        assert time.monotonic() - start < 2.0 + 1.0
    finally:
        big.close()


def test_a_template_that_allocates_without_bound_fails_in_the_worker():
    small = BoundedRenderer(TemplateBudget(seconds=5.0, memory_bytes=128 << 20))
    try:
        with pytest.raises(ChatTemplateError, match="(more memory|stopped its renderer)"):
            small.render("{{ 'a' * 300000000 }}", "the chat template of t", [])  # 300 MB under a 128 MiB cap
        assert small.render("{{ 'ok' }}", "t", []) == "ok"
    finally:
        small.close()


def test_runtime_failures_of_template_code_are_template_errors(renderer):
    worker = None
    for template, kind in (("{{ cycler().next() }}", "RuntimeError"), ("{{ 'abc' | truncate(-5) }}", "AssertionError")):
        with pytest.raises(ChatTemplateError, match=f"^The chat template of m failed to render: {kind}"):
            renderer.render(template, "the chat template of m", [])
        with pytest.raises(ChatTemplateError, match=f"failed to render: {kind}"):
            render_chat_template(template, [])  # the in-process reference says the same
        assert worker is None or renderer._proc.pid == worker  # the worker lived through it
        worker = renderer._proc.pid


def test_an_interrupted_render_never_answers_the_next_one(renderer, monkeypatch):
    """A render interrupted while its reply is on the way (KeyboardInterrupt in a notebook): the
    worker is replaced, so the next render gets its own answer, not the old one."""
    import ondol.tokenizer.bounded as bounded

    real = bounded._read_line
    calls = []

    def interrupted(proc, deadline):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.3)  # the worker writes its reply meanwhile
            raise KeyboardInterrupt
        return real(proc, deadline)

    renderer.render("{{ 'warm' }}", "t", [])
    monkeypatch.setattr(bounded, "_read_line", interrupted)
    with pytest.raises(KeyboardInterrupt):
        renderer.render("{{ 'FIRST' }}", "t", [])
    monkeypatch.setattr(bounded, "_read_line", real)
    assert renderer.render("{{ 'SECOND' }}", "t", []) == "SECOND"


def test_the_budget_does_not_count_the_worker_start():
    """A short budget still renders: the clock starts once the worker is ready, not at its start."""
    quick = BoundedRenderer(TemplateBudget(seconds=0.05))
    try:
        for _ in range(3):
            assert quick.render("{{ messages[0].content }}", "t", [{"role": "user", "content": "거실"}]) == "거실"
            quick._stop()  # every render pays a fresh start
    finally:
        quick.close()


def test_a_worker_that_died_while_idle_is_replaced(renderer):
    renderer.render("{{ 1 }}", "t", [])
    old = renderer._proc
    old.kill()
    old.wait()
    assert renderer.render("{{ 2 }}", "t", []) == "2"
    assert renderer._proc is not old and old.stdin.closed and old.stdout.closed


def test_template_errors_keep_their_meaning_and_name_the_template(renderer):
    with pytest.raises(ChatTemplateError, match=r"^The chat template of m rejected the conversation: 안 돼"):
        renderer.render("{{ raise_exception('안 돼') }}", "the chat template of m", [])
    with pytest.raises(ChatTemplateError, match=r"^The chat template of m tried an operation the sandbox forbids"):
        renderer.render("{{ ''.__class__.__mro__ }}", "the chat template of m", [])
    with pytest.raises(InvalidRequestError, match="must be an object"):
        renderer.render(LLAMA3_TEMPLATE, "the chat template of m", ["not a message"])
    with pytest.raises(InvalidRequestError, match="JSON values"):
        renderer.render(LLAMA3_TEMPLATE, "the chat template of m", [{"role": "user", "content": object()}])


def test_renders_from_many_threads_each_get_their_own_answer(renderer):
    errors: list[str] = []

    def work(n: int) -> None:
        for i in range(15):
            text = f"{n}-{i} 거실"
            got = renderer.render("{{ messages[0].content }}", "t", [{"role": "user", "content": text}])
            if got != text:
                errors.append(f"{text!r} -> {got!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_worker_exits_when_its_parent_is_killed():
    code = textwrap.dedent("""
        import os
        from ondol.tokenizer.bounded import BoundedRenderer
        r = BoundedRenderer()
        assert r.render("{{ 1 + 1 }}", "t", []) == "2"
        print(r._proc.pid, flush=True)
        os._exit(0)  # no finalizer runs: the worker must notice on its own
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    worker = int(out.stdout.strip())
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_tokenizer_names_its_model_in_template_errors():
    backend = byte_level_bpe()
    tok = Tokenizer(backend, bos_token=None, eos_token=None, eos_token_ids=(), chat_template=LOOP,
                    tool_chat_template="{{ tools | length }}", source="/models/solar.gguf")
    tok.template_budget = TemplateBudget(seconds=0.3)
    with pytest.raises(ChatTemplateError, match=r"^The chat template of /models/solar.gguf did not finish"):
        tok.apply_chat_template(CONVERSATION)
    tok.tool_chat_template = LOOP
    with pytest.raises(ChatTemplateError, match=r"^The tool_use chat template of /models/solar.gguf"):
        tok.apply_chat_template(CONVERSATION, tools=[{"type": "function", "function": {"name": "f"}}])


def _tokenizer(backend) -> Tokenizer:
    return Tokenizer(backend, bos_token=None, eos_token=None, eos_token_ids=(), chat_template=None)


@pytest.mark.parametrize("make", [byte_level_bpe, spm_bpe], ids=["byte-level", "sentencepiece"])
def test_no_text_is_fewer_tokens_than_its_characters_over_max_token_chars(make):
    """The bound LLM uses to refuse a prompt before tokenizing it: C characters are at least
    C / max_token_chars tokens, for any text, including the worst case (the longest tokens, one
    after another), Korean, emoji, runs of spaces and added tokens."""
    tok = _tokenizer(make())
    assert not tok.merges_characters
    vocab = tok._backend.get_vocab(with_added_tokens=True)
    longest = sorted(vocab, key=len, reverse=True)[:20]
    decoded = [tok.decode([vocab[t]], skip_special_tokens=False) for t in longest]
    rng = random.Random(16)
    alphabet = list("거실에어컨침실조명 abcdefghij0123456789\n\t🌡️!?") + ["    ", "the ", "에어컨 "] + decoded
    texts = [d * 50 for d in decoded] + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400)))
                                         for _ in range(300)]
    worst = 0.0
    for text in texts:
        tokens = len(tok.encode(text, add_special_tokens=False))
        assert tokens * tok.max_token_chars >= len(text), (text[:40], tokens)
        worst = max(worst, len(text) / max(tokens, 1))
    assert worst > 2  # the worst-case texts do come near the bound


def test_tokenizers_that_merge_characters_are_known():
    """NFC composes two characters into one and Whitespace drops spaces: for such tokenizers
    max_token_chars is no bound, and LLM gives it slack."""
    from tokenizers import normalizers, pre_tokenizers

    composed = byte_level_bpe()
    composed.normalizer = normalizers.NFC()
    spaces = byte_level_bpe()
    spaces.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel()])
    for backend in (composed, spaces):
        assert _tokenizer(backend).merges_characters
    assert len(composed.normalizer.normalize_str("e\u0301" * 100)) == 100  # 200 characters became 100
    assert not _tokenizer(byte_level_bpe()).merges_characters


def test_a_forked_child_gets_its_own_worker(renderer):
    assert renderer.render("{{ 'parent' }}", "t", []) == "parent"
    parent_worker = renderer._proc.pid
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child renders through a worker of its own, leaving the parent's pipes alone
        try:
            ok = renderer.render("{{ '자식' }}", "t", []) == "자식" and renderer._proc.pid != parent_worker
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert renderer.render("{{ 'parent again' }}", "t", []) == "parent again" and renderer._proc.pid == parent_worker
