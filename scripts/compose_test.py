"""``make compose-test``: build the images and run docker-compose.yml end to end on this machine.

Not part of ``make test``: it takes minutes and root. In order, each step timed:

1. installs what is missing (Debian's docker.io, docker-compose 1.29, debootstrap);
2. starts its own Docker engine (vfs storage, no iptables, no IP forwarding) unless one
   answers, and stops it at the end;
3. builds stand-ins for the registry's images (docker/local/build-base-images.sh: Debian +
   CPU torch for the Dockerfile's BASE_IMAGE, Debian's redis-server, plain Debian; kept once
   built), then with BuildKit (layers cached between runs) the service image from
   docker/Dockerfile and the s3 and lb images from docker/s3 and docker/lb;
4. runs docker-compose.yml + docker-compose.cpu.yml + docker/compose.local-images.yml with
   ``up -d`` as its own project, waits for every healthcheck and drives the stack over HTTP:
   /readyz once the default model has trained, interpolate and hallucinate with the PNG
   digits in examples/, a training job the worker runs to ``finished`` and activates,
   ``--scale worker=2`` with two jobs at once, the api and redis containers recreated with
   the model and the job history kept by the volumes; then ``down -v``, checking that no
   container, network or volume of the project is left;
5. runs the same plus docker-compose.scale.yml (and docker/compose.local-images.scale.yml)
   with ``--scale api=2``: models in S3, two api replicas behind the lb, which the checks go
   through: the default model (SCALED_SETTINGS: 2 epochs) trained by one replica only and
   served by both (told apart by GET /v1/models' ``replica.id``), a training job's model and then an activation seen by
   both within SWAP_SEEN_WITHIN seconds, one api container killed while the lb still
   answers /readyz and encodes; ``down -v`` again.

On a failure it prints the logs of the containers concerned and exits 1.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from PIL import Image

from benchmarks.servers import Process, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "compose-test"
PROJECT = "atnl-compose-test"
"""Compose project name: its own containers, network and volumes, never a user's ``atnl`` stack."""
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "docker-compose.cpu.yml", ROOT / "docker" / "compose.local-images.yml"]
SCALE_FILES = [*COMPOSE_FILES[:2], ROOT / "docker-compose.scale.yml", *COMPOSE_FILES[2:]]
SCALE_FILES += [ROOT / "docker" / "compose.local-images.scale.yml"]
"""The scaled run's files: the scale override after the CPU one, the local image names last."""
ENV_FILE = ".env.example"
"""The containers' settings file (ATNL_ENV_FILE) and compose's interpolation file: the documented defaults."""
BASE_IMAGE = "atnl-local/python:3.11-torch2.13.0-cpu"
"""The Dockerfile's BASE_IMAGE here (docker/local/build-base-images.sh makes it)."""
DEBIAN_IMAGE = "atnl-local/debian:bookworm"
"""The stand-in for debian:bookworm-slim, the s3 and lb images' base (build-base-images.sh makes it)."""
BUILD_LABEL = "atnl.compose-test=true"
"""Label of the images compose-test builds, so that it removes only its own old ones."""
DOCKER = "/usr/bin/docker"
"""The engine's own client (Debian's docker.io): its ``build`` speaks BuildKit without a buildx plugin."""
TOOLS = {"dockerd": "docker.io", "/usr/bin/docker": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}
DEFAULT_MODEL_STALL = 1200.0
"""Seconds the api's training of the default model (40 epochs: about 3 min on 2 idle cores,
far longer on a shared, loaded machine) may go without finishing an epoch."""
JOB_TIMEOUT = 1800.0
"""Seconds for a small training job to finish on a loaded 2-core machine."""
HEALTH_TIMEOUT = 600.0
"""Seconds for every container to report healthy (the worker's first probe comes after 30 s)."""
SMALL_JOB = {"epochs": 1, "latent_dim": 8, "threads": 1}
API_REPLICAS = 2
"""api replicas of the scaled run."""
SWAP_SEEN_WITHIN = 15.0
"""Seconds within which every api replica serves a model once it is activated (pub/sub: about
one; the ACTIVE poll's fallback: a few)."""
KILLED_REPLICA_REQUESTS = 20
"""Encodes sent through the lb one after another right after an api replica is killed: all must answer 200."""
SCALED_SETTINGS = {"ATNL_BOOTSTRAP_TRAIN": '{"epochs":2}'}
"""The scaled run's settings over ENV_FILE's. Its default model trains 2 epochs, not 40: the
single-host run has trained the full one; what counts here is that one replica trains it into
S3 and every replica serves it, which a second 40 epochs (minutes to an hour on a loaded
2-core machine) would only delay."""
EXAMPLES = ROOT / "examples"


