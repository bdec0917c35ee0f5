import openai
import pytest

from ondol.server import create_app
from tests.server_fixtures import TEST_KV_BYTES, ServerThread


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """An ondol server on the tiny model, served as "tiny" (one per test module)."""
    s = ServerThread(create_app(str(tiny_model_dir), served_model_name="tiny", kv_cache_bytes=TEST_KV_BYTES)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
