"""Quantized models end to end: quantizing at load, ``ondol quantize`` folders, and what each does
with a bad request, against the same model with its weights passed through the same rounding."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from ondol.cli import main
from ondol.engine.kv_cache import ContiguousKVCache
from ondol.errors import ModelFormatError, OndolError, UnsupportedModelError
from ondol.engine.sampler import SamplingParams
from ondol.llm import LLM
from ondol.loaders import load
from ondol.quant.formats import QuantSpec, quantize
from ondol.quant.modules import QuantEmbedding, QuantLinear

TOKENS = torch.tensor([5, 77, 140, 9, 33, 250, 18, 61, 7, 90])


def run(model, tokens: torch.Tensor = TOKENS) -> torch.Tensor:
    """Logits [T, V]: a prefill, then two one-token decode steps."""
    cache = ContiguousKVCache(model.config, len(tokens), model.dtype)
    split = len(tokens) - 2
    out = [model(tokens[None, :split], torch.arange(split)[None], cache)[0]]
    for t in range(split, len(tokens)):
        out.append(model(tokens[None, t : t + 1], torch.tensor([[t]]), cache)[0])
    return torch.cat(out)


def rounded(folder, spec: QuantSpec):
    """The full-precision model with each weight the spec quantizes replaced by its rounding."""
    plain = load(folder, dtype="float32", progress=False)
    tie = plain.config.tie_word_embeddings
    with torch.no_grad():
        for name, p in plain.model.named_parameters():
            module = name.rpartition(".")[0]
            chosen = (".layers." in name and p.dim() == 2) or (module == "lm_head" and spec.head) or \
                (module == "model.embed_tokens" and (spec.head if tie else spec.embeddings))
            group = spec.group_for(p.shape[-1]) if p.dim() == 2 else None
            if chosen and group:
                p.copy_(quantize(p, spec.bits, group, spec.symmetric).dequantize())
    return plain


SPECS = {"int8": QuantSpec.named("int8"), "int4": QuantSpec.named("int4"),
         "int4-g32-sym": QuantSpec.named("int4", 32, symmetric=True),
         "int8-keep-head": QuantSpec.named("int8", head=False, embeddings=False)}


@pytest.mark.parametrize("shape", ["llama3.2", "llama2"])
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_quantized_at_load_equals_the_model_with_rounded_weights(shape, spec_name, checkpoints):
    folder = checkpoints[shape][0]
    spec = SPECS[spec_name]
    got = load(folder, dtype="float32", progress=False, quant=spec, kernels="reference")
    linears = [m for m in got.model.modules() if isinstance(m, QuantLinear)]
    assert len(linears) == 7 * got.config.num_hidden_layers + spec.head
    assert isinstance(got.model.model.embed_tokens, QuantEmbedding) == \
        (spec.head if got.config.tie_word_embeddings else spec.embeddings)
    want = run(rounded(folder, spec).model)
    assert (run(got.model) - want).abs().max().item() <= 1e-4 * want.abs().max().item()
    # and close to the unquantized model: 4 bits are coarse on these tiny random weights
    plain = run(load(folder, dtype="float32", progress=False).model)
    rel = ((run(got.model) - plain).abs().max() / plain.std()).item()
    assert rel < (0.2 if spec.bits == 8 else 1.5), rel  # per-row int8 is coarser than Q8_0 (test_gguf.py)


def test_tied_head_shares_the_embedding_table(checkpoints):
    got = load(checkpoints["llama3.2"][0], progress=False, quant="int4")
    assert got.model.lm_head.qweight.data_ptr() == got.model.model.embed_tokens.qweight.data_ptr()
    assert not any(isinstance(m, (nn.Linear, nn.Embedding)) for m in got.model.modules())


@pytest.mark.parametrize("to", ["int8", "int4"])
def test_quantize_command_writes_a_folder_that_loads_to_the_same_model(to, checkpoints, tmp_path, capsys):
    src = checkpoints["llama2"][0]
    out = tmp_path / f"q-{to}"
    assert main(["quantize", str(src), str(out), "--to", to]) == 0
    said = capsys.readouterr().out
    assert f"as int{to[-1]}" in said and "MB ->" in said
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == QuantSpec.named(to).to_json()
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / f).read_bytes() == (src / f).read_bytes()
    size = (out / "model.safetensors").stat().st_size
    assert size < (src / "model.safetensors").stat().st_size * (0.4 if to == "int8" else 0.25)
    folder = load(out, dtype="float32", progress=False, kernels="reference")
    at_load = load(src, dtype="float32", progress=False, quant=to, kernels="reference")
    assert torch.equal(run(folder.model), run(at_load.model))
    assert folder.checkpoint.quantized and folder.checkpoint.quant == QuantSpec.named(to)
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["quantization"]["bits"] == int(to[-1]) and info["memory_weights_bytes"] == size


def test_a_quantized_folder_generates_korean_through_the_llm_api(checkpoints, tmp_path):
    out = tmp_path / "q"
    main(["quantize", str(checkpoints["llama3.2"][0]), str(out), "--to", "int4", "--group-size", "32"])
    llm = LLM(out, progress=False)
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    got = llm.generate("거실 에어컨", params)
    assert len(got.token_ids) == 8 and llm.generate("거실 에어컨", params).token_ids == got.token_ids
    assert got.text == llm.tokenizer.decode(got.token_ids)


def test_quantize_refuses_what_it_cannot_do_and_leaves_nothing(checkpoints, tmp_path, capsys):
    src = checkpoints["llama2"][0]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["quantize", str(src), str(busy), "--to", "int8"]) == 1
    assert "already exists" in capsys.readouterr().err and [p.name for p in busy.iterdir()] == ["keep.txt"]
    done = tmp_path / "done"
    main(["quantize", str(src), str(done), "--to", "int8"])
    capsys.readouterr()
    assert main(["quantize", str(done), str(tmp_path / "again"), "--to", "int4"]) == 1
    assert "already quantized" in capsys.readouterr().err and not (tmp_path / "again").exists()
    with pytest.raises(OndolError, match="already quantized"):
        load(done, progress=False, quant="int4")


def test_a_corrupt_quantized_folder_is_a_clear_error(checkpoints, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "q"
    main(["quantize", str(checkpoints["llama2"][0]), str(out), "--to", "int4"])
    tensors = load_file(out / "model.safetensors")
    broken = dict(tensors)
    broken["model.layers.0.mlp.up_proj.scales"] = broken["model.layers.0.mlp.up_proj.scales"][:-1].clone()
    save_file(broken, out / "model.safetensors")
    with pytest.raises(ModelFormatError, match="up_proj: scales should be float16"):
        load(out, progress=False)
    broken = {k: v for k, v in tensors.items() if k != "model.layers.1.self_attn.o_proj.scales"}
    save_file(broken, out / "model.safetensors")
    with pytest.raises(ModelFormatError, match="o_proj"):
        load(out, progress=False)


def test_other_quantization_methods_are_refused_by_name(checkpoints, tmp_path):
    folder = tmp_path / "gptq"
    shutil.copytree(checkpoints["llama2"][0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="'gptq'"):
        load(folder, progress=False)