class StepFailed(Exception):
    """A check failed; ``services`` are the containers whose logs explain it."""

    def __init__(self, message: str, services: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.services = services


def sh(cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None, check: bool = True) -> str:
    """Run ``cmd``; its output is returned (or written to ``log``); a non-zero exit raises StepFailed."""
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = proc.stdout
    if log:
        log.write_text(text)
    if check and proc.returncode != 0:
        raise StepFailed(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{text[-3000:]}")
    return text


# --- the engine -----------------------------------------------------------------------


def install_tools() -> str:
    if os.geteuid() != 0:
        raise StepFailed("compose-test installs packages and runs a Docker engine: run it as root")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sh(["apt-get", "update", "-q"], env=env)
        sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)
    version = sh(["docker-compose", "version", "--short"]).strip()
    return f"installed {', '.join(missing)}" if missing else f"present (docker-compose {version})"


class Engine:
    """The Docker engine: one that answers is used as it is; otherwise ours runs until ``stop``."""

    def __init__(self) -> None:
        cmd = ["dockerd", "--storage-driver=vfs", "--iptables=false", "--ip-forward=false"]
        self.dockerd = Process("dockerd", cmd, dict(os.environ), WORK, own_session=True)
        self.ours = False

    @staticmethod
    def answers() -> bool:
        return subprocess.run([DOCKER, "info"], capture_output=True).returncode == 0

    def start(self) -> str:
        if self.answers():
            return "using the running engine"
        self.dockerd.start()
        self.ours = True
        try:
            wait_until(lambda: self.dockerd.exited() is not None or self.answers(), "dockerd to answer", 90, every=1)
        except TimeoutError as e:
            raise StepFailed(f"{e}; see {self.dockerd.log}") from e
        if self.dockerd.exited() is not None:
            raise StepFailed(f"dockerd exited with {self.dockerd.exited()}; see {self.dockerd.log}")
        return f"started dockerd (pid {self.dockerd.pid}, vfs, no iptables)"

    def stop(self) -> None:
        if self.ours:
            self.dockerd.stop(timeout=60)
            print(f"stopped dockerd (pid {self.dockerd.pid})")


# --- images -----------------------------------------------------------------------------


def local_images() -> dict[str, str]:
    """Service -> image, as docker/compose.local-images.yml and its scale counterpart name them."""
    services = {}
    for path in (COMPOSE_FILES[-1], SCALE_FILES[-1]):
        services.update(yaml.safe_load(path.read_text())["services"])
    return {name: spec["image"] for name, spec in services.items()}


def image_size_mb(image: str) -> float:
    return int(sh([DOCKER, "image", "inspect", "-f", "{{.Size}}", image])) / 1e6


def build_base_images() -> str:
    env = {**os.environ, "PYTHON_IMAGE": BASE_IMAGE, "REDIS_IMAGE": local_images()["redis"], "DEBIAN_IMAGE": DEBIAN_IMAGE}
    out = sh(["bash", "docker/local/build-base-images.sh", str(WORK / "base")], env=env)
    return "; ".join(line for line in out.splitlines() if line.startswith(("built", "kept")))


def build_image(image: str, dockerfile: str, context: str, args: dict[str, str]) -> str:
    """``docker build`` with BuildKit; then what earlier builds left goes (vfs copies every layer whole).
    How many of its steps came from the cache."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    build_args = [a for name, value in args.items() for a in ("--build-arg", f"{name}={value}")]
    cmd = [DOCKER, "build", "--progress=plain", "--network=host", *build_args]
    log = WORK / f"build-{image.replace('/', '_').replace(':', '_')}.log"
    out = sh([*cmd, "--label", BUILD_LABEL, "-t", image, "-f", dockerfile, context], env=env, log=log)
    sh([DOCKER, "image", "prune", "--force", "--filter", f"label={BUILD_LABEL}"])  # the images this tag left
    sh([DOCKER, "builder", "prune", "--force", "--filter", "until=1h"])  # build cache no build used for an hour
    steps = {line.split()[0] for line in out.splitlines() if line.startswith("#") and "] " in line and "[internal]" not in line}
    cached = {line.split()[0] for line in out.splitlines() if line.startswith("#") and line.rstrip().endswith("CACHED")}
    return f"{len(cached & steps)} of {len(steps)} steps cached"


def build_service_image() -> str:
    """docker/Dockerfile on BASE_IMAGE, keeping the base's torch (TORCH=base)."""
    image = local_images()["api"]
    cached = build_image(image, "docker/Dockerfile", ".", {"BASE_IMAGE": BASE_IMAGE, "TORCH": "base"})
    return f"{image}: {image_size_mb(image):.0f} MB (its base {BASE_IMAGE}: {image_size_mb(BASE_IMAGE):.0f} MB); {cached}"


def build_s3_and_lb_images() -> str:
    """docker/s3 (weed fetched with BASE_IMAGE's pip) and docker/lb (Debian's haproxy), on DEBIAN_IMAGE."""
    images = local_images()
    bases = {"s3": {"PYTHON_IMAGE": BASE_IMAGE, "BASE_IMAGE": DEBIAN_IMAGE}, "lb": {"BASE_IMAGE": DEBIAN_IMAGE}}
    built = []
    for service, args in bases.items():
        cached = build_image(images[service], f"docker/{service}/Dockerfile", f"docker/{service}", args)
        built.append(f"{images[service]}: {image_size_mb(images[service]):.0f} MB, {cached}")
    return "; ".join(built)


# --- compose ------------------------------------------------------------------------------


class _Reset:
    """The Compose Specification's ``!reset`` tag, as read here: the key goes from earlier files."""


class _Override:
    """The Compose Specification's ``!override`` tag, as read here: ``value`` replaces earlier files' value."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _SpecLoader(yaml.SafeLoader):
    pass


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    return _Override(loader.construct_scalar(node))


_SpecLoader.add_constructor("!reset", lambda loader, node: _Reset())
_SpecLoader.add_constructor("!override", _construct_override)


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def pop_merge_tags(tree: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Untag ``tree``: every ``!reset`` key goes, every ``!override`` key keeps its plain value.
    The paths of both, which earlier files must drop."""
    found = []
    for key, value in list(tree.items()):
        if isinstance(value, _Reset):
            del tree[key]
            found.append((*path, key))
        elif isinstance(value, _Override):
            tree[key] = value.value
            found.append((*path, key))
        elif isinstance(value, dict):
            found += pop_merge_tags(value, (*path, key))
    return found


def files_for_compose_1_29(paths: list[Path], out: Path) -> list[Path]:
    """``paths`` as Debian's docker-compose 1.29.2 can read them (copies written to ``out``).

    docker-compose.cpu.yml drops the GPU reservation with ``deploy: !reset {}``, and
    docker-compose.scale.yml the api's port and the shared volume with ``!reset`` and
    ``!override``. 1.29.2 cannot parse the tags, and its merge can only add to a list, so
    they are applied here, as Compose v2 applies them, to copies of the files: the key goes
    from every earlier file (and, for ``!reset``, from this one too). 1.29.2 merges everything
    else itself. Files without a tag, before or after, are passed as they are.
    """
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for path in paths:
        tree = yaml.load(path.read_text(), Loader=_SpecLoader)
        tagged = pop_merge_tags(tree)
        for key_path in tagged:
            for i, earlier in enumerate(files):
                base = yaml.safe_load(earlier.read_text())
                node = base
                for key in key_path[:-1]:
                    node = node.get(key, {})
                if node.pop(key_path[-1], None) is not None:
                    files[i] = out / earlier.name
                    files[i].write_text(yaml.dump(base, Dumper=_PlainDumper, sort_keys=False))
        if tagged:
            files.append(out / path.name)
            files[-1].write_text(yaml.dump(tree, Dumper=_PlainDumper, sort_keys=False))
        else:
            files.append(path)
    return files


class Compose:
    """``docker-compose`` on ``paths``, as project PROJECT, with a fresh token, S3 key and port;
    the containers' settings are ENV_FILE's, with ``settings`` over them."""

    def __init__(self, paths: list[Path], name: str, settings: dict[str, str] | None = None) -> None:
        out = WORK / "compose" / name
        self.files = files_for_compose_1_29(paths, out)
        env_file = ENV_FILE
        if settings:
            env_file = str(out / "settings.env")
            lines = [f"{key}={value}" for key, value in settings.items()]
            Path(env_file).write_text((ROOT / ENV_FILE).read_text() + "\n".join(["", *lines, ""]))
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ATNL_", "COMPOSE_", "AWS_"))}
        keys = {"AWS_ACCESS_KEY_ID": f"atnl-{secrets.token_hex(4)}", "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24)}
        self.env = {**env, **keys, "ATNL_API_TOKEN": self.token, "ATNL_PORT": str(self.port), "ATNL_ENV_FILE": env_file}

    def __call__(self, *args: str, check: bool = True) -> str:
        base = ["docker-compose", "--project-directory", str(ROOT), "-p", PROJECT, "--env-file", str(ROOT / ENV_FILE)]
        return sh([*base, *(a for f in self.files for a in ("-f", str(f))), *args], env=self.env, check=check)

    def containers(self) -> dict[str, list[str]]:
        """Service -> container ids, from the engine's labels (all states)."""
        fmt = '{{.ID}} {{.Label "com.docker.compose.service"}}'
        out = sh([DOCKER, "ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", fmt])
        found: dict[str, list[str]] = {}
        for line in out.split("\n"):
            if line.strip():
                cid, service = line.split()
                found.setdefault(service, []).append(cid)
        return found

    def logs(self, services: tuple[str, ...]) -> str:
        return self("logs", "--no-color", "--tail=150", *services, check=False)

    def wait_healthy(self, count: dict[str, int]) -> str:
        """Wait until each service has ``count`` containers, all running and healthy."""
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            states = {s: [container_state(c) for c in ids] for s, ids in self.containers().items()}
            for service, seen in states.items():
                if any(state in ("exited", "dead", "unhealthy") for state in seen):
                    raise StepFailed(f"{service}: {seen}", (service,))
            if all(states.get(s, []) == ["healthy"] * n for s, n in count.items()):
                return ", ".join(f"{s} x{n}" for s, n in count.items()) + " healthy"
            if time.monotonic() > deadline:
                raise StepFailed(f"not all healthy after {HEALTH_TIMEOUT:.0f}s: {states}", tuple(count))
            time.sleep(2)


def container_state(cid: str) -> str:
    """``healthy``/``starting``/``unhealthy`` for a running container with a healthcheck, else its state."""
    fmt = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
    status, _, health = sh([DOCKER, "inspect", "-f", fmt, cid]).strip().partition(" ")
    return health if status == "running" and health else status


# --- the stack, driven from outside -------------------------------------------------------


def wait_for(what: str, probe: Callable[[], Any], timeout: float, services: tuple[str, ...]) -> Any:
    """``probe()``'s first truthy value, asked every second; StepFailed (with ``services``' logs) after ``timeout`` s."""
    try:
        return wait_until(probe, what, timeout, every=1.0)
    except TimeoutError as e:
        raise StepFailed(str(e), services) from e


class Stack:
    def __init__(self, compose: Compose) -> None:
        self.compose = compose
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{compose.port}", timeout=60)
        self.auth = {"Authorization": f"Bearer {compose.token}"}
        self.jobs: dict[str, str] = {}  # job id -> model id

    def ready_model(self) -> str | None:
        try:
            r = self.http.get("/readyz")
        except httpx.TransportError:
            return None
        return r.json()["model_id"] if r.status_code == 200 else None

    def wait_default_model(self) -> str:
        """Poll /readyz while the api trains; fail when an epoch takes over DEFAULT_MODEL_STALL."""
        progress, changed, looked = "", time.monotonic(), 0.0
        while (model_id := self.ready_model()) is None:
            if time.monotonic() - looked > 60:  # the bootstrap's progress, from the api's log
                looked = time.monotonic()
                epochs = [ln for ln in self.compose.logs(("api",)).splitlines() if "default model: epoch" in ln]
                if epochs and epochs[-1] != progress:
                    progress, changed = epochs[-1], looked
                    print(f"    ... {progress.split('atnl.bootstrap: ')[-1]}", flush=True)
            if time.monotonic() - changed > DEFAULT_MODEL_STALL:
                raise StepFailed(f"no epoch of the default model finished in {DEFAULT_MODEL_STALL:.0f}s", ("api",))
            time.sleep(3)
        return f"/readyz 200, default model {model_id}"

    def interpolate(self) -> str:
        files = {"start": png_file("0"), "end": png_file("5")}
        r = self.http.post("/v1/interpolate", files=files, data={"steps": "8"})
        body = expect(r, 200, "interpolate")
        sizes = {png_size(frame) for frame in body["frames"]}
        if len(body["frames"]) != 8 or body["omegas"][0] != 0.0 or body["omegas"][-1] != 1.0 or sizes != {(28, 28)}:
            raise StepFailed(f"interpolate: {len(body['frames'])} frames, omegas {body['omegas']}, sizes {sizes}", ("api",))
        strip = self.http.post("/v1/interpolate", files={"start": png_file("0"), "end": png_file("9")}, data={"format": "png"})
        if strip.status_code != 200 or not strip.content.startswith(b"\x89PNG"):
            raise StepFailed(f"interpolate format=png: {strip.status_code} {strip.headers.get('content-type')}", ("api",))
        return f"0 -> 5: 8 frames 28x28 ({body['method']}), 0 -> 9 as one PNG strip {Image.open(io.BytesIO(strip.content)).size}"

    def hallucinate(self) -> str:
        files = [("files", png_file(d)) for d in ("3", "7", "9")]
        r = self.http.post("/v1/hallucinate", files=files, data={"labels": "3,7,9", "per_class": "2", "seed": "0"})
        images = expect(r, 200, "hallucinate")["images"]
        labels = sorted(image["label"] for image in images)
        if not images or not set(labels) <= {str(d) for d in range(10)} or {png_size(i["png"]) for i in images} != {(28, 28)}:
            raise StepFailed(f"hallucinate: labels {labels}", ("api",))
        return f"3, 7, 9 (per_class 2): {len(images)} labelled images, labels {labels}"

    def train(self, activate: bool) -> str:
        r = self.http.post("/v1/train", json={**SMALL_JOB, "activate": activate}, headers=self.auth)
        return expect(r, 202, "train")["job_id"]

    def job(self, job_id: str) -> dict:
        return expect(self.http.get(f"/v1/jobs/{job_id}"), 200, "job")

    def wait_jobs(self, job_ids: list[str]) -> list[set[str]]:
        """Poll until every job ends; the set of statuses seen at each poll."""
        seen: list[set[str]] = []

        def ended() -> bool:
            jobs = [self.job(j) for j in job_ids]
            seen.append({j["status"] for j in jobs})
            return all(j["status"] in ("finished", "failed", "stopped", "canceled") for j in jobs)

        wait_for(f"jobs {job_ids}", ended, JOB_TIMEOUT, ("api", "worker"))
        for job_id in job_ids:
            job = self.job(job_id)
            if job["status"] != "finished" or not job["model_id"]:
                raise StepFailed(f"job {job_id}: {job}", ("worker", "api"))
            self.jobs[job_id] = job["model_id"]
        return seen

    def train_and_activate(self) -> str:
        job_id = self.train(activate=True)
        self.wait_jobs([job_id])
        model_id = self.jobs[job_id]
        wait_for(f"the api to serve {model_id}", lambda: self.ready_model() == model_id, 60, ("api",))
        return f"job {job_id} finished on the worker; model {model_id} active in the api"

    def two_jobs_on_two_workers(self) -> str:
        job_ids = [self.train(activate=False), self.train(activate=False)]
        seen = self.wait_jobs(job_ids)
        ran_on = {}
        for cid in self.compose.containers()["worker"]:
            logs = sh([DOCKER, "logs", cid])
            ran_on.update({job_id: cid for job_id in job_ids if job_id in logs})
        if len(set(ran_on.values())) != 2:
            raise StepFailed(f"the two jobs ran on {ran_on}, not on two workers", ("worker",))
        together = any(s == {"started"} for s in seen)
        if not together:
            raise StepFailed(f"the two jobs never ran at the same time: {seen}", ("worker",))
        return f"jobs {job_ids[0]}, {job_ids[1]} ran at the same time on two workers"

    def history_kept(self, active: str) -> str:
        if self.ready_model() != active:
            raise StepFailed(f"after the restart the api serves {self.ready_model()}, not {active}", ("api",))
        for job_id, model_id in self.jobs.items():
            job = self.job(job_id)
            if (job["status"], job["model_id"]) != ("finished", model_id):
                raise StepFailed(f"job {job_id} after the restart: {job}", ("api", "redis"))
        listed = {m["id"] for m in expect(self.http.get("/v1/models"), 200, "models")["models"]}
        if not set(self.jobs.values()) <= listed:
            raise StepFailed(f"models after the restart: {sorted(listed)}", ("api",))
        if "empty model store" in self.compose.logs(("api",)):
            raise StepFailed("the recreated api trained the default model again", ("api",))
        return f"model {active} served, {len(self.jobs)} jobs finished, {len(listed)} models listed"

    # --- through the load balancer (the scaled run: self.http's port is the lb's)

    def replicas(self) -> dict[str, dict]:
        """Replica id -> its GET /v1/models ``replica``, from 4 requests a replica, each on a new
        connection, so that the lb's round robin shows every replica it sends requests to."""
        seen = {}
        with httpx.Client(base_url=self.http.base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
            for _ in range(4 * API_REPLICAS):
                try:
                    r = fresh.get("/v1/models")
                except httpx.TransportError:
                    continue
                if r.status_code == 200:
                    replica = r.json()["replica"]
                    seen[replica["id"]] = replica
        return seen

    def wait_every_replica_serves(self, model_id: str, timeout: float) -> float:
        """Seconds until API_REPLICAS replicas answer through the lb, each serving ``model_id``."""
        start = time.monotonic()

        def all_serve() -> bool:
            seen = self.replicas()
            return len(seen) == API_REPLICAS and all(r["loaded"] == model_id for r in seen.values())

        try:
            wait_until(all_serve, f"{API_REPLICAS} replicas serving {model_id}", timeout, every=0.2)
        except TimeoutError as e:
            raise StepFailed(f"{e}; the lb showed {self.replicas()}", ("api", "lb")) from e
        return time.monotonic() - start

    def default_model_once(self, model_id: str) -> str:
        """Every replica serves the default model, one of them trained it, all on the S3 store."""
        waited = self.wait_every_replica_serves(model_id, 300)
        seen = self.replicas()
        stores = {r["store"] for r in seen.values()}
        if stores != {"s3://atnl/models"}:
            raise StepFailed(f"the replicas' stores: {stores}", ("api",))
        trained = [cid for cid in self.compose.containers()["api"] if "empty model store" in sh([DOCKER, "logs", cid])]
        if len(trained) != 1:
            raise StepFailed(f"{len(trained)} api replicas trained the default model, not one", ("api",))
        return f"replicas {sorted(seen)} serve {model_id} ({waited:.1f}s after the first), trained by one, store {stores.pop()}"

    def swap_seen_by_every_replica(self) -> str:
        """A training job's model (activate: true), then the previous one again (POST activate)."""
        previous = self.ready_model()
        job_id = self.train(activate=True)
        self.wait_jobs([job_id])
        trained = self.jobs[job_id]
        after_job = self.wait_every_replica_serves(trained, SWAP_SEEN_WITHIN)
        r = self.http.post(f"/v1/models/{previous}/activate", json={}, headers=self.auth)
        expect(r, 200, "activate")
        after_activate = self.wait_every_replica_serves(previous or "", SWAP_SEEN_WITHIN)
        return (
            f"job {job_id}'s {trained} served by {API_REPLICAS} replicas {after_job:.1f}s after the job finished; "
            f"{previous} again {after_activate:.1f}s after POST activate"
        )

    def replica_killed(self) -> str:
        """``docker kill`` one api container; the lb answers /readyz and encodes on."""
        victim = self.compose.containers()["api"][0]
        sh([DOCKER, "kill", victim])
        slowest, model_ids = 0.0, set()
        for i in range(KILLED_REPLICA_REQUESTS):
            t0 = time.monotonic()
            r = self.http.post("/v1/encode", files={"files": png_file(str(i % 10))})
            slowest = max(slowest, time.monotonic() - t0)
            model_ids.add(expect(r, 200, f"encode {i + 1} after the kill")["model_id"])
        ready = self.ready_model()
        if ready is None:
            raise StepFailed("/readyz through the lb is not 200 after the kill", ("lb", "api"))
        return (
            f"killed {victim}; {KILLED_REPLICA_REQUESTS} encodes in a row answered 200 (slowest {slowest:.2f}s, "
            f"model {', '.join(sorted(model_ids))}), /readyz 200, replicas now {sorted(self.replicas())}"
        )


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def png_file(digit: str) -> tuple[str, bytes, str]:
    return (f"{digit}.png", (EXAMPLES / f"{digit}.png").read_bytes(), "image/png")


def png_size(b64: str) -> tuple[int, int]:
    import base64

    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def expect(r: httpx.Response, status: int, what: str) -> Any:
    if r.status_code != status:
        raise StepFailed(f"{what}: HTTP {r.status_code} {r.text[:500]}", ("api",))
    return r.json()


# --- the run ---------------------------------------------------------------------------------


class Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float]] = []
        self.start = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        print(f"--> {name}", flush=True)
        t0 = time.monotonic()
        note: list[str] = []
        try:
            yield note
        except BaseException:
            self.rows.append((f"{name} (FAILED)", time.monotonic() - t0))
            raise
        self.rows.append((name, time.monotonic() - t0))
        print(f"    {self.rows[-1][1]:7.1f}s  {' '.join(note)}", flush=True)

    def summary(self) -> str:
        width = max(len(name) for name, _ in self.rows)
        lines = [f"  {name:<{width}}  {secs:7.1f}s" for name, secs in self.rows]
        return "\n".join([*lines, f"  {'total':<{width}}  {time.monotonic() - self.start:7.1f}s"])


def run_stack(timer: Timer, compose: Compose) -> None:
    stack = Stack(compose)
    with timer.step("compose up -d, every healthcheck") as note:
        compose("down", "--volumes", "--remove-orphans")  # what a killed run left: start empty
        compose("up", "-d", "--no-build")
        note.append(compose.wait_healthy({"redis": 1, "api": 1, "worker": 1}))
    with timer.step("default model trained (/readyz)") as note:
        note.append(stack.wait_default_model())
    with timer.step("interpolate (PNG digits)") as note:
        note.append(stack.interpolate())
    with timer.step("hallucinate (PNG digits)") as note:
        note.append(stack.hallucinate())
    with timer.step("training job on the worker, activated") as note:
        note.append(stack.train_and_activate())
    active = stack.ready_model() or ""
    with timer.step("--scale worker=2, two jobs at once") as note:
        compose("up", "-d", "--no-build", "--scale", "worker=2")
        compose.wait_healthy({"redis": 1, "api": 1, "worker": 2})
        note.append(stack.two_jobs_on_two_workers())
    with timer.step("api and redis recreated, volumes kept") as note:
        compose("rm", "--stop", "--force", "api", "redis")
        compose("up", "-d", "--no-build", "--scale", "worker=2")
        compose.wait_healthy({"redis": 1, "api": 1, "worker": 2})
        wait_for("/readyz after the restart", stack.ready_model, 120, ("api",))
        note.append(stack.history_kept(active))


def run_scaled_stack(timer: Timer, compose: Compose) -> None:
    stack = Stack(compose)
    scale = ["--scale", f"api={API_REPLICAS}", "--scale", "worker=1"]
    with timer.step(f"scaled: up -d, api x{API_REPLICAS} behind the lb, every healthcheck") as note:
        compose("down", "--volumes", "--remove-orphans")  # what a killed run left: start empty
        compose("up", "-d", "--no-build", *scale)
        note.append(compose.wait_healthy({"redis": 1, "s3": 1, "api": API_REPLICAS, "worker": 1, "lb": 1}))
    epochs = json.loads(SCALED_SETTINGS["ATNL_BOOTSTRAP_TRAIN"])["epochs"]
    with timer.step(f"scaled: default model ({epochs} epochs) trained into S3, /readyz via the lb") as note:
        note.append(stack.wait_default_model())
    with timer.step("scaled: every replica serves it, one trained it") as note:
        note.append(stack.default_model_once(stack.ready_model() or ""))
    with timer.step("scaled: job's model, then activate, seen by every replica") as note:
        note.append(stack.swap_seen_by_every_replica())
    with timer.step("scaled: an api replica killed, the lb serves on") as note:
        note.append(stack.replica_killed())


def tear_down(compose: Compose) -> str:
    compose("down", "--volumes", "--remove-orphans")
    label = f"label=com.docker.compose.project={PROJECT}"
    left = {
        kind: sh([DOCKER, *cmd, "--filter", label, "-q"]).split()
        for kind, cmd in {"containers": ["ps", "-a"], "networks": ["network", "ls"], "volumes": ["volume", "ls"]}.items()
    }
    if any(left.values()):
        raise StepFailed(f"left behind: {left}")
    return "no container, network or volume of the project left"


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    timer, engine, compose = Timer(), Engine(), None
    try:
        with timer.step("tools (docker.io, docker-compose, debootstrap)") as note:
            note.append(install_tools())
        with timer.step("docker engine") as note:
            note.append(engine.start())
        with timer.step("base images (debootstrap + docker import)") as note:
            note.append(build_base_images())
        with timer.step("service image (docker/Dockerfile)") as note:
            note.append(build_service_image())
        with timer.step("s3 and lb images (docker/s3, docker/lb)") as note:
            note.append(build_s3_and_lb_images())
        compose = Compose(COMPOSE_FILES, "single")
        with timer.step("compose files read by docker-compose 1.29") as note:
            compose("config", "--quiet")
            scaled = Compose(SCALE_FILES, "scaled", SCALED_SETTINGS)
            scaled("config", "--quiet")
            note.append(" + ".join(map(relative, compose.files)) + "; scaled: " + " + ".join(map(relative, scaled.files)))
        run_stack(timer, compose)
        with timer.step("compose down -v") as note:
            note.append(tear_down(compose))
            compose = scaled
        run_scaled_stack(timer, compose)
        with timer.step("scaled: compose down -v") as note:
            note.append(tear_down(compose))
            compose = None
    except Exception as e:
        print(f"\nFAILED: {type(e).__name__}: {e}", file=sys.stderr)
        services = e.services if isinstance(e, StepFailed) else ("api", "worker", "redis", "s3", "lb")
        if compose is not None and services:
            print(f"--- logs of {', '.join(services)}:\n{compose.logs(services)}", file=sys.stderr)
        return 1
    finally:
        if compose is not None:
            compose("down", "--volumes", "--remove-orphans", check=False)
        engine.stop()
        if timer.rows:
            print("\nstep times:\n" + timer.summary())
    print(json.dumps({"compose_test": "passed"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
