"""The files of docker/ as the tests read them, and the Kubernetes manifests of docker/k8s rendered and checked
(shared by test_docker.py, test_k8s.py and test_k8s_wyoming.py).

kustomize's semantics for the subset docker/k8s uses (in Python, so no binary is needed), strict validation against
the API schemas of a fixed Kubernetes version (kubernetes-validate), and the checks of a rendered overlay against
the service: probes, ports, settings, security, scaling and the drain.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import kubernetes_validate
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
COMPOSE = (ROOT / "docker" / "compose.yaml").read_text()

# The schemas the manifests must satisfy (kubernetes-validate 1.37.0 ships 1.25 to 1.37). Nothing here needs an
# API newer than autoscaling/v2 and policy/v1, so newer clusters accept the same files.
KUBERNETES_VERSION = "1.32.0"
OVERLAYS = ["gpu", "cpu", "gpu-prometheus"]
# Custom resources kubernetes-validate has no schema for; checked by hand in consistency_problems.
CUSTOM_KINDS = {"ServiceMonitor"}
# Fixed by the image (docker/Dockerfile ENV): the probes and the Service rely on them.
SET_BY_IMAGE = {"CENTAURUS_HOST", "CENTAURUS_PORT"}


# ---- rendering ------------------------------------------------------------------------------------------------
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "components", "images", "patches"}


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def build(directory: Path, accumulated: list[dict] | None = None) -> list[dict]:
    """``kustomize build directory`` for what docker/k8s uses: resources, components, images and JSON 6902
    patches with a kind/name target. Anything else raises, so that a manifest never silently renders wrong here.
    Components get the resources accumulated so far, as in kustomize."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise NotImplementedError(f"{directory}: {sorted(unknown)} (tests/docker/k8s_testkit.py renders only "
                                  f"{sorted(KUSTOMIZATION_FIELDS)})")
    expected_kind = "Kustomization" if accumulated is None else "Component"
    if kustomization.get("kind") != expected_kind:
        raise ValueError(f"{directory}: kind {kustomization.get('kind')!r}, expected {expected_kind}")
    resources = list(accumulated or [])
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += build(path) if path.is_dir() else load_documents(path)
    for entry in kustomization.get("components", []):
        resources = build(directory / entry, resources)
    for patch in kustomization.get("patches", []):
        apply_patch(directory, patch, resources)
    for image in kustomization.get("images", []):
        set_image(image, resources)
    return resources


def apply_patch(directory: Path, patch: dict, resources: list[dict]) -> None:
    target = patch.get("target", {})
    if set(patch) - {"target", "patch", "path"} or set(target) - {"kind", "name"} or not target:
        raise NotImplementedError(f"patch {patch}: only JSON 6902 patches with a kind/name target")
    operations = yaml.safe_load(patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise NotImplementedError(f"patch for {target}: strategic merge patches are not rendered here")
    matched = [r for r in resources if all(r[k] == v if k == "kind" else r["metadata"][k] == v
                                           for k, v in target.items())]
    if not matched:
        raise ValueError(f"patch target {target} matches no resource")
    for resource in matched:
        for operation in operations:
            json_patch(resource, operation)


def json_patch(document: dict, operation: dict) -> None:
    """One RFC 6902 operation (add, replace, remove) applied in place."""
    op, path = operation["op"], operation["path"]
    if op not in ("add", "replace", "remove"):
        raise NotImplementedError(f"JSON patch op {op!r}")
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, value)
        elif op == "replace":
            node[index] = value
        else:
            del node[index]
    else:
        if op != "add" and last not in node:
            raise KeyError(f"{op} {path}: no such member")
        if op == "remove":
            del node[last]
        else:
            node[last] = value


def set_image(image: dict, resources: list[dict]) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise NotImplementedError(f"image {image}: only name, newName and newTag")
    for resource in resources:
        for container in (pod_spec(resource) or {}).get("containers", []):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def pod_spec(resource: dict) -> dict | None:
    return resource.get("spec", {}).get("template", {}).get("spec") if resource["kind"] == "Deployment" else None


def kustomize_binary() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def by_identity(resources: list[dict]) -> dict[tuple, dict]:
    return {(r["apiVersion"], r["kind"], r["metadata"]["name"]): r for r in resources}


def one(resources: list[dict], kind: str) -> dict:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


# ---- broken copies (each check must be seen to fail) ----------------------------------------------------------
def set_in_configmap(key: str, value: str) -> Callable[[list[dict]], None]:
    """A breakage that sets one ConfigMap entry: most broken overlays differ from a good one by a single setting."""
    return lambda resources: one(resources, "ConfigMap")["data"].__setitem__(key, value)


