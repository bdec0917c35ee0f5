"""ondol: run Llama-family language models on the devices people live with."""

from ondol.engine.output import Completion
from ondol.engine.sampler import SamplingParams
from ondol.errors import OndolError
from ondol.llm import LLM

__version__ = "0.1.0"
__all__ = ["LLM", "SamplingParams", "Completion", "OndolError", "__version__"]
