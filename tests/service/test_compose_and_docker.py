"""docker-compose.yml and its overrides, the Dockerfiles and the image's lock files, checked statically.

The compose files are checked against the Compose Specification schema and against what
Debian's docker-compose 1.29.2 can read; the many-host override (docker-compose.scale.yml)
through its merge with docker-compose.yml, done here by the specification's merge rules (and
compared with `docker compose config` where Compose v2 is installed). `make compose-test`
(scripts/compose_test.py) builds the images and runs both stacks for real.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [
    "docker-compose.yml",
    "docker-compose.cpu.yml",
    "docker-compose.scale.yml",
    "docker/compose.local-images.yml",
    "docker/compose.local-images.scale.yml",
]
SCALED = ["docker-compose.yml", "docker-compose.cpu.yml", "docker-compose.scale.yml"]
"""The many-host stack on a CPU-only host, as docs/DEPLOYMENT.md runs it."""
DEBIAN_COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
"""The schema docker-compose 1.29.2 validates with, where Debian's package is installed."""


def compose_schema() -> dict:
    """The Compose Specification JSON schema as vendored by the check-jsonschema package (no download)."""
    text = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)


class Reset:
    """A value tagged ``!reset``: the merge drops the key."""


class Override:
    """A value tagged ``!override``: the merge replaces the earlier value with it."""


class ResetDict(Reset, dict):
    pass


class ResetList(Reset, list):
    pass


class OverrideDict(Override, dict):
    pass


