"""Shared by the tests of docker/: the service's test kit on the import path, and for the Kubernetes tests the
rendered overlays and the app's routes and metrics to check them against."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The service's test kit (tests/app) and tests/test_project.py, which these tests share, import by module name.
TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "app"), str(TESTS)]

from k8s_testkit import K8S, OVERLAYS, build  # noqa: E402

from app.settings import Settings  # noqa: E402


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: build(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def app_routes():
    """``GET path`` -> status, asked of the app itself (its lifespan not started, so no model loads): what a
    probe or a scrape gets, 404 or 405 where the app has no such GET route."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    client = TestClient(create_app(Settings(device="cpu", worker_mode="thread", api_keys=[], ops_require_key=False)))
    statuses: dict[str, int] = {}

    def status(path: str) -> int:
        if path not in statuses:
            statuses[path] = client.get(path).status_code
        return statuses[path]

    return status


@pytest.fixture(scope="module")
def metric_names() -> set[str]:
    from app.http.metrics import Metrics

    return {family.name for family in Metrics().registry.collect()}
