"""LoRA: train a low-rank update ``B @ A`` next to each frozen projection, merge it when saving.

``LoRALinear`` is an ``nn.Linear`` (same ``weight``/``bias`` parameter names) with two extra
parameters, so module and tensor names stay equal to Hugging Face names and the merged model is an
ordinary checkpoint. y = x W^T + b + (alpha / r) * x A^T B^T, with A [r, in] small random and
B [out, r] zero: training starts from exactly the base model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The projections LoRA adapts: every linear layer of attention and the MLP (not the embeddings or
# the output head, which hold the vocabulary and are large).
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Linear):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        nn.Module.__init__(self)  # nn.Linear.__init__ would allocate and initialise a weight
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.scale = alpha / rank
        # A as nn.Linear's default init would (kaiming uniform, a=sqrt(5)), the choice PEFT makes.
        bound = 1 / math.sqrt(self.in_features)
        a = (torch.rand(rank, self.in_features, generator=generator) * 2 - 1) * bound
        self.lora_A = nn.Parameter(a)  # [r, in]
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank))  # [out, r]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [..., in]: the low-rank path costs r * (in + out) per token instead of in * out
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale

    def merged_weight(self) -> torch.Tensor:
        """W + scale * B @ A, float32 [out, in]."""
        return self.weight.detach().float() + self.scale * (self.lora_B.detach().float() @ self.lora_A.detach().float())


def add_lora(model: nn.Module, rank: int, alpha: float, seed: int) -> None:
    """Freeze every parameter of ``model`` and put a LoRALinear in place of each target projection."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, not {rank}")
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if child_name in TARGETS and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, alpha, generator))


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Model tensors by Hugging Face name with every LoRA update folded into its weight and the
    adapter tensors left out; tied tensors appear once. The model itself is not changed."""
    merged = {f"{name}.weight": m.merged_weight() for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    out = {}
    for name, p in model.named_parameters():  # named_parameters lists a tied tensor once
        if name.endswith((".lora_A", ".lora_B")):
            continue
        out[name] = merged.get(name, p.detach())
    return out
