"""GGUF loading: the same tiny random-weight model loaded from a Hugging Face folder and from GGUF
files converted the way llama.cpp converts them must compute the same logits.

The HF side is ``ondol.loaders.load(folder)``; the GGUF side is ``load(file)`` on files written by
``ondol/bench/gguf_writer.py`` (llama.cpp's naming, q/k permutation, rope_freqs, quantization). Two checks
per file: exact agreement (1e-6) with the HF model whose weights went through the same quantization,
and the quantization error against the original, relative to the logits' standard deviation (~0.16
here) with tolerances ~2x the measured maxima (TOLERANCE). K-quants, which gguf-py cannot write,
are checked tensor by tensor against gguf-py's dequantize of random but valid blocks.
"""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QType
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

from ondol.bench.gguf_writer import llama3_rope_freqs, permute, write_gguf
from tests.tokenizer_fixtures import TEST_STRINGS, byte_level_bpe, gguf_fields, save_hf_folder, spm_bpe

from ondol.config import ModelConfig, rope_from_hf
from ondol.engine.kv_cache import ContiguousKVCache
from ondol.errors import ModelFormatError, OndolError, UnsupportedModelError
from ondol.loaders import load, open_checkpoint
from ondol.loaders.gguf import (llama3_rope_from_factors, open_gguf, open_reader, read_metadata,
                                unpermute_rope_rows)
from ondol.loaders.names import gguf_to_hf, hf_to_gguf
from ondol.model.rope import inv_frequencies

QTYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0"]
# max |logits_gguf - logits_hf| / std(logits_hf); measured maxima over the four models in comments
TOLERANCE = {
    "F32": 1e-5,  # 0: the same numbers
    "F16": 5e-3,  # 1.9e-3
    "BF16": 3e-2,  # 1.3e-2
    "Q8_0": 0.1,  # 4.9e-2
    "Q4_0": 1.5,  # 0.81: 4-bit blocks of Gaussian weights are coarse; the exact check below is the real test
}
VOCAB = 480  # > the fixture tokenizers' 430 / 459 tokens: the converter pads with [PADi]
SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None)
CHAT = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{{ m['content'] }}<|eot_id|>{% endfor %}"
MODELS = {
    # name: (config class, model class, config overrides, tokenizer kind)
    "llama": (LlamaConfig, LlamaForCausalLM, dict(attention_bias=True, rope_scaling={"rope_type": "linear", "factor": 2.0}),
              "llama3"),
    "llama32": (LlamaConfig, LlamaForCausalLM, dict(
        tie_word_embeddings=True, head_dim=32, max_position_embeddings=256, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64}), "llama3"),
    "mistral": (MistralConfig, MistralForCausalLM, dict(), "spm"),  # sliding_window 4096 by default
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=True), "gpt2"),
}


def _tokenizer(kind: str):
    return spm_bpe() if kind == "spm" else byte_level_bpe(kind)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for i, (name, (config_cls, model_cls, overrides, kind)) in enumerate(MODELS.items()):
        torch.manual_seed(i)
        folder = root / name
        model = model_cls(config_cls(**{**SMALL, **overrides}))
        with torch.no_grad():  # norms start at 1 and biases at 0: make them tell each other apart
            for pname, p in model.named_parameters():
                if p.dim() == 1:
                    p.copy_(torch.randn_like(p) * 0.1 + pname.endswith("norm.weight"))
        model.save_pretrained(folder)
        bos, eos = ("<s>", "</s>") if kind == "spm" else ("<|begin_of_text|>", "<|eot_id|>")
        save_hf_folder(_tokenizer(kind), folder, bos_token=bos, eos_token=eos, chat_template=CHAT)
        dirs[name] = folder
    return dirs


@pytest.fixture(scope="module")
def gguf_file(hf_dirs, tmp_path_factory):
    """gguf_file(model, qtype) -> path, converting once per pair."""
    root, cache = tmp_path_factory.mktemp("gguf"), {}

    def get(name: str, qtype: str) -> Path:
        if (name, qtype) not in cache:
            cache[name, qtype] = write_gguf(hf_dirs[name], root / f"{name}-{qtype}.gguf", qtype)
        return cache[name, qtype]

    return get


@pytest.fixture(scope="module")
def hf_loaded(hf_dirs):
    return {name: load(folder, dtype="float32", progress=False) for name, folder in hf_dirs.items()}


