"""ondol: run Llama-family language models on the devices people live with."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ondol.errors import OndolError

if TYPE_CHECKING:
    from ondol.engine.output import Completion
    from ondol.engine.sampler import SamplingParams
    from ondol.llm import LLM

__version__ = "0.1.0"
__all__ = ["LLM", "SamplingParams", "Completion", "OndolError", "__version__"]

# The model API imports torch (over a second); the device layer (ondol.home) and the command line's
# help need none of it, so these load on first use.
_LAZY = {"LLM": "ondol.llm", "SamplingParams": "ondol.engine.sampler", "Completion": "ondol.engine.output"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ondol' has no attribute {name!r}")
