"""docker/k8s, checked offline: every manifest against the Kubernetes API schemas, and the shape
the service relies on (probes and ports, settings names, the image, the kustomizations).

No cluster runs here. kubernetes-validate carries the API's JSON schemas for each Kubernetes
version; its strict schemas refuse unknown fields, so a misspelt key fails as a wrong type does.
Where kubectl is installed, its kustomize also renders both entry points (the base, gpu/).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from service.settings import unknown_names

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "docker" / "k8s"
BASE = K8S / "base"
GPU = K8S / "gpu"
KUSTOMIZATION = "kustomization.yaml"
KUBERNETES_VERSIONS = ("1.30", "1.37")
"""The oldest Kubernetes the manifests are meant for, and the newest the pinned kubernetes-validate knows."""
AWS_NAMES = frozenset({"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"})
"""The standard variables boto3 reads for the S3 model store: endpoint, keys, region."""
PLACEHOLDER = "REPLACE_ME"
"""Marks each value a user must replace before applying."""
Doc = dict[str, Any]


def documents(path: Path) -> list[Doc]:
    """The non-empty YAML documents of one file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def resources() -> list[Doc]:
    """Every Kubernetes object under docker/k8s (the kustomizations are not objects of the API)."""
    return [doc for path in manifest_files() if path.name != KUSTOMIZATION for doc in documents(path)]


def validate(doc: Doc, version: str) -> None:
    """The one validator call of this file: strict (unknown fields fail) at a fixed Kubernetes version."""
    kubernetes_validate.validate(doc, version, strict=True)


def assert_valid(doc: Doc, version: str) -> None:
    """``validate``, failing with the object, the field and the reason only (not the schema's text)."""
    try:
        validate(doc, version)
        return
    except kubernetes_validate.ValidationError as e:
        reason = f"{'.'.join(str(part) for part in e.path)}: {e.message}"
    pytest.fail(f"{doc['kind']} {doc['metadata']['name']}, Kubernetes {version}: {reason}", pytrace=False)


