"""The lean decode step: every decoder layer of a decode step in one call into compiled code.

A decode step reads each weight once and does ~40 small operations per layer besides; from Python
those cost a few microseconds each, milliseconds per token for a 16-layer model. ``FusedDecode``
hands the whole stack of layers to ``torch.ops.ondol.decode_layers`` (ondol/quant/csrc/decode.cpp)
once per step, so the Python work per token does not grow with the number of layers. The layers of
llama.py remain the reference: tests compare the two on every weight format.

It serves a step where every scheduled request decodes one token (the server's batched decode,
up to ``MAX_ROWS`` requests) through the paged cache, with ondol's compiled kernels on every
linear; anything else (prompt chunks, training, a sliding window that cuts, PyTorch's kernels)
runs the Python layers. It holds references to the model's tensors taken at load time.
"""

from __future__ import annotations

import torch
from torch import nn

from ondol.quant.kernels import CompiledKernels
from ondol.quant.modules import QuantLinear

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_NONE = torch.empty(0)  # "no such tensor" in the op's Tensor[] list


def _or_none(t: torch.Tensor | None) -> torch.Tensor:
    return _NONE if t is None else t


class FusedDecode:
    MAX_ROWS = CompiledKernels.DECODE_ROWS  # the compiled matmuls stream weights for up to this many rows

    def __init__(self, model: nn.Module, weights: list[torch.Tensor], kinds: list[int], groups: list[int]) -> None:
        cfg = model.config
        self.heads, self.kv_heads, self.eps = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.rms_norm_eps
        self.weights, self.kinds, self.groups = weights, kinds, groups

    @classmethod
    def build(cls, model: nn.Module) -> FusedDecode | None:
        """The fused step for a loaded model whose linears all run on ondol's compiled kernels, or
        None when some part of it needs the Python layers."""
        if model.dtype not in (torch.bfloat16, torch.float32) or not hasattr(torch.ops.ondol, "decode_layers") or \
                model.config.head_dim > 256:
            return None
        weights: list[torch.Tensor] = []
        kinds: list[int] = []
        groups: list[int] = []
        for layer in model.model.layers:
            weights += [layer.input_layernorm.weight.detach(), layer.post_attention_layernorm.weight.detach()]
            for name in LINEARS:
                m = layer.get_submodule(name)
                if getattr(m, "kernels", None) is None or m.kernels.name != "compiled":
                    return None
                if isinstance(m, QuantLinear):
                    if m.packed != ("compiled",):
                        return None
                    weights += [m.qweight, m.scales, _or_none(m.zeros), _or_none(m.bias)]
                    kinds.append(m.bits)
                    groups.append(m.group)
                elif isinstance(m, nn.Linear) and m.weight.dtype == model.dtype:
                    weights += [m.weight.detach(), _NONE, _NONE, _or_none(m.bias).detach()]
                    kinds.append(0)
                    groups.append(0)
                else:
                    return None
        return cls(model, weights, kinds, groups)

    def applies(self, cache, rows: int) -> bool:
        return rows <= self.MAX_ROWS and getattr(cache, "decode_only", False)

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, step) -> torch.Tensor:
        """x [1, n, hidden] embeddings of n decoding requests; cos, sin [1, 1, n, D]; step a
        PagedStep of n single-token spans. Returns x after the last layer, [1, n, hidden]."""
        kv = step.cache
        out = torch.ops.ondol.decode_layers(
            x[0].contiguous(), cos[0, 0].contiguous(), sin[0, 0].contiguous(), self.weights, self.kinds, self.groups,
            kv.k, kv.v, step.write_slots, step.decode_slots, step.decode_lengths, self.heads, self.kv_heads, self.eps)
        return out[None]
