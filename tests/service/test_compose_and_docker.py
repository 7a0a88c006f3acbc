"""docker-compose.yml against the Compose Specification schema, and the Dockerfile, checked statically."""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose_schema() -> dict:
    """The Compose Specification JSON schema as vendored by the check-jsonschema package (no download)."""
    text = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that knows Compose's ``!reset`` / ``!override`` merge tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor(
    "!override", lambda loader, node: loader.construct_mapping(node) if isinstance(node, yaml.MappingNode) else None
)


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cpu.yml"])
def test_compose_files_follow_the_compose_specification(name: str) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(load(name)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_services_volumes_gpu_and_health(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]

    api, worker = services["api"], services["worker"]
    assert api["command"] == ["atnl", "serve"] and worker["command"] == ["atnl", "worker"]
    assert api["build"] == worker["build"] and api["image"] == worker["image"]
    store = api["environment"]["ATNL_MODEL_STORE"]
    assert worker["environment"]["ATNL_MODEL_STORE"] == store
    assert api["volumes"] == worker["volumes"] == [f"models:{store}"]
    assert "models" in compose["volumes"] and "redis-data" in compose["volumes"]
    for svc in (api, worker):
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["environment"]["ATNL_REDIS_URL"].startswith("redis://redis:")
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        assert svc["healthcheck"]["test"][0] == "CMD"
    assert api["environment"]["ATNL_HOST"] == "0.0.0.0"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    # `--scale worker=3` needs no fixed name and no host port on the worker.
    assert "container_name" not in worker and "ports" not in worker


def test_compose_requires_a_token_publishes_on_loopback_and_caps_gpu_memory(compose: dict) -> None:
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    for svc in (api, worker):
        token = svc["environment"]["ATNL_API_TOKEN"]
        assert token.startswith("${ATNL_API_TOKEN:?"), "compose must refuse to start without a token"
        fraction = re.fullmatch(r"\$\{\w+:-([0-9.]+)\}", svc["environment"]["ATNL_CUDA_MEMORY_FRACTION"])
        assert fraction and 0 < float(fraction.group(1)) < 1
    shares = [float(re.search(r":-([0-9.]+)", s["environment"]["ATNL_CUDA_MEMORY_FRACTION"]).group(1)) for s in (api, worker)]
    assert sum(shares) <= 1.0
    (port,) = api["ports"]
    assert port.startswith("${ATNL_PUBLISH_ADDRESS:-127.0.0.1}:"), port


def test_cpu_override_drops_the_gpu_reservation() -> None:
    override = load("docker-compose.cpu.yml")
    for name in ("api", "worker"):
        assert override["services"][name]["deploy"] is None  # !reset
        assert override["services"][name]["environment"]["ATNL_DEVICE"] == "cpu"
    assert "docker-compose.cpu.yml" in (ROOT / "docker-compose.yml").read_text()  # documented where users look


def test_dockerfile() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    base = re.search(r"ARG BASE_IMAGE=(\S+)", text)
    assert base and "pytorch/pytorch" in base.group(1) and "cuda" in base.group(1)
    assert any(line.startswith("FROM ") for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    last_run = max(i for i, line in enumerate(lines) if line.startswith("RUN "))
    assert lines.index(f"USER {users[-1]}") > last_run, "the image must end as the non-root user"
    assert any(line.startswith("HEALTHCHECK") for line in lines) and "/healthz" in text
    assert 'CMD ["atnl", "serve"]' in lines and "EXPOSE 8000" in lines
    assert "COPY models" in text and "COPY service" in text
    assert not re.search(r"^ADD\s+https?://", text, re.M)
