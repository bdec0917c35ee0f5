"""Build a small demo checkpoint: ``python -m ondol.demo OUT_DIR``.

Until ondol ships its own trained on-device model, the README's first command needs *some* model
on a machine that can download none. This writes a complete Hugging Face folder — config.json,
model.safetensors, a byte-level BPE tokenizer trained here on a few Korean and English lines, a
chat template and generation_config.json — with **random weights**: it exercises the whole loading
and generation path, and its output is gibberish by construction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer

from ondol.tokenizer.gguf_vocab import LLAMA3_SPLIT

CORPUS = """거실 에어컨 24도로 맞춰줘
침실 불 다 꺼 줘
현관문 잠겼어?
TV 볼륨 조금만 줄여줘
세탁기 표준 코스로 시작해 줘
turn off all the bedroom lights
set the living room air conditioner to 24 degrees
is the front door locked?
turn the TV volume down a bit
start the washer on the normal cycle
안녕하세요, 무엇을 도와드릴까요?
Hello! How can I help you today?
""".splitlines()
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=600, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    bos = SPECIALS[0]
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                      special_tokens=[(bos, tok.token_to_id(bos))]),
    ])
    return tok


def build(out: Path, hidden: int = 256, layers: int = 4, seed: int = 0, dtype: torch.dtype = torch.bfloat16,
          shard_bytes: int | None = None, tokenizer: Tokenizer | None = None, head_dim: int = 32,
          kv_heads: int = 2, intermediate: int | None = None) -> Path:
    """Write the folder; ``shard_bytes`` splits the weights into shards with an index, as large
    published checkpoints are. Benchmarks pass a larger ``tokenizer`` (it must have the Llama 3
    special tokens) and a real model's shape."""
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer or build_tokenizer()
    vocab = tok.get_vocab_size(with_added_tokens=True)
    ids = {t: tok.token_to_id(t) for t in SPECIALS}
    heads, inter = hidden // head_dim, intermediate or int(hidden * 8 / 3) // 16 * 16
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 256},
        "tie_word_embeddings": True, "torch_dtype": str(dtype).removeprefix("torch."),
        "bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": [ids["<|end_of_text|>"], ids["<|eot_id|>"]],
    }
    g = torch.Generator().manual_seed(seed)

    def w(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.05).to(dtype)

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, dtype=dtype)

    tensors = {"model.embed_tokens.weight": w(vocab, hidden), "model.norm.weight": ones(hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": w(heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": w(kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": w(kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": w(hidden, heads * head_dim),
            p + "mlp.gate_proj.weight": w(inter, hidden), p + "mlp.up_proj.weight": w(inter, hidden),
            p + "mlp.down_proj.weight": w(hidden, inter),
            p + "input_layernorm.weight": ones(hidden), p + "post_attention_layernorm.weight": ones(hidden),
        }
    _save_weights(tensors, out, shard_bytes)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": SPECIALS[0], "eos_token": "<|eot_id|>", "chat_template": CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
    }, indent=2, ensure_ascii=False))
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
        "do_sample": True, "temperature": 0.7, "top_p": 0.9,
    }, indent=2))
    return out


def _save_weights(tensors: dict[str, torch.Tensor], out: Path, shard_bytes: int | None) -> None:
    if shard_bytes is None:
        save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        if size and size + t.nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, out / fname, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(shard, fname)
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a small random-weight demo checkpoint (HF folder).")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    path = build(args.out)
    print(f"wrote a random-weight demo model to {path}")


if __name__ == "__main__":
    main()
