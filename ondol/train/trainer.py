"""``train(cfg)``: train ondol's own LlamaForCausalLM from scratch or fine-tune a checkpoint, on CPU.

Data is JSONL: ``{"prompt", "completion"}`` lines (loss on the completion and the EOS appended to
it) or ``{"text"}`` lines (loss on every token). Examples are short, so a batch is padded on the
right to its longest example, and examples are bucketed by length to waste little on padding.
AdamW with linear warmup and cosine decay to ``min_lr_ratio``, gradient clipping, optional bf16
autocast (the weights and optimizer state stay float32), optional LoRA (``lora.py``).

``out/`` receives ``model/`` (a Hugging Face folder both ondol and transformers load),
``checkpoint/`` (safetensors + JSON, never pickle; written atomically, ``resume=True`` continues
bit for bit), ``metrics.json`` and ``loss.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ondol.config import ModelConfig, RopeConfig
from ondol.errors import OndolError
from ondol.model import LlamaForCausalLM
from ondol.model.attention import CausalAttention
from ondol.tokenizer import Tokenizer
from ondol.train.lora import add_lora, merged_state_dict

if TYPE_CHECKING:
    from ondol.train.progress import Reporter

EMA = 0.9  # smoothing of the reported train loss (bias-corrected): ~10 steps of memory
IGNORE = -100  # label of a position that carries no loss (prompt, padding)
SAVE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Fields that may change between a run and its resumption: none of them changes what is computed.
RESUMABLE_CHANGES = ("out", "checkpoint_every", "eval_every", "log_every", "threads")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json")
HF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


class TrainError(OndolError):
    """Bad training input: a missing or malformed data file, an inconsistent config, a bad resume."""


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    data: tuple[Path, ...]  # JSONL files, read in order
    eval_data: Path | None = None
    # Exactly one of: a ModelConfig + a tokenizer folder (from scratch), or an HF folder (fine-tune).
    model: ModelConfig | None = None
    tokenizer: Path | None = None
    init_from: Path | None = None
    steps: int | None = None  # exactly one of steps and epochs
    epochs: int | None = None
    batch_size: int = 32  # examples per step
    lr: float = 1e-3
    warmup_steps: int | None = None  # None: 5% of the steps
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.1  # on matrices only, never on norms or biases
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    # bfloat16 autocast (weights and optimizer state stay float32). Off by default: without AMX a
    # CPU's bf16 matmuls are no faster than float32, and the casts made training ~20% slower.
    bf16: bool = False
    seed: int = 0
    lora_rank: int = 0  # 0: train every weight; r > 0: LoRA on q/k/v/o/gate/up/down, base frozen
    lora_alpha: float = 16.0
    checkpoint_every: int = 0  # steps; 0: no checkpoints (the final model is written either way)
    eval_every: int = 0  # steps; 0: evaluate only at the end (when eval_data is given)
    log_every: int = 10  # steps between log lines when stderr is not a terminal
    threads: int | None = None  # torch threads; None leaves torch's default
    save_dtype: str = "float32"  # or "bfloat16": half the size

    def __post_init__(self) -> None:
        data = (self.data,) if isinstance(self.data, (str, Path)) else self.data
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("out", Path(self.out))
        set_("data", tuple(Path(p) for p in data))
        for name in ("eval_data", "tokenizer", "init_from"):
            if getattr(self, name) is not None:
                set_(name, Path(getattr(self, name)))
        set_("betas", tuple(self.betas))
        if not self.data:
            raise TrainError("No training data: give at least one JSONL file.")
        if (self.init_from is None) == (self.model is None):
            raise TrainError("Give either a model config and a tokenizer (from scratch) or init_from (fine-tune).")
        if self.model is not None and self.tokenizer is None:
            raise TrainError("Training from scratch needs a tokenizer folder (tokenizer.json).")
        if (self.steps is None) == (self.epochs is None):
            raise TrainError("Give exactly one of steps and epochs.")
        for name in ("steps", "epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TrainError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.lora_rank < 0:
            raise TrainError("lr must be positive, min_lr_ratio in [0, 1] and lora_rank non-negative.")
        if self.save_dtype not in SAVE_DTYPES:
            raise TrainError(f"save_dtype must be one of {', '.join(SAVE_DTYPES)}, not {self.save_dtype!r}.")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d, default=str))  # Paths as strings, tuples as lists


@dataclass
class TrainResult:
    model_path: Path | None  # None when the run stopped early (stop_after) before its last step
    metrics_path: Path
    plot_path: Path | None  # None when matplotlib is not installed
    checkpoint_path: Path | None
    steps: int
    final_loss: float  # smoothed train loss at the last step
    eval_loss: float | None
    tokens_per_second: float
    wall_time: float  # seconds, over all runs of a resumed training
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    # The trained model, float32 and unmerged (LoRA adapters still separate), in eval mode.
    model: torch.nn.Module | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Example:
    ids: list[int]  # the whole sequence: BOS (if the tokenizer adds it) ... EOS
    start: int  # index of the first token that carries loss (>= 1: the first token has no context)


# --- Data ---------------------------------------------------------------------------------------


def read_examples(path: Path, tokenizer: Tokenizer, max_len: int) -> tuple[list[Example], int]:
    """Examples of one JSONL file and how many were cut to ``max_len`` tokens."""
    if not path.is_file():
        raise TrainError(f"Data file {path} does not exist.")
    eos = tokenizer.eos_token_ids[0] if tokenizer.eos_token_ids else None
    if eos is None:
        raise TrainError("The tokenizer has no end-of-sequence token to end examples with.")
    examples, cut = [], 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise TrainError(f"{where}: not valid JSON: {e.msg}.") from None
            ex = _tokenize(record, where, tokenizer, eos)
            if len(ex.ids) > max_len:
                cut += 1
                if ex.start >= max_len:
                    continue  # nothing left to learn from
                ex = Example(ex.ids[:max_len], ex.start)
            examples.append(ex)
    return examples, cut


def _tokenize(record: Any, where: str, tokenizer: Tokenizer, eos: int) -> Example:
    if isinstance(record, dict) and set(record) >= {"prompt", "completion"}:
        prompt, completion = record["prompt"], record["completion"]
        if not (isinstance(prompt, str) and isinstance(completion, str)):
            raise TrainError(f"{where}: prompt and completion must be strings.")
        # Encode the concatenated text, as it will be seen; the completion starts after the longest
        # prefix shared with the prompt alone (a merge across the boundary belongs to the completion).
        ids = tokenizer.encode(prompt + completion)
        head = tokenizer.encode(prompt)
        start = next((i for i, (a, b) in enumerate(zip(head, ids)) if a != b), min(len(head), len(ids)))
        return Example(ids + [eos], max(start, 1))
    if isinstance(record, dict) and "text" in record:
        if not isinstance(record["text"], str):
            raise TrainError(f"{where}: text must be a string.")
        return Example(tokenizer.encode(record["text"]) + [eos], 1)
    raise TrainError(f'{where}: expected an object with "prompt" and "completion", or with "text".')


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Example indices of every batch of one epoch: a seeded shuffle, then within windows of 64
    batches a sort by length (little padding), then a shuffle of the batches. The count is the same
    every epoch, and each epoch's order depends only on (seed, epoch): resuming needs just the step."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    window, batches = batch_size * 64, []
    for s in range(0, len(order), window):
        chunk = sorted(order[s : s + window], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def collate(batch: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens, labels: int64 [B, T], T = longest example - 1, right-padded. labels[b, i] is the
    token after position i, or IGNORE where no loss is wanted (prompt, padding)."""
    t = max(len(e.ids) for e in batch) - 1
    tokens = torch.zeros(len(batch), t, dtype=torch.int64)  # pad id 0: never attended to by a real token
    labels = torch.full((len(batch), t), IGNORE, dtype=torch.int64)
    for b, e in enumerate(batch):
        n = len(e.ids) - 1
        tokens[b, :n] = torch.tensor(e.ids[:-1])
        labels[b, e.start - 1 : n] = torch.tensor(e.ids[e.start :])
    return tokens, labels


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warmup to lr, then cosine decay to lr * min_lr_ratio at the last step."""
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, total // 20)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


# --- Model --------------------------------------------------------------------------------------


def init_model(config: ModelConfig, seed: int) -> LlamaForCausalLM:
    """A float32 model with fresh weights: linear and embedding N(0, 0.02), norms 1, biases 0."""
    with torch.device("meta"):
        model = LlamaForCausalLM(config)  # no allocation, no wasted default init
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif p.dim() == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=g)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def build_model(cfg: TrainConfig) -> tuple[LlamaForCausalLM, Tokenizer, Path, dict[str, Any]]:
    """(model in train mode, tokenizer, the folder its files come from, config.json to save)."""
    if cfg.init_from is not None:
        from ondol.loaders import find, load

        kind, _ = find(cfg.init_from)
        if kind != "hf":
            raise TrainError("Fine-tuning starts from a Hugging Face folder (config.json + safetensors), not GGUF.")
        loaded = load(cfg.init_from, dtype=torch.float32, progress=False)
        model, tokenizer, source = loaded.model, loaded.tokenizer, cfg.init_from
        hf = json.loads((source / "config.json").read_text(encoding="utf-8"))
        for p in model.parameters():
            # a private copy-on-write map: training writes anonymous pages, never the file
            p.requires_grad_(True)
    else:
        assert cfg.model is not None and cfg.tokenizer is not None
        tokenizer, source = Tokenizer.from_folder(cfg.tokenizer), cfg.tokenizer
        if tokenizer.vocab_size > cfg.model.vocab_size:
            raise TrainError(f"The tokenizer has {tokenizer.vocab_size} tokens but the model only "
                             f"vocab_size={cfg.model.vocab_size}.")
        model = init_model(cfg.model, cfg.seed)
        hf = hf_config(cfg.model, tokenizer)
    if cfg.lora_rank:
        add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.seed)
    return model.train(), tokenizer, source, hf


def hf_config(mc: ModelConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    """config.json for a model trained from scratch, as transformers writes it."""
    d: dict[str, Any] = {
        "architectures": [HF_ARCHITECTURES[mc.architecture]], "model_type": mc.architecture,
        "vocab_size": mc.vocab_size, "hidden_size": mc.hidden_size, "intermediate_size": mc.intermediate_size,
        "num_hidden_layers": mc.num_hidden_layers, "num_attention_heads": mc.num_attention_heads,
        "num_key_value_heads": mc.num_key_value_heads, "head_dim": mc.head_dim, "hidden_act": "silu",
        "rms_norm_eps": mc.rms_norm_eps, "max_position_embeddings": mc.max_position_embeddings,
        "rope_theta": mc.rope.theta, "tie_word_embeddings": mc.tie_word_embeddings,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": list(tokenizer.eos_token_ids),
    }
    if mc.architecture == "llama":
        if mc.qkv_bias != mc.o_bias:
            raise TrainError("A Llama model has biases on all of q/k/v/o or on none.")
        d |= {"attention_bias": mc.qkv_bias, "mlp_bias": mc.mlp_bias}
    if mc.architecture == "qwen2":
        d["use_sliding_window"] = mc.sliding_window is not None
    if mc.sliding_window is not None:
        d["sliding_window"] = mc.sliding_window
    if mc.rope != RopeConfig(theta=mc.rope.theta):
        r = mc.rope
        d["rope_scaling"] = {"rope_type": r.type, "factor": r.factor, "low_freq_factor": r.low_freq_factor,
                             "high_freq_factor": r.high_freq_factor,
                             "original_max_position_embeddings": r.original_max_position_embeddings}
    return d


def save_model(out: Path, model: LlamaForCausalLM, source: Path, hf: dict[str, Any], dtype: str) -> Path:
    """Write the (LoRA-merged) model as a Hugging Face folder, atomically: out/model."""
    final, tmp = out / "model", out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {k: v.to(SAVE_DTYPES[dtype]).contiguous() for k, v in merged_state_dict(model).items()}
    save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
    hf = {**hf, "torch_dtype": dtype}
    hf.pop("dtype", None)  # newer transformers spell it "dtype"; keep one, the value just written
    (tmp / "config.json").write_text(json.dumps(hf, indent=2))
    for name in TOKENIZER_FILES + ("generation_config.json",):
        if (source / name).is_file():
            shutil.copy(source / name, tmp / name)
    if not (tmp / "generation_config.json").exists():
        gen = {"bos_token_id": hf.get("bos_token_id"), "eos_token_id": hf.get("eos_token_id")}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
    _replace_dir(tmp, final)
    return final


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move tmp to final; a crash leaves either the old folder (maybe as final.old) or the new one."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


# --- Checkpoints --------------------------------------------------------------------------------


def save_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """out/checkpoint: trainable weights and AdamW moments as safetensors, the rest as JSON.

    Only trainable tensors are saved (with LoRA, the adapters): the frozen rest is rebuilt from
    init_from on resume."""
    final, tmp = out / "checkpoint", out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    save_file({n: p.detach().contiguous() for n, p in trainable.items()}, tmp / "model.safetensors")
    names = {id(p): n for n, p in trainable.items()}
    moments = {"rng.torch": torch.get_rng_state()}
    for p, s in opt.state.items():  # AdamW: step (a scalar tensor), exp_avg, exp_avg_sq
        moments |= {f"{names[id(p)]}.{k}": v.detach().clone() for k, v in s.items()}
    save_file(moments, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps(state))
    _replace_dir(tmp, final)
    return final


def load_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    folder = out / "checkpoint"
    if not (folder / "state.json").exists() and (out / "checkpoint.old" / "state.json").exists():
        folder = out / "checkpoint.old"  # a crash between the two renames of _replace_dir
    if not (folder / "state.json").exists():
        raise TrainError(f"Nothing to resume: {out} holds no checkpoint.")
    state = json.loads((folder / "state.json").read_text())
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    weights = load_file(folder / "model.safetensors")
    if set(weights) != set(trainable):
        raise TrainError(f"The checkpoint in {folder} does not match this model (different trainable tensors).")
    moments = load_file(folder / "optimizer.safetensors")
    torch.set_rng_state(moments.pop("rng.torch"))
    with torch.no_grad():
        for name, p in trainable.items():
            p.copy_(weights[name])
    for key, value in moments.items():
        name, _, k = key.rpartition(".")
        opt.state[trainable[name]][k] = value
    return state


# --- Training -----------------------------------------------------------------------------------


def evaluate(model: torch.nn.Module, examples: list[Example], batch_size: int, attn: CausalAttention,
             bf16: bool) -> float:
    """Mean loss per target token over all examples."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(order), batch_size):
            tokens, labels = collate([examples[i] for i in order[s : s + batch_size]])
            logits = model(tokens, _positions(tokens), attn)
            total += F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE,
                                     reduction="sum").item()
            count += int((labels != IGNORE).sum())
    return total / max(count, 1)


