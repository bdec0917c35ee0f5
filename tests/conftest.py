import itertools
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


# --- Test servers (tests/services.py): started on first use, stopped at the end of the session. ---
# They fail (never skip) when a server's Debian package is missing: `make services` installs them.
from tests.services import ServiceUnavailable, mosquitto_server, postgres_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres_url():
    """``postgresql://postgres@127.0.0.1:PORT/postgres``: a throwaway PostgreSQL superuser URL."""
    try:
        with postgres_server() as url:
            yield url
    except ServiceUnavailable as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def mqtt_url():
    """``mqtt://127.0.0.1:PORT``: a throwaway Mosquitto broker, anonymous, no persistence."""
    try:
        with mosquitto_server() as url:
            yield url
    except ServiceUnavailable as e:
        pytest.fail(str(e), pytrace=False)


_db_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A URL of an empty store: a fresh SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home.db'}"
    import psycopg

    server = request.getfixturevalue("postgres_url")
    name = f"store_{next(_db_names)}"
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name