class OverrideList(Override, list):
    pass


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that knows Compose's ``!reset`` / ``!override`` merge tags: the value as
    written (so the schema checks it), marked for the merge."""


def _tagged(mapping: type, sequence: type) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return mapping(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return sequence(loader.construct_sequence(node, deep=True))
        raise yaml.constructor.ConstructorError(None, None, f"{node.tag} on a scalar", node.start_mark)

    return construct


ComposeLoader.add_constructor("!reset", _tagged(ResetDict, ResetList))
ComposeLoader.add_constructor("!override", _tagged(OverrideDict, OverrideList))


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


REPLACED = {"command", "entrypoint", "test"}
"""Sequences the later file replaces (`test`: healthcheck.test) instead of appending to."""


def unique_key(key: str, entry: Any) -> Any:
    """A `ports` or `volumes` entry's identity (merge.md, unique resources): a volume's target, a port as written."""
    if key == "volumes":
        return entry["target"] if isinstance(entry, dict) else entry.split(":")[1 if ":" in entry else 0]
    return json.dumps(entry, sort_keys=True)


def merge(base: dict, override: dict, depth: int = 0) -> dict:
    """``override`` merged into ``base`` by the Compose Specification's rules (merge.md): mappings
    merge, sequences append (`ports` and `volumes` unique by their key, later wins), shell commands
    are replaced, `!reset` drops a key and `!override` replaces its value."""
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(value, Reset):
            merged.pop(key, None)
        elif isinstance(value, Override):
            merged[key] = dict(value) if isinstance(value, dict) else list(value)
        elif isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge(old, value, depth + 1)
        elif isinstance(old, list) and isinstance(value, list) and key not in REPLACED:
            if depth == 2 and key in ("ports", "volumes"):  # services.NAME.ports
                entries = {unique_key(key, entry): entry for entry in [*old, *value]}
                merged[key] = list(entries.values())
            else:
                merged[key] = old + value
        else:
            merged[key] = value
    return merged


def merged(names: list[str]) -> dict:
    model: dict = {}
    for name in names:
        model = merge(model, load(name))
    return model


def compose_test_module() -> ModuleType:
    """scripts/compose_test.py, imported (it runs nothing on import)."""
    spec = importlib.util.spec_from_file_location("compose_test", ROOT / "scripts" / "compose_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        assert isinstance(override["services"][name]["deploy"], Reset)
        assert override["services"][name]["environment"]["ATNL_DEVICE"] == "cpu"
    assert "docker-compose.cpu.yml" in (ROOT / "docker-compose.yml").read_text()  # documented where users look
    for name in ("api", "worker"):
        assert "deploy" not in merged(["docker-compose.yml", "docker-compose.cpu.yml"])["services"][name]


def test_local_images_override_only_names_images(compose: dict) -> None:
    override = load("docker/compose.local-images.yml")
    assert set(override) == {"services"} and set(override["services"]) == set(compose["services"])
    for svc in override["services"].values():
        assert set(svc) == {"image"}
    assert override["services"]["api"]["image"] == override["services"]["worker"]["image"]
    scale = load("docker/compose.local-images.scale.yml")
    added = set(load("docker-compose.scale.yml")["services"]) - set(compose["services"])
    assert set(scale) == {"services"} and set(scale["services"]) == added == {"s3", "lb"}
    assert all(set(svc) == {"image"} for svc in scale["services"].values())


# --- many hosts: docker-compose.scale.yml


@pytest.fixture(scope="module")
def scaled() -> dict:
    return merged(SCALED)


def test_scale_override_adds_s3_and_a_load_balancer_and_leaves_the_default_alone(compose: dict, scaled: dict) -> None:
    assert set(compose["services"]) == {"redis", "api", "worker"}  # `docker compose up` is still the single-host stack
    assert set(scaled["services"]) == {"redis", "api", "worker", "s3", "lb"}
    api, lb = scaled["services"]["api"], scaled["services"]["lb"]
    # The lb publishes the API where the single-host stack did; the replicas publish nothing.
    assert "ports" not in api and "container_name" not in api
    assert lb["ports"] == compose["services"]["api"]["ports"]
    assert lb["depends_on"]["api"]["condition"] == "service_started"
    for service, context in (("s3", "docker/s3"), ("lb", "docker/lb")):
        assert scaled["services"][service]["build"]["context"] == context
        assert (ROOT / context / "Dockerfile").exists()


def test_scaled_api_and_worker_share_no_volume_and_use_the_s3_store(scaled: dict) -> None:
    services = scaled["services"]
    api, worker, s3 = services["api"], services["worker"], services["s3"]
    for svc in (api, worker):
        env = svc["environment"]
        assert env["ATNL_MODEL_STORE"] == "s3://atnl/models" and env["AWS_ENDPOINT_URL"] == "http://s3:8333"
        # Each container's own cache: an anonymous volume, not a named one another container mounts.
        assert svc["volumes"] == [env["ATNL_MODEL_CACHE"]] == ["/var/cache/atnl"]
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key].startswith(f"${{{key}:?"), "compose must refuse to start without the S3 key"
            assert s3["environment"][key] == env[key], "the s3 service takes the same key as its identity"
        assert svc["depends_on"]["s3"]["condition"] == "service_healthy"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["env_file"] == "${ATNL_ENV_FILE:-.env}" and "deploy" not in svc  # the CPU override still applies
    assert s3["volumes"] == ["s3-data:/data"] and "s3-data" in scaled["volumes"]
    named = {v.split(":")[0] for svc in services.values() for v in svc.get("volumes", []) if ":" in v}
    assert named == {"redis-data", "s3-data"}, "only redis and s3 keep data in named volumes"


def test_the_load_balancer_follows_every_api_replica_and_checks_readyz() -> None:
    cfg = (ROOT / "docker" / "lb" / "haproxy.cfg").read_text()
    lines = [line.split("#")[0].strip() for line in cfg.splitlines() if line.split("#")[0].strip()]
    assert "nameserver dns 127.0.0.11:53" in lines, "Docker's embedded DNS"
    template = next(line for line in lines if line.startswith("server-template "))
    assert re.fullmatch(r"server-template api 1-\d+ api:8000", template)
    defaults = next(line for line in lines if line.startswith("default-server "))
    assert {"check", "resolvers", "docker", "init-addr", "none"} <= set(defaults.split())
    assert "option httpchk GET /readyz" in lines and "http-check expect status 200" in lines
    assert "balance roundrobin" in lines and "bind :8000" in lines
    # A replica that dies: the request is tried again on another one.
    assert "option redispatch 1" in lines and any(line.startswith("retries ") for line in lines)
    retry_on = next(line.split()[1:] for line in lines if line.startswith("retry-on "))
    assert {"conn-failure", "empty-response"} <= set(retry_on)


def test_s3_and_lb_images_run_as_users_with_healthchecks() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (tested,) = [Requirement(line) for line in pyproject["project"]["optional-dependencies"]["dev"] if "seaweedfs" in line]
    s3 = (ROOT / "docker" / "s3" / "Dockerfile").read_text()
    assert f"ARG SEAWEEDFS_VERSION={next(iter(tested.specifier)).version}" in s3, "the image runs the weed the tests ran"
    assert "-master.telemetry=false" in s3 and "-s3.port=8333" in s3 and 'VOLUME ["/data"]' in s3
    lb = (ROOT / "docker" / "lb" / "Dockerfile").read_text()
    assert "apt-get install" in lb and "haproxy -c" in lb
    for text in (s3, lb):
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and users[-1] not in ("root", "0")
        assert re.search(r"^HEALTHCHECK ", text, re.M) and not re.search(r"^ADD\s+https?://", text, re.M)


def test_compose_test_hands_docker_compose_1_29_the_same_merge(tmp_path: Path) -> None:
    """scripts/compose_test.py applies `!reset` and `!override` itself for 1.29.2: the untagged
    copies it writes, merged plainly, give what the specification's merge gives."""
    module = compose_test_module()
    for paths in (module.COMPOSE_FILES, module.SCALE_FILES):
        files = module.files_for_compose_1_29(paths, tmp_path / str(len(paths)))
        plain: dict = {}
        for path in files:
            plain = merge(plain, yaml.safe_load(path.read_text()))  # safe_load: no tag is left
        assert plain == merged([str(path.relative_to(ROOT)) for path in paths])


