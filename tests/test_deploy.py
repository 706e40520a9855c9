"""The deployment files: every Kubernetes resource valid against the Kubernetes schemas (kubernetes-validate, offline),
and the pieces agreeing with each other and with the service (ports, labels, probes on routes that answer, shutdown
timing, the metric the autoscaler reads, the image's user)."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.support.prometheus import parse

kubernetes_validate = pytest.importorskip("kubernetes_validate")
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
GPU = KUBERNETES / "gpu"
KUSTOMIZATIONS = [KUBERNETES, BASE, GPU]
KUBECTL = shutil.which("kubectl")
KSERVE = ROOT / "deploy" / "kserve"
VERSIONS = ["1.30.0", "1.33.0"]
CORE_API = re.compile(r"^(v1|apps/v1|policy/v1|autoscaling/v2)$")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@functools.cache
def _rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    """The resources `kubectl kustomize` renders from a kustomization, as a user's `kubectl apply -k` would send."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the kustomizations are rendered with kubectl kustomize")
    done = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, f"kubectl kustomize {directory.relative_to(ROOT)}: {done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def _resources(directory: Path = BASE) -> dict[str, dict[str, Any]]:
    """Every resource a kustomization renders, by kind (copies: a test may change them)."""
    return {document["kind"]: copy.deepcopy(document) for document in _rendered(directory)}


def _gpu_deployment() -> dict[str, Any]:
    return _resources(GPU)["Deployment"]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_the_kustomizations_list_every_file():
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"] == ["base"]
    gpu = yaml.safe_load((GPU / "kustomization.yaml").read_text())
    assert gpu["resources"] == ["../base"] and gpu["patches"] == [{"path": "deployment-gpu.yaml"}]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_kustomization_renders_and_every_resource_is_valid(directory, version):
    rendered = _rendered(directory)
    checked = [r for r in rendered if CORE_API.match(r["apiVersion"])]
    assert sorted(r["kind"] for r in checked) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                                                  "PodDisruptionBudget", "Service"]
    assert sorted(r["kind"] for r in rendered if r not in checked) == ["ServiceMonitor"]
    for resource in checked:
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_default_entry_is_the_base_and_the_gpu_overlay_changes_only_the_deployment():
    assert _rendered(KUBERNETES) == _rendered(BASE)
    base, gpu = _resources(BASE), _resources(GPU)
    assert {kind: r for kind, r in gpu.items() if kind != "Deployment"} == {
        kind: r for kind, r in base.items() if kind != "Deployment"}
    assert gpu["Deployment"] != base["Deployment"]


def test_an_invalid_resource_is_caught():
    broken = _resources()["Deployment"]
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_custom_resources_have_the_fields_their_operators_need():
    """ServiceMonitor (Prometheus Operator) and InferenceService (KServe) are not in the Kubernetes schemas, and their
    published CRDs are not vendored here: their required fields and types are checked by hand."""
    monitor = _resources()["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert isinstance(monitor["spec"]["selector"]["matchLabels"], dict)
    assert all(isinstance(e["port"], str) and e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    (service,) = _documents(KSERVE / "inferenceservice.yaml")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    (container,) = service["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container" and container["ports"][0]["containerPort"] == 8000
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
                                  "spec": {"containers": [container]}}, VERSIONS[-1], strict=True)


def test_the_service_the_budget_and_the_monitor_select_the_pods():
    resources = _resources()
    labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert resources["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    assert resources["Service"]["spec"]["selector"] == labels
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert resources["ServiceMonitor"]["spec"]["selector"]["matchLabels"] == resources["Service"]["metadata"]["labels"]
    port_names = {p["name"] for p in _container(resources["Deployment"])["ports"]}
    assert resources["Service"]["spec"]["ports"][0]["targetPort"] in port_names
    assert {e["port"] for e in resources["ServiceMonitor"]["spec"]["endpoints"]} <= {
        p["name"] for p in resources["Service"]["spec"]["ports"]}
    target = resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", resources["Deployment"]["metadata"]["name"])


def test_the_probes_and_the_autoscaling_metric_exist_on_the_service(client):
    container = _container(_resources()["Deployment"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert client.get(container[probe]["httpGet"]["path"]).status_code == 200, probe
    (kserve,) = _documents(KSERVE / "inferenceservice.yaml")
    for probe in ("readinessProbe", "livenessProbe"):
        assert client.get(kserve["spec"]["predictor"]["containers"][0][probe]["httpGet"]["path"]).status_code == 200
    metric = _resources()["HorizontalPodAutoscaler"]["spec"]["metrics"][1]["pods"]["metric"]["name"]
    rules = yaml.safe_load(_resources()["ConfigMap"]["data"]["config.yaml"])["rules"]
    assert rules[0]["name"]["as"] == metric
    client.post("/predict/walkthrough", json={"inputs": [[1, 0.8, 0.2]]})  # a batcher exists: its queue is exported
    assert any(name == metric for name, _ in parse(client.get("/metrics").text))


def test_shutdown_timing_fits_in_the_grace_period():
    deployment = _resources()["Deployment"]
    container = _container(deployment)
    env = _env(container)
    delay, timeout = int(env["LRP_SHUTDOWN_DELAY_S"]), int(env["LRP_REQUEST_TIMEOUT_S"])
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(delay)]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 2 * delay + timeout


def test_the_pod_runs_as_the_image_s_user_on_a_read_only_root_with_read_only_models():
    deployment = _resources()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert user is not None and pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    env = _env(container)
    assert mounts["models"]["readOnly"] and mounts["models"]["mountPath"] == env["LRP_MODELS_DIR"]
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert int(env["LRP_PORT"]) == container["ports"][0]["containerPort"]
    expose = re.search(r"^EXPOSE (\d+)", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert expose is not None and int(expose.group(1)) == container["ports"][0]["containerPort"]
    assert env["LRP_ADMIN_TOKEN"]["secretKeyRef"]["name"] == "lrp-admin"


def test_the_gpu_variant_requests_a_gpu_and_runs_on_cuda():
    container = _container(_gpu_deployment())
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1 == container["resources"]["limits"][
        "nvidia.com/gpu"]
    env = _env(container)
    assert env["LRP_DEVICE"] == "cuda" and env["LRP_MODELS_DIR"] == "/models"  # the base's settings kept
    assert container["livenessProbe"] == _container(_resources()["Deployment"])["livenessProbe"]
