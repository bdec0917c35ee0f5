from pathlib import Path

import pytest

from tests.model_fixtures import SHAPES, make_checkpoint
from tests.tool_fixtures import FAMILIES, make_tool_checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict:
    """shape name -> (folder, transformers model), built once per test session."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: (root / name, make_checkpoint(root / name, name)) for name in SHAPES}


@pytest.fixture(scope="session")
def tiny_model_dir(checkpoints) -> Path:
    return checkpoints["llama3.2"][0]


@pytest.fixture(scope="session")
def tool_models(tmp_path_factory) -> dict:
    """family -> tiny checkpoint with that family's real chat template and tool-call tokens."""
    root = tmp_path_factory.mktemp("tool_models")
    return {family: make_tool_checkpoint(root / family, family) for family in FAMILIES}
