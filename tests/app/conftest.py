"""Fixtures for the service tests (helpers live in service_testkit)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_testkit import build_tiny_models, settings_for, wait_ready

from app.main import create_app


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    return build_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def client(tiny_models):
    """The default configuration (worker processes), shared by the endpoint tests."""
    with TestClient(create_app(settings_for(tiny_models))) as c:
        wait_ready(c)
        yield c
