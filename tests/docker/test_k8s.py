"""The Kubernetes manifests (docker/k8s) agree with the Kubernetes API and with the service.

Every overlay is rendered (kustomize's semantics for the subset docker/k8s uses, in Python, so no binary is
needed; where kubectl or kustomize is installed the rendering is compared with theirs) and each resource is
validated offline and strictly against the API schemas of a fixed Kubernetes version (kubernetes-validate). Then
the pieces are checked against the code: the probes ask routes the app has, the ConfigMap holds real settings
that parse, the grace period covers the drain the server is started with, the image's user and health check
start period match docker/Dockerfile. Every check is also run on a broken copy, to show it can fail.
"""

from __future__ import annotations

import copy
import re
import subprocess

import kubernetes_validate
import pytest
import yaml
from k8s_testkit import (COMPOSE, K8S, OVERLAYS, build, by_identity, consistency_problems, container,
                         drain_problems, is_get_route, kustomize_binary, load_documents, one, probes,
                         problems_when_broken, schema_errors, server_start, set_in_configmap)


# ---- the tests ------------------------------------------------------------------------------------------------
def test_every_manifest_passes_the_kubernetes_schemas(rendered):
    documents = [*(r for resources in rendered.values() for r in resources), *build(K8S / "base"),
                 *load_documents(K8S / "secret.example.yaml")]
    errors = [error for resource in documents if (error := schema_errors(resource))]
    assert not errors, errors
    kinds = {r["kind"] for r in documents}
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret",
            "ServiceMonitor"} <= kinds


@pytest.mark.parametrize("breakage, expected", [
    (lambda d: container(d).__setitem__("readinesProbe", container(d).pop("readinessProbe")), "readinesProbe"),
    (lambda d: container(d)["ports"][0].__setitem__("containerPort", "eight thousand"), "eight thousand"),
    (lambda d: d["spec"].pop("selector"), "'selector' is a required property"),
    (lambda d: d["spec"]["template"]["spec"].__setitem__("terminationGracePeriod", 300), "terminationGracePeriod"),
], ids=["misspelled field", "wrong type", "missing required field", "unknown field"])
def test_schema_validation_rejects_a_broken_deployment(rendered, breakage, expected):
    deployment = copy.deepcopy(one(rendered["gpu"], "Deployment"))
    assert schema_errors(deployment) is None
    breakage(deployment)
    assert expected in (schema_errors(deployment) or "")


