"""ModelConfig from the config.json spellings published checkpoints use."""

import pytest
import torch

from ondol.config import ModelConfig
from ondol.errors import UnsupportedModelError
from ondol.model.rope import inv_frequencies

# As published for Llama 3.1/3.2 (older transformers wrote rope_scaling + rope_theta).
LLAMA_3_2_1B = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": True,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "torch_dtype": "bfloat16", "hidden_act": "silu", "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
}


def test_published_llama_3_2_config():
    c = ModelConfig.from_hf(LLAMA_3_2_1B)
    assert (c.architecture, c.head_dim, c.num_key_value_heads, c.tie_word_embeddings) == ("llama", 64, 8, True)
    assert (c.rope.type, c.rope.theta, c.rope.factor, c.rope.original_max_position_embeddings) == ("llama3", 5e5, 32.0, 8192)
    assert c.num_parameters == 1_235_814_400  # Llama-3.2-1B's published count


def test_rope_parameters_spelling_equals_rope_scaling_spelling():
    new = dict(LLAMA_3_2_1B)
    new["rope_parameters"] = {**new.pop("rope_scaling"), "rope_theta": new.pop("rope_theta")}
    assert ModelConfig.from_hf(new) == ModelConfig.from_hf(LLAMA_3_2_1B)


def test_llama3_scaling_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf = LlamaConfig(**{k: v for k, v in LLAMA_3_2_1B.items() if k != "architectures"})
    expected, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    got = inv_frequencies(ModelConfig.from_hf(LLAMA_3_2_1B).rope, 64)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def test_linear_rope_and_mistral_and_qwen2_defaults():
    c = ModelConfig.from_hf({**LLAMA_3_2_1B, "rope_scaling": {"type": "linear", "factor": 2.0}})
    assert (c.rope.type, c.rope.factor) == ("linear", 2.0)
    m = ModelConfig.from_hf({**LLAMA_3_2_1B, "architectures": ["MistralForCausalLM"], "sliding_window": 4096,
                             "rope_scaling": None})
    assert (m.architecture, m.sliding_window, m.rope.type) == ("mistral", 4096, "default")
    q = ModelConfig.from_hf({**LLAMA_3_2_1B, "architectures": ["Qwen2ForCausalLM"], "sliding_window": 4096,
                             "use_sliding_window": False, "rope_scaling": None})
    assert (q.qkv_bias, q.o_bias, q.sliding_window) == (True, False, None)


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["GPTNeoXForCausalLM"]}, "ondol runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "supports default, linear, llama3"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"num_key_value_heads": 5}, "not a multiple"),
    ({"hidden_size": None}, "wrong type"),
])
def test_unsupported_configs_name_what_is_supported(change, message):
    with pytest.raises(UnsupportedModelError, match=message):
        ModelConfig.from_hf({**LLAMA_3_2_1B, **change})


def test_missing_field():
    cfg = dict(LLAMA_3_2_1B)
    del cfg["vocab_size"]
    with pytest.raises(UnsupportedModelError, match="vocab_size"):
        ModelConfig.from_hf(cfg)
