"""Named training recipes: ``ondol train --recipe NAME``.

``home-tiny`` makes ondol's embedded device-control model from nothing: it generates the Korean/
English corpus (ondol/train/data.py), trains a byte-level BPE tokenizer on it, trains a small
Llama from scratch on CPU, and scores the result on the held-out split (ondol/home/evaluate.py).
Everything is seeded, so a rerun reproduces the shipped model's accuracy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ondol.config import ModelConfig, RopeConfig


@dataclass(frozen=True)
class HomeRecipe:
    """Data, tokenizer and model sizes, and the training schedule."""

    train_examples: int = 240_000
    eval_examples: int = 2_000
    seed: int = 1
    eval_seed: int = 1_000_003  # other homes, other phrasings: a held-out split, not a shuffle
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 704
    layers: int = 6
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 128
    epochs: int = 1
    batch_size: int = 64
    lr: float = 2e-3
    threads: int | None = None

    def model_config(self) -> ModelConfig:
        return ModelConfig(architecture="llama", vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.layers,
                           num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
                           head_dim=self.hidden_size // self.heads, rms_norm_eps=1e-5,
                           max_position_embeddings=self.max_positions, rope=RopeConfig(theta=10_000.0),
                           tie_word_embeddings=True)


RECIPES: dict[str, HomeRecipe] = {
    "home-tiny": HomeRecipe(),
    # A smoke-test size for the tests: the same steps, a minute of work.
    "home-smoke": HomeRecipe(train_examples=3_000, eval_examples=200, vocab_size=1024, hidden_size=64,
                             intermediate_size=176, layers=2, heads=2, kv_heads=1, batch_size=32),
}


def run_recipe(name: str, out: Path, *, progress: bool = True, resume: bool = False,
               log: Callable[[str], None] = print, **overrides: Any) -> dict[str, Any]:
    """Run recipe ``name`` into ``out``: ``out/data``, ``out/tokenizer``, ``out/model`` (the HF
    folder), ``out/model/eval.json``. Returns the held-out scores."""
    from ondol.train.data import generate, iter_text, write_homes, write_jsonl
    from ondol.train.tokenizer import train_tokenizer
    from ondol.train.trainer import TrainConfig, train

    recipe = replace(RECIPES[name], **overrides)
    out = Path(out)
    data, tok_dir = out / "data", out / "tokenizer"
    started = time.monotonic()
    if not (data / "train.jsonl").exists() or not resume:
        log(f"generating {recipe.train_examples:,} training and {recipe.eval_examples:,} held-out examples")
        examples, homes = generate(recipe.train_examples, recipe.seed)
        held_out, eval_homes = generate(recipe.eval_examples, recipe.eval_seed, homes=max(20, recipe.eval_examples // 20))
        write_jsonl(data / "train.jsonl", examples)
        write_jsonl(data / "eval.jsonl", held_out)
        write_homes(data / "eval-homes.json", eval_homes)
        log("training the tokenizer")
        train_tokenizer(iter_text(examples), tok_dir, recipe.vocab_size)
    cfg = TrainConfig(out=out / "run", data=(data / "train.jsonl",), eval_data=data / "eval.jsonl",
                      model=recipe.model_config(), tokenizer=tok_dir, epochs=recipe.epochs,
                      batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.seed, save_dtype="bfloat16",
                      checkpoint_every=500, eval_every=1000, threads=recipe.threads)
    result = train(cfg, resume=resume, progress=progress)
    from ondol.home.evaluate import evaluate_generated

    scores = evaluate_generated(result.model_path, data / "eval.jsonl", data / "eval-homes.json")
    scores["recipe"] = name
    scores["wall_seconds"] = round(time.monotonic() - started, 1)
    (Path(result.model_path) / "eval.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    log(f"held-out exact match {scores['exact_match']:.2%} on {scores['examples']} examples; "
        f"model in {result.model_path}")
    return scores


__all__ = ["HomeRecipe", "RECIPES", "run_recipe"]