@pytest.mark.skipif(
    not shutil.which("docker") or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="Compose v2 (`docker compose`) is not installed; the merge above follows its rules",
)
def test_docker_compose_v2_merges_the_scaled_stack_the_same_way() -> None:
    env = {**os.environ, "ATNL_API_TOKEN": "t", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    env["ATNL_ENV_FILE"] = ".env.example"
    args = [a for name in SCALED for a in ("-f", name)]
    out = subprocess.run(
        ["docker", "compose", "--project-directory", str(ROOT), *args, "config", "--format", "json"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    services = json.loads(out)["services"]
    assert set(services) == {"redis", "api", "worker", "s3", "lb"}
    assert not services["api"].get("ports") and [p["target"] for p in services["lb"]["ports"]] == [8000]
    for name in ("api", "worker"):
        assert [(v["type"], v["target"]) for v in services[name]["volumes"]] == [("volume", "/var/cache/atnl")]
        assert not services[name]["volumes"][0].get("source"), "anonymous: each container's own"
        assert services[name]["environment"]["ATNL_MODEL_STORE"] == "s3://atnl/models"


def test_dockerfile_builds_a_venv_and_runs_as_a_user() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    base = re.search(r"ARG BASE_IMAGE=(\S+)", text)
    assert base and base.group(1) == "python:3.11-slim-bookworm", "Python 3.11 on Debian bookworm, as the local base"
    build, runtime = dockerfile_stages()
    assert build[0] == "FROM ${BASE_IMAGE} AS build" and runtime[0] == "FROM ${BASE_IMAGE}"
    # torch, then the dependencies: exactly the lock files, before the code, so a code change reuses those layers.
    torch = next(i for i, line in enumerate(build) if "-r /tmp/torch-requirements.txt" in line)
    assert "ARG TORCH=cuda" in build[:torch] and "COPY docker/torch-cuda-requirements.txt /tmp/torch-requirements.txt" in build
    assert '[ "$TORCH" = cuda ]' in build[torch] and "--no-deps" in build[torch]
    assert "import sys, torch; assert torch.__version__" in build[torch], "the image's torch is the lock's, whichever base"
    install = next(i for i, line in enumerate(build) if "-r /tmp/requirements.txt" in line)
    assert "--no-deps" in build[install] and "COPY docker/requirements.txt /tmp/requirements.txt" in build[torch:install]
    assert build.index("COPY . /src") > install > torch
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
    assert "docker/torch-cuda-requirements.txt" in allowed


def lock_file(name: str) -> dict[str, str]:
    """A lock file's ``{distribution: version}``, each line one exact version, no marker, no extra."""
    pins = {}
    for line in (ROOT / "docker" / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.marker and not req.extras, line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_lock_file_pins_the_runtime_dependencies() -> None:
    """docker/requirements.txt: every package at one exact version, each project dependency
    (torch has its own lock) at a version its specifier admits, no dev or plotting tools."""
    pins = lock_file("requirements.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name != "torch":
            assert name in pins and req.specifier.contains(pins[name], prereleases=True), (line, pins.get(name))
    plotting = {canonicalize_name(Requirement(line).name) for line in project["optional-dependencies"]["plots"]}
    assert not plotting & pins.keys(), "plotting is an extra, not in the image"
    assert not {"torch", "pandas", "pytest", "hypothesis", "ruff", "mypy"} & pins.keys()


def test_the_gpu_image_gets_the_torch_the_tests_ran() -> None:
    """docker/torch-cuda-requirements.txt: torch at the version `make` installs (and the local CPU
    base has), the package index's Linux build (CUDA libraries as wheels), every package pinned."""
    pins = lock_file("torch-cuda-requirements.txt")
    makefile = re.search(r"^TORCH \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    local = re.search(r"^torch==(\S+)\+cpu$", (ROOT / "docker" / "local" / "torch-requirements.txt").read_text(), re.M)
    assert makefile and local and pins["torch"] == makefile.group(1) == local.group(1)
    assert "+" not in pins["torch"], "no local build label: the index's default build, CUDA on Linux"
    assert {"nvidia-cudnn-cu13", "nvidia-cuda-runtime", "triton"} <= pins.keys()
    runtime = lock_file("requirements.txt")
    assert all(runtime[name] == pins[name] for name in runtime.keys() & pins.keys()), "both install these: one version"
