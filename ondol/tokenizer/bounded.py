"""Chat templates under a budget: rendered in a worker process that can be stopped.

A chat template is a program shipped inside a model file, and Jinja's sandbox bounds what it may
touch, not how long it runs or how much it writes: two nested ``range(100000)`` loops run for
hours, and ``{{ 'a' * 100000000 }}`` builds 100 MB in one step. Neither can be interrupted inside
the process that runs it (a thread cannot be killed; the second is one C call), so ondol renders
in a small worker process (Python + Jinja2, ~25 MB, started on first use) and bounds it three ways:

* time: the parent waits ``seconds`` for the answer, then SIGKILLs the worker and starts a fresh
  one on the next render, so the server never waits on a template longer than its budget;
* output: the worker stops the render once it has written ``max_chars`` characters (ondol sets it
  to the most characters the context can hold; a longer prompt could never be admitted anyway);
* memory: the worker runs under an address-space limit (``memory_bytes``), so a template that
  allocates without bound fails there, not in the server.

Requests and replies are one JSON line each over the worker's stdin and stdout. The reference
renderer (the same sandbox, in-process, unbounded) is ``ondol.tokenizer.chat.render_chat_template``;
the worker calls exactly that function.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ondol.errors import ChatTemplateError, InvalidRequestError

_READ_CHUNK = 1 << 16
_START_SECONDS = 30.0  # a cold start on a slow device imports Jinja2 in about a second


@dataclass(frozen=True)
class TemplateBudget:
    """Limits on one render. ``seconds``: wall time before the worker is stopped; ``max_chars``:
    characters the template may write; ``memory_bytes``: the worker's address-space limit."""

    seconds: float = 2.0
    max_chars: int = 32 << 20
    memory_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise InvalidRequestError("The chat template time limit must be more than 0 seconds.")
        if self.max_chars < 1 or self.memory_bytes < 64 << 20:
            raise InvalidRequestError("The chat template budget needs at least 1 character and 64 MiB of memory.")


class BoundedRenderer:
    """One worker process for one tokenizer's templates. Thread-safe: renders take turns (one is a
    millisecond; a template that takes its whole budget delays the next by at most that)."""

    def __init__(self, budget: TemplateBudget | None = None) -> None:
        self.budget = budget or TemplateBudget()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._pid = os.getpid()

    def render(self, template: str, name: str, messages: Sequence[Mapping[str, Any]], **variables: Any) -> str:
        """``render_chat_template(template, messages, **variables)`` under the budget; ``name`` says
        which template it is in errors ("the chat template of /models/solar").

        Messages and variables travel as JSON, as they do through the OpenAI API: they must be JSON
        values (a tuple renders as a list, a dict's keys are strings)."""
        try:
            request = json.dumps({"template": template, "messages": list(messages), "variables": variables,
                                  "max_chars": self.budget.max_chars}, ensure_ascii=False).encode() + b"\n"
        except UnicodeEncodeError:
            raise InvalidRequestError("A chat message holds a lone UTF-16 surrogate, which is not a character.") \
                from None
        except (TypeError, ValueError) as err:
            raise InvalidRequestError(f"Chat messages and template variables must be JSON values: {err}.") from None
        with self._lock:
            proc = self._worker()
            deadline = time.monotonic() + self.budget.seconds  # from a ready worker: its start is not the template's
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                reply = _read_line(proc, deadline)
            except TimeoutError:
                self._stop()
                raise ChatTemplateError(
                    f"{_capital(name)} did not finish within {self.budget.seconds:g} s and was stopped "
                    "(a loop too long for a prompt; the limit is template_timeout).") from None
            except (BrokenPipeError, EOFError):
                code = self._stop()
                raise ChatTemplateError(
                    f"{_capital(name)} stopped its renderer (exit status {code}); it may have used more than "
                    f"{self.budget.memory_bytes >> 20} MiB.") from None
            except BaseException:
                # Interrupted mid-render (KeyboardInterrupt, MemoryError here): its reply may still
                # come, and must not be read as the next render's, so this worker goes.
                self._stop()
                raise
        answer = json.loads(reply)
        if "text" in answer:
            return answer["text"]
        kind = InvalidRequestError if answer.get("kind") == "request" else ChatTemplateError
        message = answer["error"]
        if kind is ChatTemplateError and message.startswith("The chat template"):
            message = _capital(name) + message[len("The chat template"):]
        raise kind(message)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _worker(self) -> subprocess.Popen:
        if self._pid != os.getpid():  # a forked child: the worker and its pipes are the parent's, not ours
            if self._finalizer is not None:
                self._finalizer.detach()  # so this process's exit does not kill the parent's worker
            self._proc, self._finalizer, self._pid = None, None, os.getpid()
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc
            self._stop()  # died while idle (the OOM killer): close its pipes before starting anew
        env = dict(os.environ)
        # The worker imports ondol from where this process did (a source checkout or an install).
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ondol.tokenizer.template_worker", str(self.budget.memory_bytes), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0,
            start_new_session=True)  # a Ctrl-C in the terminal is the parent's to handle, not the worker's
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        try:
            ready = _read_line(self._proc, time.monotonic() + _START_SECONDS)
        except (TimeoutError, EOFError):
            code = self._stop()
            raise ChatTemplateError(f"The chat template renderer did not start (exit status {code}).") from None
        if ready != b"ready\n":
            self._stop()
            raise ChatTemplateError("The chat template renderer did not start properly.")
        return self._proc

    def _stop(self) -> int | None:
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        return _kill(proc) if proc is not None else None


def _read_line(proc: subprocess.Popen, deadline: float) -> bytes:
    """One line from the worker by ``deadline`` (TimeoutError), or EOFError if it exits first.
    poll-based, so any file descriptor number works (select() stops at 1024)."""
    fd = proc.stdout.fileno()
    buf = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if not sel.select(left):
                continue
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                raise EOFError
            buf += chunk
            if chunk.endswith(b"\n"):  # one line per reply, and the worker writes nothing else
                return bytes(buf)


def _kill(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
    return proc.wait()


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