def problems_when_broken(resources: list[dict], breakage: Callable[[list[dict]], None],
                         check: Callable[[list[dict]], list[str]]) -> list[str]:
    """``check`` on a broken deep copy of ``resources``, so a can-it-fail test leaves the shared rendering intact."""
    broken = copy.deepcopy(resources)
    breakage(broken)
    return check(broken)


# ---- schema validation ----------------------------------------------------------------------------------------
def schema_errors(resource: dict) -> str | None:
    """The first schema error of ``resource`` (strict: unknown fields are errors), or None."""
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = "/".join(map(str, err.absolute_path))
        return f"{resource['kind']}/{resource['metadata']['name']} at {where or '/'}: {err.message}"
    except kubernetes_validate.SchemaNotFoundError:
        if resource["kind"] not in CUSTOM_KINDS:
            raise
    return None


# ---- consistency with the service -----------------------------------------------------------------------------
def is_get_route(status: int) -> bool:
    return status not in (404, 405)

def container(deployment: dict) -> dict:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def probes(deployment: dict) -> dict[str, dict]:
    c = container(deployment)
    return {kind: c[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in c}


def consistency_problems(resources: list[dict], routes) -> list[str]:
    """What in a rendered overlay disagrees with itself or with the service ([] when all agrees); ``routes``
    maps a path to the status the app answers a GET of it with."""
    problems: list[str] = []
    deployment, service, config = (one(resources, k) for k in ("Deployment", "Service", "ConfigMap"))
    spec = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects_pods(selector: dict, what: str) -> None:
        if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{what} selector {selector} does not select the pods {pod_labels}")

    selects_pods(deployment["spec"]["selector"]["matchLabels"], "Deployment")
    selects_pods(service["spec"]["selector"], "Service")
    selects_pods(one(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], "PodDisruptionBudget")

    # Ports: the image listens on CENTAURUS_PORT; probes and the Service reach it by the container port's name.
    image_port = int(re.search(r"CENTAURUS_PORT=(\d+)", DOCKERFILE).group(1))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if list(ports.values()) != [image_port]:
        problems.append(f"container ports {ports}, the image listens on {image_port} only")
    for kind, probe in probes(deployment).items():
        get = probe.get("httpGet")
        if get is None:
            continue
        if get["port"] not in ports and get["port"] != image_port:
            problems.append(f"{kind} port {get['port']!r} is not a container port")
        if not is_get_route(routes(get["path"])):
            problems.append(f"{kind} path {get['path']} is not a GET route of the app")
    for port in service["spec"]["ports"]:
        if port["targetPort"] not in ports and port["targetPort"] != image_port:
            problems.append(f"Service targetPort {port['targetPort']!r} is not a container port")
    if probes(deployment).get("readinessProbe", {}).get("httpGet", {}).get("path") != "/health/ready":
        problems.append("readiness must be /health/ready (ready once every model is warm)")
    if probes(deployment).get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health/live":
        problems.append("liveness must be /health/live (a pod still loading or busy is alive)")
    # The startup probe covers at least the image's own health check start period (model load and warm-up).
    start_period = int(re.search(r"--start-period=(\d+)s", DOCKERFILE).group(1))
    startup = probes(deployment).get("startupProbe")
    window = startup and startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    if not window or window < start_period:
        problems.append(f"startupProbe allows {window} s, the image's start period is {start_period} s")

    # Settings: the ConfigMap holds real CENTAURUS_* settings, never the keys nor what the image fixes.
    settings = {f"CENTAURUS_{name.upper()}" for name in Settings.model_fields}
    data = config.get("data", {})
    for key in sorted(set(data) - settings):
        problems.append(f"ConfigMap key {key} is not a setting of app/settings.py")
    for key in sorted(set(data) & (SET_BY_IMAGE | {"CENTAURUS_API_KEYS"})):
        problems.append(f"ConfigMap sets {key}, which belongs to the image or the Secret")
    if [source.get("configMapRef", {}).get("name") for source in c.get("envFrom", [])] != [
            config["metadata"]["name"]]:
        problems.append("the container does not take its environment from the ConfigMap")
    keys = [e for e in c.get("env", []) if e["name"] == "CENTAURUS_API_KEYS"]
    if len(keys) != 1 or "secretKeyRef" not in keys[0].get("valueFrom", {}) or \
            keys[0]["valueFrom"]["secretKeyRef"].get("optional"):
        problems.append("CENTAURUS_API_KEYS must come from a required Secret")
    if str(data.get("CENTAURUS_OPS_REQUIRE_KEY", "false")).lower() in ("true", "1", "yes", "on") and any(
            "httpGet" in p for p in probes(deployment).values()):
        problems.append("OPS_REQUIRE_KEY makes /health/* need a key, which httpGet probes cannot send")
    if spec.get("enableServiceLinks", True):
        problems.append("enableServiceLinks: Service variables like CENTAURUS_PORT=tcp://... would reach Settings")

    # Security: the image's unprivileged user, no privilege, a read-only root with /tmp writable.
    uid = int(re.search(r"useradd .*--uid (\d+)", DOCKERFILE).group(1))
    pod_security, security = spec.get("securityContext", {}), c.get("securityContext", {})
    if pod_security.get("runAsUser") != uid or not pod_security.get("runAsNonRoot"):
        problems.append(f"pods must run as the image's user {uid}, non-root")
    if security.get("allowPrivilegeEscalation") is not False or security.get("capabilities", {}).get(
            "drop") != ["ALL"]:
        problems.append("the container must drop every capability and forbid privilege escalation")
    if security.get("readOnlyRootFilesystem") and "/tmp" not in {m["mountPath"] for m in c.get("volumeMounts", [])}:
        problems.append("a read-only root needs a writable /tmp (uploads are spooled there)")

    # Scaling: the autoscaler drives this Deployment; the budget leaves a pod serving.
    hpa = one(resources, "HorizontalPodAutoscaler")
    if hpa["spec"]["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": deployment["metadata"]["name"]}:
        problems.append(f"HPA scales {hpa['spec']['scaleTargetRef']}, not the Deployment")
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets replicas, which every apply would reset under the HPA")
    if hpa["spec"].get("minReplicas", 1) < 2:
        problems.append("minReplicas < 2: a drain or a disruption leaves no pod serving")
    for monitor in (r for r in resources if r["kind"] == "ServiceMonitor"):
        selects = monitor["spec"]["selector"]["matchLabels"]
        if any(service["metadata"].get("labels", {}).get(k) != v for k, v in selects.items()):
            problems.append(f"ServiceMonitor selects {selects}, not the Service's labels")
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in {p["name"] for p in service["spec"]["ports"]}:
                problems.append(f"ServiceMonitor port {endpoint['port']!r} is not a Service port")
            if not is_get_route(routes(endpoint.get("path", "/metrics"))):
                problems.append(f"ServiceMonitor path {endpoint.get('path')} is not a GET route of the app")
    return problems


def drain_problems(deployment: dict, graceful_shutdown: float, pool_drain: float) -> list[str]:
    """The grace period must cover preStop, then uvicorn's graceful shutdown, then the pool's drain."""
    spec = deployment["spec"]["template"]["spec"]
    command = container(deployment).get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(command) != 2 or command[0] != "sleep" or not command[1].isdigit() or int(command[1]) < 5:
        return [f"preStop {command}: a sleep of at least 5 s lets endpoints and load balancers drop the pod"]
    needed = int(command[1]) + graceful_shutdown + pool_drain + 10  # + stopping the worker processes
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace < needed:
        return [f"terminationGracePeriodSeconds {grace} < preStop {command[1]} + graceful shutdown "
                f"{graceful_shutdown} + pool drain {pool_drain} + 10"]
    return []


def server_start(monkeypatch, environment: dict[str, str]) -> tuple[Settings, dict]:
    """Run ``centaurus-speech serve`` as the container would (the image's ENV, then the pod's), with uvicorn and
    the app replaced: the settings the app gets and uvicorn's arguments."""
    import uvicorn

    import app.main
    import model_zoo.runtime
    from app import cli

    for name in [n for n in os.environ if n.startswith("CENTAURUS_")]:
        monkeypatch.delenv(name)
    for name, value in re.findall(r"(CENTAURUS_[A-Z_]+)=(\S+)", DOCKERFILE):
        monkeypatch.setenv(name, value)
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    seen: dict = {}
    monkeypatch.setattr(app.main, "create_app", lambda settings, **_: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.setdefault("uvicorn", kwargs))
    monkeypatch.setattr(model_zoo.runtime, "keep_freed_memory", lambda: None)
    monkeypatch.setattr(model_zoo.runtime, "freeze_loaded_objects", lambda: 0)
    assert cli.main(["serve"]) == 0
    return seen["settings"], seen["uvicorn"]
