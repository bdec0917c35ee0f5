"""Training: ``train(TrainConfig(...))`` trains ondol's LlamaForCausalLM from scratch or fine-tunes a
checkpoint on CPU (trainer.py); ``ondol train`` is its command line (cli.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ondol.train.trainer import TrainConfig, TrainError, TrainResult, train

__all__ = ["TrainConfig", "TrainError", "TrainResult", "train"]


def __getattr__(name: str) -> Any:
    # Lazy: `ondol --help` and the other commands import ondol.train.cli, which must not pull in
    # torch and the trainer just to list a subcommand.
    if name in __all__:
        from ondol.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'ondol.train' has no attribute {name!r}")
