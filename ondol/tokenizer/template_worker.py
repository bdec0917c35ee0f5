"""The process ``BoundedRenderer`` renders chat templates in (``python -m ondol.tokenizer.template_worker``).

Arguments: the address-space limit in bytes and the parent's pid. It reads one JSON request per
line from stdin ({"template", "messages", "variables", "max_chars"}) and writes one JSON reply per
line to stdout: {"text": ...} or {"error": ..., "kind": "request" | "template"}, after a first
line "ready" once its imports are done. It writes nothing else to stdout, and exits when stdin closes or its parent goes away (a parent killed with SIGKILL
cannot close the pipe in time to matter, so a watchdog also checks the parent's pid).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time

from ondol.errors import ChatTemplateError, InvalidRequestError
from ondol.tokenizer.chat import render_chat_template


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _answer(line: bytes) -> dict:
    try:
        request = json.loads(line)
        text = render_chat_template(request["template"], request["messages"], max_chars=request["max_chars"],
                                    **request["variables"])
    except InvalidRequestError as err:
        return {"error": str(err), "kind": "request"}
    except ChatTemplateError as err:
        return {"error": str(err), "kind": "template"}
    except MemoryError:
        return {"error": "The chat template used more memory than its renderer may have.", "kind": "template"}
    except Exception as err:  # noqa: BLE001 - template code is the model's: any failure is its error, not ours
        return {"error": f"The chat template failed to render: {type(err).__name__}: {err}.", "kind": "template"}
    return {"text": text}


def main(memory_bytes: int, parent: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"ready\n")  # imports done: the parent starts a render's clock only now
    stdout.flush()
    for line in stdin:
        try:
            reply = json.dumps(_answer(line), ensure_ascii=False).encode()
        except MemoryError:
            reply = b'{"error": "The chat template used more memory than its renderer may have.", "kind": "template"}'
        stdout.write(reply + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
