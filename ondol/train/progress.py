"""What a training run shows while it runs: a rich progress bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time


class Reporter:
    def __init__(self, enabled: bool, log_every: int) -> None:
        self.enabled, self.log_every = enabled, max(1, log_every)
        self.bar = None

    def start(self, total: int, done: int, summary: str) -> None:
        self.total, self.done, self.begin = total, done, time.perf_counter()
        if not self.enabled:
            return
        if not sys.stderr.isatty():
            print(summary, file=sys.stderr, flush=True)
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} tok/s"),
                            TimeRemainingColumn(), console=Console(stderr=True))
        self.bar.__enter__()
        self.bar.console.print(summary)
        self.task = self.bar.add_task("train", total=total, completed=done, loss="-", lr="-", speed="-")

    def step(self, step: int, loss: float, lr: float, tokens_per_second: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}",
                            speed=f"{tokens_per_second:,.0f}")
        elif step % self.log_every == 0 or step == self.total:
            elapsed = time.perf_counter() - self.begin
            eta = elapsed / max(step - self.done, 1) * (self.total - step)
            print(f"step {step}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  {tokens_per_second:,.0f} tok/s  "
                  f"elapsed {elapsed:.0f}s  eta {eta:.0f}s", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
