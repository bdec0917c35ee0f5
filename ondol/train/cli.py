"""``ondol train``: train a model from scratch or fine-tune one, or run a named recipe.

    ondol train --out DIR --data FILE [FILE ...] (--init MODEL | --config CONFIG.json --tokenizer DIR)
                [--steps N | --epochs E] [--eval FILE] [--batch-size B] [--lr LR] [--lora-rank R] ...
    ondol train --recipe NAME [--out DIR (default runs/NAME)] [--resume] [--threads N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ondol.cli import _positive_int
from ondol.errors import OndolError


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a model from scratch or fine-tune one on JSONL data (CPU)")
    t.add_argument("--recipe", metavar="NAME", help="run a named recipe (its own data and settings)")
    t.add_argument("--out", type=Path, metavar="DIR", help="output folder: model/, checkpoint/, metrics.json, loss.png "
                                                             "(with --recipe, default runs/NAME)")
    t.add_argument("--data", type=Path, nargs="+", action="extend", metavar="FILE",
                   help='JSONL training data: {"prompt", "completion"} or {"text"} per line')
    t.add_argument("--eval", type=Path, metavar="FILE", help="held-out JSONL data for the eval loss")
    t.add_argument("--init", type=Path, metavar="MODEL", help="fine-tune this Hugging Face model folder")
    t.add_argument("--config", type=Path, metavar="CONFIG.json", help="train from scratch: a config.json for the model")
    t.add_argument("--tokenizer", type=Path, metavar="DIR", help="with --config: the folder holding tokenizer.json")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive_int, help="optimizer steps")
    length.add_argument("--epochs", type=_positive_int, help="passes over the data")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="examples per step (default 32)")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    t.add_argument("--warmup-steps", type=int, help="linear warmup steps (default 5%% of the steps)")
    t.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices (default 0.1)")
    t.add_argument("--lora-rank", type=int, default=0, help="LoRA rank; 0 (default) trains every weight")
    t.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha (default 16)")
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="bfloat16 autocast, weights stay float32 (default off: faster only on CPUs with AMX)")
    t.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data order")
    t.add_argument("--checkpoint-every", type=int, default=0, metavar="N", help="write a checkpoint every N steps")
    t.add_argument("--eval-every", type=int, default=0, metavar="N", help="eval loss every N steps (and at the end)")
    t.add_argument("--threads", type=_positive_int, help="CPU threads (default: torch's choice)")
    t.add_argument("--save-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="dtype of the saved model (default float32)")
    t.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint with the same settings")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> int:
    if args.recipe:
        return _recipe(args)
    from ondol.train.trainer import TrainConfig, train

    if args.out is None or not args.data:
        raise OndolError("ondol train needs --out DIR and --data FILE (or --recipe NAME).")
    if (args.init is None) == (args.config is None):
        raise OndolError("Give either --init MODEL (fine-tune) or --config CONFIG.json --tokenizer DIR (from scratch).")
    if args.steps is None and args.epochs is None:
        raise OndolError("Give --steps N or --epochs E.")
    model = _model_config(args.config, args.tokenizer) if args.config else None
    cfg = TrainConfig(
        out=args.out, data=tuple(args.data), eval_data=args.eval, model=model, tokenizer=args.tokenizer,
        init_from=args.init, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, bf16=args.bf16, seed=args.seed,
        lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every, threads=args.threads, save_dtype=args.save_dtype,
    )
    _print_result(train(cfg, resume=args.resume, progress=not args.quiet))
    return 0


def _model_config(path: Path, tokenizer: Path | None):
    """A ModelConfig from a config.json; architectures defaults to Llama and vocab_size to the
    tokenizer's size, so a from-scratch config can say just the shape."""
    from ondol.config import ModelConfig
    from ondol.tokenizer import Tokenizer

    if tokenizer is None:
        raise OndolError("--config needs --tokenizer DIR (the folder holding tokenizer.json).")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OndolError(f"Model config {path} does not exist.") from None
    except json.JSONDecodeError as e:
        raise OndolError(f"{path} is not valid JSON: {e}.") from None
    if not isinstance(raw, dict):
        raise OndolError(f"{path} is not a JSON object.")
    raw.setdefault("architectures", ["LlamaForCausalLM"])
    if "vocab_size" not in raw:
        raw["vocab_size"] = Tokenizer.from_folder(tokenizer).vocab_size
    return ModelConfig.from_hf(raw)


def _recipe(args: argparse.Namespace) -> int:
    from ondol.train.recipes import RECIPES, run_recipe

    if args.recipe not in RECIPES:
        raise OndolError(f"Unknown recipe {args.recipe!r}; available: {', '.join(sorted(RECIPES)) or 'none'}.")
    given = [f for f in ("data", "eval", "init", "config", "tokenizer", "steps", "epochs") if getattr(args, f)]
    if given:
        raise OndolError(f"--recipe sets its own data and model; drop --{', --'.join(given)}.")
    overrides = {"threads": args.threads} if args.threads else {}
    out = args.out if args.out is not None else Path("runs") / args.recipe
    result = run_recipe(args.recipe, out, progress=not args.quiet, resume=args.resume, **overrides)
    if isinstance(result, dict):
        print(json.dumps(result, ensure_ascii=False, indent=2))
    _print_result(result)
    return 0


def _print_result(result) -> None:
    from ondol.train.trainer import TrainResult

    if not isinstance(result, TrainResult):
        return
    evals = f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""
    print(f"trained {result.steps} steps in {result.wall_time:.0f}s ({result.tokens_per_second:,.0f} tokens/s): "
          f"loss {result.final_loss:.4f}{evals}")
    if result.model_path is not None:
        print(f"model: {result.model_path}")
    print(f"metrics: {result.metrics_path}" + (f", loss curve: {result.plot_path}" if result.plot_path else ""))