def find(kind: str, name: str) -> Doc:
    [doc] = [doc for doc in resources() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return doc


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def workloads() -> list[Doc]:
    return [doc for doc in resources() if doc["kind"] in ("Deployment", "StatefulSet")]


def atnl_containers() -> Iterator[Doc]:
    for name in ("atnl-api", "atnl-worker"):
        yield from pod_spec(find("Deployment", name))["containers"]


def env_value(container: Doc, name: str) -> str:
    [value] = [item["value"] for item in container["env"] if item["name"] == name]
    return value


def container_port(container: Doc, port: int | str) -> int:
    """A probe's or Service's port (a number, or the name of one of the container's ports) as a number."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def env_names(container: Doc) -> set[str]:
    """The variables a container gets: its ``env`` and every key of the ConfigMaps and Secrets of its ``envFrom``."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        obj = find(kind, ref["name"])
        names |= set(obj.get("data", {})) | set(obj.get("stringData", {}))
    return names


def compose() -> Doc:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_follows_the_kubernetes_schemas(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        if path.name == KUSTOMIZATION:
            assert (doc["apiVersion"], doc["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
        else:
            assert_valid(doc, version)


def _misspell_probe(deployment: Doc) -> None:
    container = pod_spec(deployment)["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")


def _replicas_as_words(deployment: Doc) -> None:
    deployment["spec"]["replicas"] = "two"


def _container_without_name(deployment: Doc) -> None:
    del pod_spec(deployment)["containers"][0]["name"]


@pytest.mark.parametrize("breakage", [_misspell_probe, _replicas_as_words, _container_without_name])
def test_the_validator_rejects_a_broken_api_deployment(breakage: Callable[[Doc], None]) -> None:
    """The api Deployment passes, and fails once broken: the validation above cannot pass vacuously."""
    deployment = find("Deployment", "atnl-api")
    assert_valid(deployment, KUBERNETES_VERSIONS[-1])
    broken = copy.deepcopy(deployment)
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, KUBERNETES_VERSIONS[-1])


def test_kustomizations_list_every_file() -> None:
    base = documents(BASE / KUSTOMIZATION)[0]
    listed = base["resources"]
    on_disk = sorted(p.name for p in BASE.glob("*.yaml") if p.name != KUSTOMIZATION)
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)
    assert documents(K8S / KUSTOMIZATION)[0]["resources"] == ["base"]
    assert documents(GPU / KUSTOMIZATION)[0]["resources"] == ["../base"]
    objects_in = {p.parent for p in manifest_files() if p.name != KUSTOMIZATION}
    assert objects_in == {BASE}, "an object outside base/ would be in no kustomization"
    [namespace] = [doc for doc in resources() if doc["kind"] == "Namespace"]
    assert base["namespace"] == namespace["metadata"]["name"]


def apply_json_patch_adds(doc: Doc, ops: list[Doc]) -> Doc:
    """``doc`` with the RFC 6902 ``add`` operations of a kustomize patch applied (the only op gpu/ uses)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = op["value"]
    return out


def test_gpu_overlay_gives_each_worker_one_gpu() -> None:
    [patch] = documents(GPU / KUSTOMIZATION)[0]["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "atnl-worker"}
    worker = apply_json_patch_adds(find("Deployment", "atnl-worker"), yaml.safe_load(patch["patch"]))
    for version in KUBERNETES_VERSIONS:
        assert_valid(worker, version)
    assert pod_spec(worker)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: kustomize's own rendering is not checked")
@pytest.mark.parametrize("entry", [K8S, GPU], ids=["docker/k8s", "docker/k8s/gpu"])
def test_kubectl_kustomize_renders_valid_objects(entry: Path) -> None:
    """``kubectl kustomize`` (no cluster) renders every object of base/, in the namespace, schema-valid."""
    rendered = subprocess.run(["kubectl", "kustomize", str(entry)], capture_output=True, text=True, timeout=60, check=True)
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in objects) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in resources()
    )
    for doc in objects:
        assert_valid(doc, KUBERNETES_VERSIONS[-1])
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "atnl"
    [worker] = [d for d in objects if d["metadata"]["name"] == "atnl-worker"]
    gpus = pod_spec(worker)["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == (1 if entry == GPU else None)


def test_api_probes_hit_readyz_and_healthz_on_the_port_the_service_targets() -> None:
    deployment, service = find("Deployment", "atnl-api"), find("Service", "atnl-api")
    assert deployment["spec"]["replicas"] == 2
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    [container] = pod_spec(deployment)["containers"]
    [service_port] = service["spec"]["ports"]
    port = container_port(container, service_port["targetPort"])
    assert port == int(env_value(container, "ATNL_PORT"))
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: get["path"] for kind, get in probes.items()} == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert {container_port(container, get["port"]) for get in probes.values()} == {port}
    assert env_value(container, "ATNL_HOST") == "0.0.0.0"


def test_env_names_are_settings_or_the_s3_variables() -> None:
    for container in atnl_containers():
        names = env_names(container)
        atnl = {name for name in names if name.startswith("ATNL_")}
        assert unknown_names(dict.fromkeys(atnl, "")) == [], container["name"]
        assert names - atnl <= AWS_NAMES, container["name"]
        assert AWS_NAMES <= names and "ATNL_MODEL_STORE" in names, container["name"]


def test_env_references_name_existing_keys() -> None:
    for workload in workloads():
        for container in pod_spec(workload)["containers"]:
            env_names(container)  # every envFrom source exists
            for item in container.get("env", []):
                for kind, ref in item.get("valueFrom", {}).items():
                    obj = find({"secretKeyRef": "Secret", "configMapKeyRef": "ConfigMap"}[kind], ref["name"])
                    assert ref["key"] in {**obj.get("data", {}), **obj.get("stringData", {})}, item


def test_store_and_redis_settings_point_at_the_s3_bucket_and_the_redis_service() -> None:
    config = find("ConfigMap", "atnl-config")["data"]
    assert config["ATNL_MODEL_STORE"] == "s3://atnl/models"
    url = urlsplit(config["ATNL_REDIS_URL"])
    redis, service = find("StatefulSet", "redis"), find("Service", url.hostname or "")
    assert redis["spec"]["replicas"] == 1
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    [port] = service["spec"]["ports"]
    assert port["port"] == url.port == container_port(pod_spec(redis)["containers"][0], port["targetPort"])


def test_containers_run_the_image_and_commands_compose_does() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        [container] = pod_spec(find("Deployment", f"atnl-{name}"))["containers"]
        assert container["image"] == services[name]["image"]
        assert container["command"] == services[name]["command"]
    assert pod_spec(find("StatefulSet", "redis"))["containers"][0]["image"] == services["redis"]["image"]


def test_pods_run_as_non_root_on_a_read_only_root_with_writable_scratch() -> None:
    """What the namespace's "restricted" Pod Security Standard demands, plus the writable emptyDirs
    the service needs under a read-only root: /tmp and its model cache."""
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "docker" / "Dockerfile").read_text())
    assert uid, "docker/Dockerfile no longer creates its user with useradd --uid"
    for workload in workloads():
        pod = pod_spec(workload)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] and context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False  # Service links would add ATNL_API_* variables
        if workload["metadata"]["name"].startswith("atnl-"):
            assert context["runAsUser"] == int(uid[1])  # a number: runAsNonRoot cannot check the name "atnl"
        empty_dirs = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
            if container["image"].startswith("atnl"):
                scratch = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
                assert {"/tmp", env_value(container, "ATNL_MODEL_CACHE")} <= scratch


def test_secret_values_and_the_s3_endpoint_are_marked_placeholders() -> None:
    secrets = [doc for doc in resources() if doc["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        assert not secret.get("data"), "a Secret's values stay readable placeholders (stringData)"
        assert all(PLACEHOLDER in value for value in secret["stringData"].values()), secret["metadata"]["name"]
    assert PLACEHOLDER in find("ConfigMap", "atnl-config")["data"]["AWS_ENDPOINT_URL"]