def run(model, config: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Logits [T, V]: a prefill of all but the last 3 tokens, then 3 one-token decode steps."""
    cache = ContiguousKVCache(config, len(tokens), model.dtype)
    split = len(tokens) - 3
    out = [model(tokens[None, :split], torch.arange(split)[None], cache)[0]]
    for t in range(split, len(tokens)):
        out.append(model(tokens[None, t : t + 1], torch.tensor([[t]]), cache)[0])
    return torch.cat(out)


# --- names and permutation ---------------------------------------------------------------------


def test_names_table_matches_llama_cpp():
    llama_cpp = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    hf = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"] + [
        f"model.layers.1.{m}.{leaf}" for leaf in ("weight", "bias")
        for m in ("input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                  "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    ]
    for name in hf:
        assert hf_to_gguf(name) == llama_cpp.get_name(name, try_suffixes=(".weight", ".bias"))
        assert gguf_to_hf(hf_to_gguf(name)) == name
    assert gguf_to_hf("rope_freqs.weight") is None
    assert gguf_to_hf("blk.0.attn_qkv.weight") is None
    with pytest.raises(KeyError):
        hf_to_gguf("model.rotary_emb.inv_freq")


@pytest.mark.parametrize("shape", [(4 * 16, 64), (4 * 16,)])
def test_unpermute_inverts_llama_cpp_permute(shape):
    w = torch.randn(shape)
    assert torch.equal(unpermute_rope_rows(permute(w, 4), 4), w)
    assert not torch.equal(permute(w, 4), w)


# --- logits parity -----------------------------------------------------------------------------


def roundtrip(w: torch.Tensor, qtype: str) -> torch.Tensor:
    """w as it comes back from a GGUF of type qtype (gguf-py quantize -> dequantize)."""
    q = gguf.GGMLQuantizationType[qtype]
    return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(w.numpy(), q), q)).reshape(w.shape)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("name", list(MODELS))
def test_logits_match_hf(name, qtype, hf_dirs, gguf_file, hf_loaded):
    ref = hf_loaded[name]
    # The reference kernels multiply the stored blocks' values in float32, as the HF side does.
    got = load(gguf_file(name, qtype), dtype="float32", progress=False, kernels="reference")
    # Mistral is written as "llama" and llama.cpp drops its sliding window (4096, beyond these prompts).
    want = ref.config.replace(torch_dtype=None)
    if name == "mistral":
        want = want.replace(architecture="llama", sliding_window=None)
    assert got.config == want
    n_tensors = len(got.checkpoint.sources[0].keys()) + (name == "llama32")  # + rope_freqs
    # tied embeddings counted once; quantized matrices are modules with a qweight buffer
    tables = {b.data_ptr() for n, b in got.model.named_buffers() if n.endswith("qweight")}
    n_2d = sum(p.dim() == 2 for p in got.model.parameters()) + len(tables)
    types = {"F32": n_tensors} if qtype == "F32" else {qtype: n_2d, "F32": n_tensors - n_2d}
    assert got.checkpoint.tensor_types == types
    assert got.checkpoint.size_bytes == gguf_file(name, qtype).stat().st_size

    tokens = torch.randint(0, VOCAB, (24,), generator=torch.Generator().manual_seed(7))
    logits = run(got.model, got.config, tokens)
    # Exact: the HF model with its 2-D weights passed through the same quantization computes the
    # same logits (this is what catches a wrong name, shape, permutation or dequantization).
    same_noise = load(hf_dirs[name], dtype="float32", progress=False)
    with torch.no_grad():
        for p in same_noise.model.parameters():
            if p.dim() == 2:
                p.copy_(roundtrip(p, qtype))
    assert (logits - run(same_noise.model, same_noise.config, tokens)).abs().max().item() <= 1e-6
    # Against the unquantized model: the quantization error, relative to the logits' spread.
    want_logits = run(ref.model, ref.config, tokens)
    rel = (logits - want_logits).abs().max().item() / want_logits.std().item()
    print(f"{name} {qtype}: max |logit diff| / std(logits) = {rel:.3g}")
    assert rel <= TOLERANCE[qtype]


def test_f32_and_f16_tensors_are_views_of_the_file(gguf_file):
    for qtype, dtype in (("F32", torch.float32), ("F16", torch.float16)):
        source = open_checkpoint(gguf_file("llama", qtype)).sources[0]
        data = source.reader.data
        lo, hi = data.ctypes.data, data.ctypes.data + data.nbytes
        norm, down = source.tensor("model.norm.weight"), source.tensor("model.layers.0.mlp.down_proj.weight")
        assert down.dtype == dtype and down.shape == (64, 128)
        for t in (norm, down):
            assert lo <= t.data_ptr() < hi
        q = source.tensor("model.layers.0.self_attn.q_proj.weight")  # un-permuted: a copy
        assert not lo <= q.data_ptr() < hi
        source.release("model.layers.0.mlp.down_proj.weight")
        assert torch.equal(source.tensor("model.layers.0.mlp.down_proj.weight"), down)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantized_files_run_on_their_blocks_in_bfloat16(qtype, gguf_file, hf_loaded):
    got = load(gguf_file("qwen2", qtype), progress=False)
    assert got.model.dtype == torch.bfloat16
    # every matrix stays in its blocks: no full-precision copy of any of them
    assert not any(isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) for m in got.model.modules())
    assert all(p.dim() == 1 for p in got.model.parameters())
    bits = {"Q8_0": 8, "Q4_0": 4}[qtype]
    assert {(m.bits, m.group) for m in got.model.modules() if hasattr(m, "qweight")} == {(bits, 32)}
    tokens = torch.arange(10)
    logits = run(got.model, got.config, tokens)
    want = run(hf_loaded["qwen2"].model, hf_loaded["qwen2"].config, tokens)
    assert (logits - want).abs().max() / want.std() < TOLERANCE[qtype] + 0.3


# --- llama3 rope recovery ----------------------------------------------------------------------


@pytest.mark.parametrize("head_dim,theta,factor,old", [
    (128, 500000.0, 8.0, 8192),  # Llama 3.1 8B
    (64, 500000.0, 32.0, 8192),  # Llama 3.2 1B
    (32, 500000.0, 8.0, 64),  # the tiny model above: a single frequency in the interpolated band
    (64, 10000.0, 4.0, 2048),
])
def test_llama3_rope_recovered_from_rope_freqs(head_dim, theta, factor, old):
    cfg = {"hidden_size": head_dim * 4, "num_attention_heads": 4, "head_dim": head_dim, "rope_theta": theta,
           "rope_scaling": {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": old}}
    want = ModelConfig.from_hf({"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "intermediate_size": 8,
                                "num_hidden_layers": 1, **cfg}).rope
    assert llama3_rope_from_factors(theta, head_dim, llama3_rope_freqs(cfg).numpy()) == want


@pytest.mark.parametrize("low,high,old", [(2.0, 6.0, 8192), (0.5, 3.0, 1000), (1.0, 2.5, 4096)])
def test_llama3_rope_with_unusual_band_is_reproduced(low, high, old):
    # Only old : low : high is recoverable; the recovered config must give the same frequencies.
    cfg = {"hidden_size": 512, "num_attention_heads": 4, "head_dim": 128, "rope_theta": 500000.0,
           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": low, "high_freq_factor": high,
                            "original_max_position_embeddings": old}}
    want = inv_frequencies(rope_from_hf(cfg), 128)
    got = llama3_rope_from_factors(500000.0, 128, llama3_rope_freqs(cfg).numpy())
    assert type(got.high_freq_factor) is float and type(got.original_max_position_embeddings) is int
    torch.testing.assert_close(inv_frequencies(got, 128), want, rtol=1e-6, atol=0)


def test_unreproducible_rope_freqs_are_refused():
    factors = np.random.default_rng(0).uniform(1, 8, 16)
    with pytest.raises(UnsupportedModelError, match="rope_freqs"):
        llama3_rope_from_factors(500000.0, 32, factors)


# --- K-quants and unsupported types ----------------------------------------------------------

K_HIDDEN = 256  # K-quant blocks span 256 values of a row


def random_blocks(qtype: QType, shape: tuple[int, int], rng) -> np.ndarray:
    """Random bytes [rows, row_bytes] with every fp16 scale field set to a small finite value."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (shape[0] * shape[1] // block, size), dtype=np.uint8)
    scale_offsets = {QType.Q4_K: (0, 2), QType.Q6_K: (208,), QType.Q5_K: (0, 2), QType.IQ2_XXS: (0,)}[qtype]
    for off in scale_offsets:
        raw[:, off : off + 2] = rng.uniform(-0.02, 0.02, (len(raw), 1)).astype(np.float16).view(np.uint8)
    return raw.reshape(shape[0], -1)


def write_k_quant_file(path: Path, types: dict[str, QType]) -> dict[str, tuple[np.ndarray, QType]]:
    """A 1-layer llama (hidden 256, 4 heads of 64, 2 kv heads) whose 2-D weights are raw blocks."""
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(path, "llama")
    for key, value in (("block_count", 1), ("context_length", 128), ("embedding_length", K_HIDDEN),
                       ("feed_forward_length", K_HIDDEN), ("attention.head_count", 4), ("attention.head_count_kv", 2)):
        w.add_uint32(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    shapes = {"token_embd.weight": (K_HIDDEN, K_HIDDEN), "output.weight": (K_HIDDEN, K_HIDDEN),
              "blk.0.attn_q.weight": (K_HIDDEN, K_HIDDEN), "blk.0.attn_k.weight": (128, K_HIDDEN),
              "blk.0.attn_v.weight": (128, K_HIDDEN), "blk.0.attn_output.weight": (K_HIDDEN, K_HIDDEN),
              "blk.0.ffn_gate.weight": (K_HIDDEN, K_HIDDEN), "blk.0.ffn_up.weight": (K_HIDDEN, K_HIDDEN),
              "blk.0.ffn_down.weight": (K_HIDDEN, K_HIDDEN)}
    written = {}
    for i, (name, shape) in enumerate(shapes.items()):
        qtype = types.get(name, (QType.Q4_K, QType.Q6_K)[i % 2])
        written[name] = (random_blocks(qtype, shape, rng), qtype)
        w.add_tensor(name, written[name][0], raw_dtype=qtype)
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        w.add_tensor(name, rng.standard_normal(K_HIDDEN).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


def test_k_quants_match_gguf_dequantize(tmp_path):
    path = tmp_path / "k.gguf"
    written = write_k_quant_file(path, {})
    checkpoint = open_checkpoint(path)
    assert checkpoint.tensor_types == {"Q4_K": 5, "Q6_K": 4, "F32": 3}
    source = checkpoint.sources[0]
    for name, (raw, qtype) in written.items():
        want = torch.from_numpy(gguf.quants.dequantize(raw, qtype))  # [rows, 256]
        heads = {"blk.0.attn_q.weight": 4, "blk.0.attn_k.weight": 2}.get(name)
        if heads:
            want = unpermute_rope_rows(want, heads)
        got = source.tensor(gguf_to_hf(name))
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        assert torch.equal(got, want), name
        # Kept in blocks (gguf_quant.py): the same values but for scales rounded to float16.
        blocks = source.quantized(gguf_to_hf(name))
        assert (blocks.bits, blocks.group) == ({QType.Q4_K: 4, QType.Q6_K: 8}[qtype], {QType.Q4_K: 32, QType.Q6_K: 16}[qtype])
        err = (blocks.dequantize() - want).abs().max().item()
        assert err <= 2e-3 * want.abs().max().item(), (name, err)


@pytest.mark.parametrize("qtype", [QType.Q5_K, QType.IQ2_XXS])
def test_unsupported_tensor_type_refused_on_open(tmp_path, qtype):
    path = tmp_path / "bad.gguf"
    write_k_quant_file(path, {"blk.0.ffn_up.weight": qtype})
    with pytest.raises(UnsupportedModelError, match=f"blk.0.ffn_up.weight is stored as {qtype.name}.*Q4_K"):
        open_checkpoint(path)


def test_unsupported_architecture(tmp_path):
    path = tmp_path / "phi.gguf"
    w = gguf.GGUFWriter(path, "phi3")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModelError, match="'phi3'.*llama, mistral, qwen2"):
        open_checkpoint(path)


# --- corrupt files -----------------------------------------------------------------------------


def _header(kv: bytes, n_kv: int = 1) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + kv


@pytest.mark.parametrize("case", ["truncated data", "truncated header", "bad magic", "garbage header", "empty",
                                  "huge array", "bad version"])
def test_corrupt_file_is_a_format_error(case, gguf_file, tmp_path):
    good = gguf_file("llama", "F16").read_bytes()
    key = struct.pack("<Q", 1) + b"x"
    content = {
        "truncated data": good[: len(good) - 1000],
        "truncated header": good[:300],
        "bad magic": b"GGUX" + good[4:],
        "garbage header": good[:8] + np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "empty": b"",
        # an array of 2**62 uint8 values: must fail at once, not loop over empty reads
        "huge array": _header(key + struct.pack("<IIQ", 9, 0, 2**62)),
        "bad version": b"GGUF" + struct.pack("<I", 99) + good[8:],
    }[case]
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError) as err:
        open_checkpoint(path)
    assert "corrupt.gguf" in str(err.value)
    with pytest.raises(ModelFormatError, match="corrupt.gguf"):  # find() catches some first; open_gguf too
        open_gguf(path)


def test_mutated_headers_fail_cleanly(gguf_file, tmp_path):
    """Random byte flips anywhere in the header (metadata and tensor infos) give an OndolError or a
    readable file, never a raw exception from gguf-py, numpy or torch."""
    good = gguf_file("llama32", "Q4_0")
    header_end = gguf.GGUFReader(good).data_offset
    rng = np.random.default_rng(5)
    path = tmp_path / "mutated.gguf"
    for _ in range(60):
        bad = bytearray(good.read_bytes())
        for pos in rng.integers(4, header_end, 3):
            bad[pos] = rng.integers(0, 256)
        path.write_bytes(bad)
        try:
            source = open_checkpoint(path).sources[0]
            for name in source.keys():
                source.tensor(name)
        except OndolError:
            pass


# --- tokenizer metadata ------------------------------------------------------------------------


def test_metadata_equals_gguf_py_contents(gguf_file):
    """ondol reads arrays whole instead of element by element; the values must not change."""
    path = gguf_file("mistral", "Q4_0")
    meta, fields = read_metadata(open_reader(path)), gguf.GGUFReader(path).fields
    assert set(meta) == {k for k in fields if not k.startswith("GGUF.")}
    for key, value in meta.items():
        want = fields[key].contents()
        assert value == (pytest.approx(want, rel=1e-6) if isinstance(want, float) else want), key
    assert meta["llama.attention.layer_norm_rms_epsilon"] == 1e-5  # not 9.99999974e-06


@pytest.mark.parametrize("name", ["llama32", "mistral", "qwen2"])
def test_tokenizer_metadata_is_what_llama_cpp_writes(name, gguf_file):
    kind = MODELS[name][3]
    backend = _tokenizer(kind)
    n = backend.get_vocab_size(with_added_tokens=True)
    meta = read_metadata(open_reader(gguf_file(name, "Q8_0")))
    want = gguf_fields(backend, "llama" if kind == "spm" else "gpt2")
    assert meta["tokenizer.ggml.model"] == want["tokenizer.ggml.model"]
    assert meta["tokenizer.ggml.tokens"][:n] == want["tokenizer.ggml.tokens"]
    assert meta["tokenizer.ggml.tokens"][n:] == [f"[PAD{i}]" for i in range(n, VOCAB)]
    assert meta["tokenizer.ggml.token_type"][:n] == want["tokenizer.ggml.token_type"]
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.merges"):
        assert (meta[key][: len(want[key])] if key in meta else None) == want.get(key)
    assert meta["tokenizer.ggml.pre"] == {"llama32": "llama-bpe", "mistral": "default", "qwen2": "gpt-2"}[name]
    bos, eos = ("<s>", "</s>") if kind == "spm" else ("<|begin_of_text|>", "<|eot_id|>")
    assert meta["tokenizer.ggml.bos_token_id"] == backend.token_to_id(bos)
    assert meta["tokenizer.ggml.eos_token_id"] == backend.token_to_id(eos)
    # BOS-adding post-processors say add_bos; the GPT-2 style one has none, so nothing is written
    assert meta.get("tokenizer.ggml.add_bos_token") == (None if kind == "gpt2" else True)
    assert meta["tokenizer.chat_template"] == CHAT


@pytest.mark.parametrize("name", ["llama32", "mistral", "qwen2"])
def test_tokenizer_from_gguf_matches_hf(name, gguf_file, hf_loaded):
    want = hf_loaded[name].tokenizer
    got = open_checkpoint(gguf_file(name, "F16")).make_tokenizer()
    for text in TEST_STRINGS:
        ids = want.encode(text)
        assert got.encode(text) == ids, text
        assert got.decode(ids) == want.decode(ids)
    assert got.bos_token_id == want.bos_token_id
    assert got.chat_template == want.chat_template


def test_the_loaders_list_of_quantized_gguf_types_is_gguf_quants():
    from ondol.loaders import QUANTIZED_GGUF
    from ondol.loaders.gguf_quant import QUANTIZED

    assert set(QUANTIZED_GGUF) == {t.name for t in QUANTIZED}
