"""The optional Wyoming component (docker/k8s/components/wyoming) on the CPU overlay: valid against the Kubernetes
schemas, and in agreement with the service: the URI it sets parses as the setting, listens on every interface of
the pod at the container port it opens, and its own Service reaches that port on the same pods; the rest still
passes every check of tests/docker/test_k8s.py. Without the component, Wyoming stays off. Each check also runs on a
broken copy, to show it can fail.
"""

from __future__ import annotations

import copy
from urllib.parse import urlparse

import pytest
import yaml
from k8s_testkit import (K8S, OVERLAYS, build, consistency_problems, container, one, problems_when_broken,
                         schema_errors, set_in_configmap)

from app.settings import Settings


@pytest.fixture(scope="module")
def with_wyoming(tmp_path_factory) -> list[dict]:
    overlay = tmp_path_factory.mktemp("overlay")
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(K8S / "overlays" / "cpu")], "components": [str(K8S / "components" / "wyoming")]}))
    return build(overlay)


def wyoming_problems(resources: list[dict]) -> list[str]:
    problems = []
    deployment, config = one(resources, "Deployment"), one(resources, "ConfigMap")
    uri = config["data"].get("CENTAURUS_WYOMING_URI")
    if uri is None:
        return ["the ConfigMap does not set CENTAURUS_WYOMING_URI"]
    try:
        Settings(wyoming_uri=uri)
    except ValueError as err:
        problems.append(f"CENTAURUS_WYOMING_URI {uri!r} is not a valid setting: {err}")
    parsed = urlparse(uri)
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    if parsed.hostname != "0.0.0.0":
        problems.append(f"Wyoming listens on {parsed.hostname}, not every interface of the pod")
    if ports.get("wyoming") != parsed.port:
        problems.append(f"container port wyoming {ports.get('wyoming')} is not the URI's port {parsed.port}")
    services = [s for s in resources if s["kind"] == "Service"
                and any(p["targetPort"] == "wyoming" for p in s["spec"]["ports"])]
    if len(services) != 1:
        problems.append(f"{len(services)} Services reach the wyoming port")
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    for service in services:
        if any(pods.get(k) != v for k, v in service["spec"]["selector"].items()):
            problems.append(f"the Wyoming Service selects {service['spec']['selector']}, not the pods")
        if any(p["targetPort"] != "wyoming" for p in service["spec"]["ports"]):
            problems.append("the Wyoming Service also exposes other ports")
    return problems


def without_wyoming(resources: list[dict]) -> list[dict]:
    """The HTTP side alone: the Wyoming Service and container port taken out."""
    rest = [copy.deepcopy(r) for r in resources if r["metadata"]["name"] != "centaurus-speech-wyoming"]
    c = container(one(rest, "Deployment"))
    c["ports"] = [p for p in c["ports"] if p["name"] != "wyoming"]
    return rest


def test_the_component_passes_the_schemas_and_agrees_with_the_service(with_wyoming, app_routes):  # noqa: F811
    assert [e for e in map(schema_errors, with_wyoming) if e] == []
    assert wyoming_problems(with_wyoming) == []
    assert consistency_problems(without_wyoming(with_wyoming), app_routes) == []


def test_wyoming_is_off_without_the_component():
    for overlay in OVERLAYS:
        resources = build(K8S / "overlays" / overlay)
        assert "CENTAURUS_WYOMING_URI" not in one(resources, "ConfigMap")["data"]
        assert all(p["name"] != "wyoming" for p in container(one(resources, "Deployment"))["ports"])


BREAKAGES = {
    "port": (set_in_configmap("CENTAURUS_WYOMING_URI", "tcp://0.0.0.0:10400"), "is not the URI's port"),
    "loopback": (set_in_configmap("CENTAURUS_WYOMING_URI", "tcp://127.0.0.1:10300"), "not every interface"),
    "scheme": (set_in_configmap("CENTAURUS_WYOMING_URI", "http://0.0.0.0:10300"), "not a valid setting"),
    "target": (lambda r: next(s for s in r if s["metadata"]["name"] == "centaurus-speech-wyoming")["spec"]["ports"][0]
               .__setitem__("targetPort", "wyo"), "0 Services reach"),
    "selector": (lambda r: next(s for s in r if s["metadata"]["name"] == "centaurus-speech-wyoming")["spec"]
                 .__setitem__("selector", {"app": "other"}), "not the pods"),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_the_checks_catch_a_broken_component(with_wyoming, name):
    breakage, expected = BREAKAGES[name]
    problems = problems_when_broken(with_wyoming, breakage, wyoming_problems)
    assert any(expected in p for p in problems), problems
