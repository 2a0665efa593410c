"""The container files agree with the code: compose passes every setting through, both agree on the base image.

Building and running the image is docker/verify.sh (minutes, needs a Docker engine), not part of the test suite.
"""

from __future__ import annotations

import re

from k8s_testkit import COMPOSE, DOCKERFILE

from app.settings import Settings

# Fixed by the image: the server must listen on every interface, on the port the image exposes.
SET_BY_IMAGE = {"host", "port"}


def test_compose_passes_every_setting_from_the_environment():
    passed = set(re.findall(r"^\s+- CENTAURUS_([A-Z_]+)\s*$", COMPOSE, re.M))
    settings = {name.upper() for name in Settings.model_fields} - {name.upper() for name in SET_BY_IMAGE}
    assert passed == settings, {"missing": settings - passed, "unknown": passed - settings}


def test_image_sets_what_the_container_needs():
    assert "CENTAURUS_HOST=0.0.0.0" in DOCKERFILE
    assert "EXPOSE 8000" in DOCKERFILE and "CENTAURUS_PORT=8000" in DOCKERFILE
    assert '"app.healthcheck"' in DOCKERFILE and '"app.healthcheck"' in COMPOSE


def test_compose_and_dockerfile_default_to_the_same_cuda_base():
    dockerfile_base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    compose_base = re.search(r"BASE_IMAGE: \$\{CENTAURUS_BASE_IMAGE:-([^}]+)\}", COMPOSE).group(1)
    assert dockerfile_base == compose_base and dockerfile_base.startswith("nvidia/cuda:")


def test_gpu_service_reserves_a_gpu_and_cpu_service_is_a_profile():
    gpu, cpu = COMPOSE.split("\n  speech-cpu:\n")
    assert "driver: nvidia" in gpu and "capabilities: [gpu]" in gpu
    assert "profiles: [cpu]" in cpu and "nvidia" not in cpu