def test_unknown_kinds_are_errors_except_the_known_custom_resources():
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        schema_errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendering_here_matches_kustomize(overlay, rendered):
    binary = kustomize_binary()
    if binary is None:
        pytest.skip("neither kustomize nor kubectl is installed")
    output = subprocess.run([*binary, str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                            timeout=120, check=True).stdout
    assert by_identity(rendered[overlay]) == by_identity([d for d in yaml.safe_load_all(output) if d])


def test_rendering_refuses_what_it_does_not_implement(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {A: a}\n")
    (base / "kustomization.yaml").write_text("kind: Kustomization\nresources: [cm.yaml]\n")
    assert build(base)[0]["data"] == {"A": "a"}
    cases = {
        "configMapGenerator": "configMapGenerator: [{name: x, literals: [A=b]}]",
        "strategic merge": "patches: [{target: {kind: ConfigMap, name: c}, patch: 'data: {A: b}'}]",
        "matches no resource": "patches: [{target: {kind: ConfigMap, name: nope}, patch: '[]'}]",
        "no such member": "patches: [{target: {kind: ConfigMap, name: c}, "
                          "patch: '[{op: replace, path: /data/B, value: b}]'}]",
    }
    for expected, text in cases.items():
        overlay = tmp_path / "overlay"
        overlay.mkdir(exist_ok=True)
        (overlay / "kustomization.yaml").write_text(f"kind: Kustomization\nresources: [../base]\n{text}\n")
        with pytest.raises((NotImplementedError, ValueError, KeyError), match=expected):
            build(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_agrees_with_the_service(overlay, rendered, app_routes):
    assert consistency_problems(rendered[overlay], app_routes) == []


def test_probe_paths_answer_as_the_probes_expect(app_routes):
    # Before the models are warm: alive (no restart) but not ready (no traffic); an unknown path is no route.
    assert app_routes("/health/live") == 200
    assert app_routes("/health/ready") == 503
    assert app_routes("/metrics") == 200
    assert not is_get_route(app_routes("/health/nope"))


BREAKAGES = {
    "probe path": (lambda r: probes(one(r, "Deployment"))["readinessProbe"]["httpGet"].__setitem__(
        "path", "/healthz"), "readinessProbe path /healthz is not a GET route"),
    "probe port": (lambda r: probes(one(r, "Deployment"))["livenessProbe"]["httpGet"].__setitem__("port", "web"),
                   "livenessProbe port 'web'"),
    "unknown setting": (set_in_configmap("CENTAURUS_WORKERS", "2"), "CENTAURUS_WORKERS is not a setting"),
    "keys in the ConfigMap": (set_in_configmap("CENTAURUS_API_KEYS", "k"), "sets CENTAURUS_API_KEYS"),
    "port in the ConfigMap": (set_in_configmap("CENTAURUS_PORT", "9000"), "sets CENTAURUS_PORT"),
    "ops key": (set_in_configmap("CENTAURUS_OPS_REQUIRE_KEY", "true"), "httpGet probes cannot send"),
    "service selector": (lambda r: one(r, "Service")["spec"]["selector"].__setitem__("app", "other"),
                         "Service selector"),
    "root user": (lambda r: one(r, "Deployment")["spec"]["template"]["spec"]["securityContext"].__setitem__(
        "runAsUser", 0), "image's user"),
    "short startup": (lambda r: probes(one(r, "Deployment"))["startupProbe"].__setitem__("failureThreshold", 6),
                      "startupProbe allows 30 s"),
    "replicas": (lambda r: one(r, "Deployment")["spec"].__setitem__("replicas", 3), "sets replicas"),
    "service links": (lambda r: one(r, "Deployment")["spec"]["template"]["spec"].pop("enableServiceLinks"),
                      "enableServiceLinks"),
    "servicemonitor path": (lambda r: one(r, "ServiceMonitor")["spec"]["endpoints"][0].__setitem__(
        "path", "/prometheus"), "ServiceMonitor path /prometheus"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_consistency_checks_catch_a_broken_overlay(name, rendered, app_routes):
    breakage, expected = BREAKAGES[name]
    problems = problems_when_broken(rendered["gpu-prometheus"], breakage,
                                    lambda resources: consistency_problems(resources, app_routes))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_the_drain_the_server_starts_with(overlay, rendered, monkeypatch):
    config = one(rendered[overlay], "ConfigMap")["data"]
    settings, server = server_start(monkeypatch, {**config, "CENTAURUS_API_KEYS": "placeholder"})
    # The ConfigMap parses as settings, and the server listens where the probes knock.
    deployment = one(rendered[overlay], "Deployment")
    assert (server["host"], server["port"]) == ("0.0.0.0", container(deployment)["ports"][0]["containerPort"])
    assert settings.api_keys == ["placeholder"]
    # On SIGTERM uvicorn waits timeout_graceful_shutdown for open requests, then the app's lifespan drains the
    # pool for up to request_timeout_seconds (app/main.py: pool.close(timeout=...)).
    graceful = server["timeout_graceful_shutdown"]
    assert graceful > 0
    assert drain_problems(deployment, graceful, settings.request_timeout_seconds) == []
    # A longer request deadline in the ConfigMap without a longer grace period is caught.
    longer = {**config, "CENTAURUS_REQUEST_TIMEOUT_SECONDS": "600", "CENTAURUS_API_KEYS": "placeholder"}
    settings, server = server_start(monkeypatch, longer)
    assert drain_problems(deployment, server["timeout_graceful_shutdown"], settings.request_timeout_seconds)


def test_drain_check_needs_a_prestop_sleep(rendered):
    deployment = copy.deepcopy(one(rendered["cpu"], "Deployment"))
    assert drain_problems(deployment, 120, 120) == []
    container(deployment)["lifecycle"]["preStop"]["exec"]["command"] = ["sleep", "1"]
    assert drain_problems(deployment, 120, 120)
    del container(deployment)["lifecycle"]
    assert drain_problems(deployment, 120, 120)


def test_gpu_overlay_asks_for_a_gpu_and_cpu_overlay_does_not(rendered):
    compose_tags = dict(re.findall(r"^  (speech(?:-cpu)?):\n(?:    .*\n)*?    image: \$\{CENTAURUS_IMAGE:-"
                                   r"centaurus-speech\}:(\w+)$", COMPOSE, re.M))
    assert compose_tags == {"speech": "cuda", "speech-cpu": "cpu"}
    for overlay in ("gpu", "gpu-prometheus"):
        deployment = one(rendered[overlay], "Deployment")
        assert container(deployment)["image"] == "centaurus-speech:cuda"
        assert container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
            deployment["spec"]["template"]["spec"]["tolerations"]
        assert one(rendered[overlay], "ConfigMap")["data"]["CENTAURUS_DEVICE"] == "cuda"
    deployment = one(rendered["cpu"], "Deployment")
    resources = container(deployment)["resources"]
    assert container(deployment)["image"] == "centaurus-speech:cpu"
    assert "nvidia" not in yaml.safe_dump(rendered["cpu"])
    config = one(rendered["cpu"], "ConfigMap")["data"]
    assert config["CENTAURUS_DEVICE"] == "cpu"
    # One worker per requested core: the default (0) would count the node's cores, not the pod's.
    assert int(config["CENTAURUS_WORKERS_PER_DEVICE"]) == int(resources["requests"]["cpu"]) >= 1


def test_optional_pieces_stay_optional(rendered):
    base = build(K8S / "base")
    assert {r["kind"] for r in base} == {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
                                        "PodDisruptionBudget"}
    for overlay in ("gpu", "cpu"):
        assert all(r["apiVersion"].split("/")[0] in ("v1", "apps", "autoscaling", "policy")
                   for r in rendered[overlay]), "the plain overlays need no CRD"
    hpa = one(rendered["gpu-prometheus"], "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods", "Pods"]
    assert [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"][1:]] == ["centaurus_queue_depth",
                                                                                 "centaurus_active_streams"]


def test_queue_depth_metrics_are_the_services(metric_names):
    component = yaml.safe_load((K8S / "components" / "hpa-queue-depth" / "kustomization.yaml").read_text())
    used = set(re.findall(r"name: (centaurus_\w+)", yaml.safe_dump(component)))
    adapter = (K8S / "components" / "hpa-queue-depth" / "prometheus-adapter-values.yaml").read_text()
    used |= set(re.findall(r"(centaurus_\w+)", adapter))
    assert {"centaurus_queue_depth", "centaurus_active_streams"} <= used
    assert used <= metric_names, used - metric_names


def test_example_secret_is_a_marked_placeholder_the_deployment_reads(rendered):
    (secret,) = load_documents(K8S / "secret.example.yaml")
    reference = next(e for e in container(one(rendered["cpu"], "Deployment"))["env"]
                     if e["name"] == "CENTAURUS_API_KEYS")["valueFrom"]["secretKeyRef"]
    assert secret["metadata"]["name"] == reference["name"]
    assert list(secret["stringData"]) == [reference["key"]]
    assert "REPLACE-ME" in secret["stringData"][reference["key"]]
    assert "EXAMPLE ONLY" in (K8S / "secret.example.yaml").read_text()
    # Never deployed by an overlay, so the placeholder can never become a working key.
    for kustomization in K8S.rglob("kustomization.yaml"):
        assert "secret.example" not in re.sub(r"#.*", "", kustomization.read_text()), kustomization