def _positions(tokens: torch.Tensor) -> torch.Tensor:
    return torch.arange(tokens.shape[1]).expand_as(tokens)


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train as ``cfg`` says and write out/model, metrics.json and loss.png.

    ``resume`` continues from out/checkpoint with the same data order and LR schedule. ``stop_after``
    ends the run after that step as an interruption would (a checkpoint is written there), for
    training in time-boxed pieces. ``progress``: a progress bar on a terminal, log lines otherwise.
    """
    from ondol.train.progress import Reporter

    if not resume and (cfg.out / "checkpoint").exists():
        raise TrainError(f"{cfg.out} already holds a checkpoint; resume it or choose another output folder.")
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    report = Reporter(progress, cfg.log_every)
    try:
        return _train(cfg, resume, report, stop_after)
    finally:
        report.stop()  # also on an error or Ctrl-C: never leave the terminal inside a live display
        torch.set_num_threads(previous_threads)


def _train(cfg: TrainConfig, resume: bool, report: Reporter, stop_after: int | None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    model, tokenizer, source, hf = build_model(cfg)
    mc: ModelConfig = model.config
    examples, cut = [], 0
    for path in cfg.data:
        more, n = read_examples(path, tokenizer, mc.max_position_embeddings)
        examples, cut = examples + more, cut + n
    if not examples:
        raise TrainError(f"No examples in {', '.join(map(str, cfg.data))}.")
    evals = read_examples(cfg.eval_data, tokenizer, mc.max_position_embeddings)[0] if cfg.eval_data else []
    lengths = [len(e.ids) for e in examples]
    per_epoch = len(epoch_batches(lengths, cfg.batch_size, cfg.seed, 0))
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    attn = CausalAttention(mc.sliding_window)
    state: dict[str, Any] = {"step": 0, "train_loss": [], "eval_loss": [], "lr": [], "tokens": 0,
                             "train_seconds": 0.0, "wall_time": 0.0, "ema": 0.0}
    if resume:
        state = load_checkpoint(cfg.out, model, opt)
        _check_same_run(cfg, state["config"])
    cfg.out.mkdir(parents=True, exist_ok=True)
    trainable = sum(p.numel() for p in params)
    report.start(total, state["step"], f"{sum(lengths):,} tokens in {len(examples):,} examples, "
                 f"{per_epoch} batches/epoch, {total} steps; {trainable:,} trainable parameters"
                 + (f"; {cut} examples cut to {mc.max_position_embeddings} tokens" if cut else ""))
    begin = time.perf_counter() - state["wall_time"]
    end = total if stop_after is None else min(total, stop_after)
    batches, batches_epoch = None, -1
    step = state["step"]
    while step < end:
        epoch, index = divmod(step, per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch), epoch
        tick = time.perf_counter()
        tokens, labels = collate([examples[i] for i in batches[index]])
        lr = lr_at(cfg, step, total)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = model(tokens, _positions(tokens), attn)  # float32 [B, T, V]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        value = loss.item()
        state["train_seconds"] += time.perf_counter() - tick
        state["tokens"] += sum(len(examples[i].ids) - 1 for i in batches[index])  # real tokens, not padding
        state["ema"] = EMA * state["ema"] + (1 - EMA) * value
        state["train_loss"].append([step, value])
        state["lr"].append([step, lr])
        smoothed = state["ema"] / (1 - EMA**step)
        report.step(step, smoothed, lr, state["tokens"] / state["train_seconds"])
        if evals and (step == total or (cfg.eval_every and step % cfg.eval_every == 0)):
            model.eval()
            state["eval_loss"].append([step, evaluate(model, evals, cfg.batch_size, attn, cfg.bf16)])
            model.train()
            report.note(f"step {step}: eval loss {state['eval_loss'][-1][1]:.4f}")
        if step == end or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            state["step"], state["wall_time"] = step, time.perf_counter() - begin
            if cfg.checkpoint_every or step < total:  # an interrupted run must be resumable
                save_checkpoint(cfg.out, model, opt, {**state, "config": cfg.to_json(), "epoch": epoch,
                                                     "batch": index + 1, "total_steps": total})
    state["step"], state["wall_time"] = step, time.perf_counter() - begin
    report.stop()
    return _finish(cfg, model, source, hf, state, total, trainable, len(examples))


def _finish(cfg: TrainConfig, model: torch.nn.Module, source: Path, hf: dict[str, Any], state: dict[str, Any],
            total: int, trainable: int, n_examples: int) -> TrainResult:
    from ondol.train.plot import plot_losses

    model_path = save_model(cfg.out, model, source, hf, cfg.save_dtype) if state["step"] == total else None
    step = state["step"]
    final = state["ema"] / (1 - EMA**step) if step else float("nan")
    eval_loss = state["eval_loss"][-1][1] if state["eval_loss"] else None
    tps = state["tokens"] / state["train_seconds"] if state["train_seconds"] else 0.0
    metrics = {
        "steps": step, "total_steps": total, "examples": n_examples, "tokens": state["tokens"],
        "tokens_per_second": tps, "wall_time": state["wall_time"], "train_seconds": state["train_seconds"],
        "final_loss": final, "eval_loss": eval_loss, "trainable_parameters": trainable,
        "train_loss_history": state["train_loss"], "eval_loss_history": state["eval_loss"], "lr_history": state["lr"],
        "config": cfg.to_json(),
    }
    metrics_path = cfg.out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=1))
    plot_path = cfg.out / "loss.png"
    title = f"{cfg.out.name}: {step} steps, {state['tokens']:,} tokens"
    drawn = plot_losses(plot_path, [tuple(x) for x in state["train_loss"]], [tuple(x) for x in state["eval_loss"]],
                        title)
    checkpoint = cfg.out / "checkpoint"
    return TrainResult(
        model_path=model_path, metrics_path=metrics_path,
        plot_path=plot_path if drawn else None, checkpoint_path=checkpoint if checkpoint.exists() else None,
        steps=step, final_loss=final, eval_loss=eval_loss, tokens_per_second=tps, wall_time=state["wall_time"],
        metrics=metrics, model=model.eval(),
    )


def _check_same_run(cfg: TrainConfig, saved: dict[str, Any]) -> None:
    now = cfg.to_json()
    changed = [k for k in now if k not in RESUMABLE_CHANGES and now[k] != saved.get(k)]
    if changed:
        raise TrainError(f"Cannot resume: the checkpoint was written with different settings ({', '.join(changed)}); "
                         "resuming must repeat the run's own settings.")
