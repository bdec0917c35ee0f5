from ondol.model.llama import LlamaForCausalLM

__all__ = ["LlamaForCausalLM"]
