"""The trainer (ondol/train): masking, overfitting, LoRA, resume, the saved folder, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from ondol import LLM
from ondol.cli import main
from ondol.config import ModelConfig
from ondol.demo import build_tokenizer
from ondol.engine.kv_cache import ContiguousKVCache
from ondol.model.attention import CausalAttention
from ondol.tokenizer import Tokenizer
from ondol.train import TrainConfig, TrainError, train
from ondol.train.lora import LoRALinear
from ondol.train.trainer import IGNORE, Example, collate, init_model, read_examples

ROOMS = ["거실", "침실", "주방", "현관"]
EXAMPLES = [{"prompt": f"{room} 에어컨 {t}도로 맞춰줘\n", "completion": json.dumps({"room": i, "temp": t})}
            for i, room in enumerate(ROOMS) for t in (18, 24)]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>",
                                                              "eos_token": "<|eot_id|>"}))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in EXAMPLES) + "\n")
    return path


def tiny(tokenizer_dir: Path, **changes) -> ModelConfig:
    vocab = Tokenizer.from_folder(tokenizer_dir).vocab_size
    return ModelConfig(architecture="llama", vocab_size=vocab, hidden_size=64, intermediate_size=160,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       rms_norm_eps=1e-5, max_position_embeddings=128, tie_word_embeddings=True).replace(**changes)


def logits_of(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([ids]), torch.arange(len(ids))[None], CausalAttention())[0]


def test_loss_only_on_completion_and_eos(tokenizer_dir, tmp_path):
    tok = Tokenizer.from_folder(tokenizer_dir)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "거실 불 꺼 줘\n", "completion": "turn off"}, ensure_ascii=False)
                    + "\n\n" + json.dumps({"text": "안녕하세요"}, ensure_ascii=False) + "\n")
    (pair, text), cut = read_examples(path, tok, 128)
    assert cut == 0 and pair.ids[0] == tok.bos_token_id and pair.ids[-1] == tok.eos_token_ids[0]
    tokens, labels = collate([pair, text])  # [2, T]
    targets = [int(t) for t in labels[0] if t != IGNORE]
    assert tok.decode(targets, skip_special_tokens=False) == "turn off<|eot_id|>"
    assert tokens[0, : len(pair.ids) - 1].tolist() == pair.ids[:-1]
    # text: every token after the first is a target; padding (the shorter row) is not
    assert labels[1].tolist() == text.ids[1:] + [IGNORE] * (labels.shape[1] - len(text.ids) + 1)


def test_right_padding_does_not_change_real_positions(tokenizer_dir):
    model = init_model(tiny(tokenizer_dir), seed=0)
    long, short = Example(list(range(5, 25)), 1), Example(list(range(30, 38)), 1)
    tokens, _ = collate([long, short])
    with torch.inference_mode():
        batched = model(tokens, torch.arange(tokens.shape[1]).expand_as(tokens), CausalAttention())
    torch.testing.assert_close(batched[1, :7], logits_of(model, short.ids[:-1]), atol=1e-5, rtol=1e-5)


def test_bad_data_is_a_clear_error(tokenizer_dir, tmp_path):
    tok = Tokenizer.from_folder(tokenizer_dir)
    with pytest.raises(TrainError, match="does not exist"):
        read_examples(tmp_path / "missing.jsonl", tok, 128)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(TrainError, match=r"bad\.jsonl:2: not valid JSON"):
        read_examples(bad, tok, 128)
    bad.write_text('{"prompt": "no completion"}\n')
    with pytest.raises(TrainError, match=r"bad\.jsonl:1: expected an object"):
        read_examples(bad, tok, 128)
    with pytest.raises(TrainError, match="exactly one of steps and epochs"):
        TrainConfig(out=tmp_path, data=bad, model=tiny(tokenizer_dir), tokenizer=tokenizer_dir)


def test_overfits_and_saves_a_folder_ondol_and_transformers_load(tokenizer_dir, data, tmp_path):
    cfg = TrainConfig(out=tmp_path / "run", data=(data,), eval_data=data, model=tiny(tokenizer_dir),
                      tokenizer=tokenizer_dir, steps=60, batch_size=4, lr=3e-3, eval_every=30, threads=1)
    result = train(cfg, progress=False)
    history = [loss for _, loss in result.metrics["train_loss_history"]]
    print(f"\ntiny model: {result.tokens_per_second:,.0f} tokens/s; loss {history[0]:.2f} -> {result.final_loss:.2f}")
    assert history[0] > 5 and result.eval_loss < 0.5 and len(result.metrics["eval_loss_history"]) == 2
    assert result.plot_path.stat().st_size > 1000 and json.loads(result.metrics_path.read_text())["steps"] == 60

    folder = result.model_path
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert {"tokenizer.json", "generation_config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    llm = LLM(folder)
    ids = llm.tokenizer.encode(EXAMPLES[0]["prompt"])
    with torch.inference_mode():
        ours = llm.model(torch.tensor([ids]), torch.arange(len(ids))[None], ContiguousKVCache(llm.config, 64, torch.float32))
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[0], logits_of(result.model, ids), atol=1e-5, rtol=1e-5)


def test_lora_trains_only_adapters_and_merges_on_save(tiny_model_dir, data, tmp_path):
    cfg = TrainConfig(out=tmp_path / "lora", data=data, init_from=tiny_model_dir, steps=12, batch_size=4,
                      lr=1e-2, lora_rank=4, threads=1)
    result = train(cfg, progress=False)
    base = load_file(tiny_model_dir / "model.safetensors")
    adapters = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert adapters and all(n.endswith((".lora_A", ".lora_B")) for n in adapters)
    assert len(adapters) == 2 * 7 * 2  # q/k/v/o/gate/up/down in each of 2 layers
    lora = result.model.model.layers[0].self_attn.q_proj
    assert isinstance(lora, LoRALinear) and lora.lora_B.abs().max() > 0  # trained
    torch.testing.assert_close(lora.weight, base["model.layers.0.self_attn.q_proj.weight"])  # base frozen
    saved = load_file(result.model_path / "model.safetensors")
    assert set(saved) == set(base) - {"lm_head.weight"}  # no adapter tensors; tied head once
    assert not torch.equal(saved["model.layers.0.self_attn.q_proj.weight"], lora.weight)  # merged
    llm = LLM(result.model_path)
    ids = llm.tokenizer.encode(EXAMPLES[3]["prompt"])
    with torch.inference_mode():
        merged = llm.model(torch.tensor([ids]), torch.arange(len(ids))[None], CausalAttention())[0]
    torch.testing.assert_close(merged, logits_of(result.model, ids), atol=1e-4, rtol=1e-4)


def test_full_finetune_from_a_checkpoint_leaves_its_files_alone(tiny_model_dir, data, tmp_path):
    before = (tiny_model_dir / "model.safetensors").read_bytes()
    result = train(TrainConfig(out=tmp_path / "ft", data=data, init_from=tiny_model_dir, steps=2, batch_size=4,
                               lr=1e-3, threads=1), progress=False)
    assert (tiny_model_dir / "model.safetensors").read_bytes() == before  # weights are a private map
    saved, base = (load_file(p / "model.safetensors") for p in (result.model_path, tiny_model_dir))
    assert set(saved) == set(base) - {"lm_head.weight"}
    assert all(not torch.equal(saved[n], base[n]) for n in saved if n.endswith("proj.weight"))


def test_resume_continues_exactly(tokenizer_dir, data, tmp_path):
    def run(out: Path, **kw):
        cfg = TrainConfig(out=out, data=data, model=tiny(tokenizer_dir, tie_word_embeddings=False),
                          tokenizer=tokenizer_dir, steps=8, batch_size=3, lr=3e-3, checkpoint_every=4, threads=1)
        return train(cfg, progress=False, **kw)

    straight = run(tmp_path / "a")
    first = run(tmp_path / "b", stop_after=6)  # stops between checkpoints: writes one at step 6
    assert first.model_path is None and json.loads((tmp_path / "b/checkpoint/state.json").read_text())["step"] == 6
    with pytest.raises(TrainError, match="already holds a checkpoint"):
        run(tmp_path / "b")
    resumed = run(tmp_path / "b", resume=True)
    losses = [[loss for _, loss in r.metrics["train_loss_history"]] for r in (straight, resumed)]
    assert len(losses[1]) == 8 and losses[1] == pytest.approx(losses[0], rel=1e-5)
    a, b = (load_file(r.model_path / "model.safetensors") for r in (straight, resumed))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    with pytest.raises(TrainError, match="different settings"):
        train(TrainConfig(out=tmp_path / "b", data=data, model=tiny(tokenizer_dir, tie_word_embeddings=False),
                          tokenizer=tokenizer_dir, steps=8, batch_size=3, lr=1e-3, threads=1), resume=True, progress=False)


def test_cli_trains_end_to_end(tokenizer_dir, data, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
                                  "tie_word_embeddings": True}))
    out = tmp_path / "cli"
    args = ["train", "--out", str(out), "--data", str(data), "--config", str(config), "--tokenizer",
            str(tokenizer_dir), "--steps", "4", "--batch-size", "4", "--save-dtype", "bfloat16", "--bf16", "--threads", "1"]
    assert main(args) == 0
    assert "model: " in capsys.readouterr().out
    assert json.loads((out / "model/config.json").read_text())["torch_dtype"] == "bfloat16"
    assert LLM(out / "model").config.hidden_size == 32
    assert main([*args[:4], str(tmp_path / "nope.jsonl"), *args[5:]]) == 1
    assert "nope.jsonl does not exist" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--data", str(data), "--steps", "2"]) == 1
    assert "--init MODEL" in capsys.readouterr().err


def test_cli_unknown_recipe_lists_the_names(capsys):
    pytest.importorskip("ondol.train.recipes")
    assert main(["train", "--recipe", "no-such-recipe"]) == 1
    assert "Unknown recipe 'no-such-recipe'; available:" in capsys.readouterr().err
