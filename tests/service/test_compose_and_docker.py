"""docker-compose.yml, the Dockerfile and the image's lock file, checked statically.

The compose files are checked against the Compose Specification schema and against what
Debian's docker-compose 1.29.2 can read; `make compose-test` (scripts/compose_test.py)
builds the images and runs the stack for real.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.cpu.yml", "docker/compose.local-images.yml"]
DEBIAN_COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
"""The schema docker-compose 1.29.2 validates with, where Debian's package is installed."""


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


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per FROM."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "docker" / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_follow_the_compose_specification(name: str) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(load(name)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_file_is_read_by_docker_compose_1_29() -> None:
    """The engine Debian ships (compose-test runs it) rejects `name:`, `env_file` entries with
    `path`/`required`, and cannot parse YAML tags: docker-compose.yml uses none of them."""
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)  # a tag would raise here
    assert "name" not in compose and "version" not in compose
    for svc in compose["services"].values():
        assert isinstance(svc.get("env_file", ""), str), "1.29 reads env_file as a string (or a list of strings) only"
    if DEBIAN_COMPOSE_SCHEMA.exists():  # where Debian's docker-compose is installed, its own schema too
        schema = json.loads(DEBIAN_COMPOSE_SCHEMA.read_text())
        errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(compose))
        assert not errors, [e.message for e in errors]


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
        assert svc["env_file"] == "${ATNL_ENV_FILE:-.env}"
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


def test_local_images_override_only_names_images(compose: dict) -> None:
    override = load("docker/compose.local-images.yml")
    assert set(override) == {"services"} and set(override["services"]) == set(compose["services"])
    for svc in override["services"].values():
        assert set(svc) == {"image"}
    assert override["services"]["api"]["image"] == override["services"]["worker"]["image"]


def test_dockerfile_builds_a_venv_and_runs_as_a_user() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    base = re.search(r"ARG BASE_IMAGE=(\S+)", text)
    assert base and "pytorch/pytorch" in base.group(1) and "cuda" in base.group(1)
    build, runtime = dockerfile_stages()
    assert build[0] == "FROM ${BASE_IMAGE} AS build" and runtime[0] == "FROM ${BASE_IMAGE}"
    # Dependencies: exactly the lock file, before the code, so a code change reuses that layer.
    install = next(i for i, line in enumerate(build) if "-r /tmp/requirements.txt" in line)
    assert "--no-deps" in build[install] and "COPY docker/requirements.txt /tmp/requirements.txt" in build[:install]
    assert build.index("COPY . /src") > install
    # Runtime: the base and the environment built above; no installer or compiler runs there.
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert not any(tool in line for line in runtime for tool in ("pip install", "apt-get", "gcc", "build-essential"))
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    last_run = max(i for i, line in enumerate(runtime) if line.startswith(("RUN ", "COPY ")))
    assert runtime.index(f"USER {users[-1]}") > last_run, "the image must end as the non-root user"
    assert any(line.startswith("HEALTHCHECK") for line in runtime) and "/healthz" in text
    assert 'CMD ["atnl", "serve"]' in runtime and "EXPOSE 8000" in runtime
    assert 'VOLUME ["/var/lib/atnl/models"]' in runtime
    assert not re.search(r"^ADD\s+https?://", text, re.M)


def test_build_context_holds_every_package() -> None:
    """`COPY . /src` sees what .dockerignore lets in: each package the project installs."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"]
    assert rules[0] == "*", "the context is a whitelist (no .venv, var/ or reports/ sent to the engine)"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= allowed and {"pyproject.toml", "README.md", "docker/requirements.txt"} <= allowed


def test_lock_file_pins_the_runtime_dependencies() -> None:
    """docker/requirements.txt: every package at one exact version, each project dependency
    (torch comes with the base image) at a version its specifier admits, no dev or plotting tools."""
    lines = [line.strip() for line in (ROOT / "docker" / "requirements.txt").read_text().splitlines()]
    pins = {}
    for line in lines:
        if line and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.marker and not req.extras, line
            pins[canonicalize_name(req.name)] = spec.version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name != "torch":
            assert name in pins and req.specifier.contains(pins[name], prereleases=True), (line, pins.get(name))
    plotting = {canonicalize_name(Requirement(line).name) for line in project["optional-dependencies"]["plots"]}
    assert not plotting & pins.keys(), "plotting is an extra, not in the image"
    assert not {"torch", "pandas", "pytest", "hypothesis", "ruff", "mypy"} & pins.keys()
