"""Fixtures of the dashboard and /commands tests: the demo home on a fresh store, and its real
assistant on ondol's embedded model (one per test module, as loading the model takes a while).
Import them into a test module: ``from tests.e2e.home_fixtures import assistant, home``."""

from __future__ import annotations

from pathlib import Path

import pytest

import ondol.home
from ondol.home.home import Home

DEMO = Path(ondol.home.__file__).with_name("demo-home.yaml")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with Home.load(DEMO, store=f"sqlite:///{tmp_path_factory.mktemp('home') / 'h.db'}") as h:
        yield h


@pytest.fixture(scope="module")
def assistant(home):
    from ondol.home.assistant import Assistant

    return Assistant(home)  # model=None: ondol's embedded model
