"""``make compose-test``: build the images and run docker-compose.yml end to end on this machine.

Not part of ``make test``: it takes minutes and root. In order, each step timed:

1. installs what is missing (Debian's docker.io, docker-compose 1.29, debootstrap);
2. starts its own Docker engine (vfs storage, no iptables, no IP forwarding) unless one
   answers, and stops it at the end;
3. builds stand-ins for the registry's images (docker/local/build-base-images.sh: Debian +
   CPU torch for the Dockerfile's BASE_IMAGE, Debian's redis-server; kept once built), then
   the service image from docker/Dockerfile with BuildKit (layers cached between runs);
4. runs docker-compose.yml + docker-compose.cpu.yml + docker/compose.local-images.yml with
   ``up -d`` as its own project, waits for every healthcheck and drives the stack over HTTP:
   /readyz once the default model has trained, interpolate and hallucinate with the PNG
   digits in examples/, a training job the worker runs to ``finished`` and activates,
   ``--scale worker=2`` with two jobs at once, the api and redis containers recreated with
   the model and the job history kept by the volumes;
5. ``down -v``, and checks that no container, network or volume of the project is left.

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
ENV_FILE = ".env.example"
"""The containers' settings file (ATNL_ENV_FILE) and compose's interpolation file: the documented defaults."""
BASE_IMAGE = "atnl-local/python:3.11-torch2.13.0-cpu"
"""The Dockerfile's BASE_IMAGE here (docker/local/build-base-images.sh makes it)."""
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
    """Service -> image, as docker/compose.local-images.yml names them."""
    services = yaml.safe_load(COMPOSE_FILES[-1].read_text())["services"]
    return {name: spec["image"] for name, spec in services.items()}


def image_size_mb(image: str) -> float:
    return int(sh([DOCKER, "image", "inspect", "-f", "{{.Size}}", image])) / 1e6


def build_base_images() -> str:
    env = {**os.environ, "PYTHON_IMAGE": BASE_IMAGE, "REDIS_IMAGE": local_images()["redis"]}
    out = sh(["bash", "docker/local/build-base-images.sh", str(WORK / "base")], env=env)
    return "; ".join(line for line in out.splitlines() if line.startswith(("built", "kept")))


def build_service_image() -> str:
    """docker/Dockerfile on BASE_IMAGE; then what earlier builds left goes (vfs copies every layer whole)."""
    image = local_images()["api"]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    cmd = [DOCKER, "build", "--progress=plain", "--network=host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    out = sh([*cmd, "--label", BUILD_LABEL, "-t", image, "-f", "docker/Dockerfile", "."], env=env, log=WORK / "build.log")
    sh([DOCKER, "image", "prune", "--force", "--filter", f"label={BUILD_LABEL}"])  # the images this tag left
    sh([DOCKER, "builder", "prune", "--force", "--filter", "until=1h"])  # build cache no build used for an hour
    steps = {line.split()[0] for line in out.splitlines() if line.startswith("#") and "] " in line and "[internal]" not in line}
    cached = {line.split()[0] for line in out.splitlines() if line.startswith("#") and line.rstrip().endswith("CACHED")}
    sizes = f"{image}: {image_size_mb(image):.0f} MB (its base {BASE_IMAGE}: {image_size_mb(BASE_IMAGE):.0f} MB)"
    return f"{sizes}; {len(cached & steps)} of {len(steps)} steps cached"


# --- compose ------------------------------------------------------------------------------


class _Reset:
    """The Compose Specification's ``!reset`` tag, as read here."""


class _SpecLoader(yaml.SafeLoader):
    pass


_SpecLoader.add_constructor("!reset", lambda loader, node: _Reset())


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def pop_resets(tree: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Remove every ``!reset`` key from ``tree``; their paths."""
    found = []
    for key, value in list(tree.items()):
        if isinstance(value, _Reset):
            del tree[key]
            found.append((*path, key))
        elif isinstance(value, dict):
            found += pop_resets(value, (*path, key))
    return found


def files_for_compose_1_29() -> list[Path]:
    """COMPOSE_FILES as Debian's docker-compose 1.29.2 can read them.

    docker-compose.cpu.yml drops the GPU reservation with ``deploy: !reset {}``. 1.29.2
    cannot parse the tag, and its merge can only add to a reservation's device list, so
    the reset is applied here, as Compose v2 applies it, to a copy of the files before it:
    1.29.2 merges everything else itself. Files without the tag are passed as they are.
    """
    files: list[Path] = []
    for path in COMPOSE_FILES:
        tree = yaml.load(path.read_text(), Loader=_SpecLoader)
        resets = pop_resets(tree)
        for reset in resets:
            for i, earlier in enumerate(files):
                base = yaml.safe_load(earlier.read_text())
                node = base
                for key in reset[:-1]:
                    node = node.get(key, {})
                if node.pop(reset[-1], None) is not None:
                    files[i] = WORK / "compose" / earlier.name
                    files[i].write_text(yaml.dump(base, Dumper=_PlainDumper, sort_keys=False))
        if resets:
            files.append(WORK / "compose" / path.name)
            files[-1].write_text(yaml.dump(tree, Dumper=_PlainDumper, sort_keys=False))
        else:
            files.append(path)
    return files


class Compose:
    """``docker-compose`` on the project's files, as project PROJECT, with a fresh token and port."""

    def __init__(self) -> None:
        (WORK / "compose").mkdir(parents=True, exist_ok=True)
        self.files = files_for_compose_1_29()
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ATNL_", "COMPOSE_"))}
        self.env = {**env, "ATNL_API_TOKEN": self.token, "ATNL_PORT": str(self.port), "ATNL_ENV_FILE": ENV_FILE}

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
        compose = Compose()
        with timer.step("compose files read by docker-compose 1.29") as note:
            compose("config", "--quiet")
            note.append(" + ".join(str(f.relative_to(ROOT)) for f in compose.files))
        run_stack(timer, compose)
        with timer.step("compose down -v") as note:
            note.append(tear_down(compose))
            compose = None
    except Exception as e:
        print(f"\nFAILED: {type(e).__name__}: {e}", file=sys.stderr)
        services = e.services if isinstance(e, StepFailed) else ("api", "worker", "redis")
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
