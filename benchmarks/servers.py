"""The one way to start ``atnl serve``, ``atnl worker`` and the bare endpoint as real processes,
for the benchmarks, the tests and the scripts (the product never imports it).

Each process runs from a directory of its own (no stray ``.env``), its output appended to
``<workdir>/<name>.log``; a server listens on a free loopback port and counts as started
once its ready path answers 200. psutil reads a server's CPU time and RSS.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ATNL = shutil.which("atnl", path=str(Path(sys.executable).parent))
"""The console script of this environment, if it is installed (else the CLI module is run)."""
SERVE_ENV = {"ATNL_HOST": "127.0.0.1", "ATNL_BOOTSTRAP_DEFAULT_MODEL": "false", "ATNL_LOG_LEVEL": "warning"}
"""What every served process gets: loopback only, no default training, quiet logs."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(probe: Callable[[], Any], what: str, timeout: float, every: float = 0.3) -> Any:
    """``probe()``'s first truthy value, asked every ``every`` s; TimeoutError naming ``what``
    after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of process ``pid`` from /proc, MiB: VmRSS resident now, VmHWM its peak so far."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def atnl_command(*args: str) -> list[str]:
    """``atnl ARGS`` in this environment: its console script, else the CLI run by this interpreter."""
    return [ATNL, *args] if ATNL else [sys.executable, "-c", "from service.cli.app import main; main()", *args]


def atnl_env(env: dict[str, str], device: str = "cpu") -> dict[str, str]:
    """This process's environment with ``env`` and ``device`` on top, without ATNL_API_TOKEN
    (callers that want one put it in ``env``)."""
    base = {k: v for k, v in os.environ.items() if k != "ATNL_API_TOKEN"}
    return {**base, "ATNL_DEVICE": device, **env}


class Process:
    """A child process of ours with its output in ``<workdir>/<name>.log``; stopped, killed and
    started again at will. ``own_session``: a process group of its own (``atnl worker``: a
    SIGKILL to the group takes its work horse too)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path, own_session: bool = False) -> None:
        self.name, self.args, self.env, self.workdir, self.own_session = name, args, env, workdir, own_session
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def worker(cls, env: dict[str, str], workdir: Path, *args: str, name: str = "worker") -> Process:
        """``atnl worker ARGS`` (``--burst``, ...) with ``env`` (ATNL_REDIS_URL, ATNL_MODEL_STORE, ...)."""
        return cls(name, atnl_command("worker", *args), atnl_env(env), workdir, own_session=True)

    def start(self) -> Process:
        with self.log.open("a") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        """The exit status once it has ended (None while it runs, or before its first start)."""
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Send ``sig`` and wait ``timeout`` s for the end, then SIGKILL; ``exited`` then says how it ended."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Server(Process):
    """A process serving HTTP on ``port`` (a free loopback one), started once ``ready_path`` answers 200."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path, ready_path: str, port: int) -> None:
        super().__init__(name, args, env, workdir)
        self.ready_path, self.port = ready_path, port
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    def serve(
        cls, env: dict[str, str], workdir: Path, device: str = "cpu", name: str = "api", ready_path: str = "/readyz"
    ) -> Server:
        """``atnl serve`` with ``env`` (ATNL_MODEL_STORE, ATNL_REDIS_URL, ...) over SERVE_ENV;
        ``ready_path="/healthz"`` for a server that has no model yet."""
        port = free_port()
        full = atnl_env({**SERVE_ENV, **env, "ATNL_PORT": str(port)}, device)
        return cls(name, atnl_command("serve"), full, workdir, ready_path, port)

    @classmethod
    def bare(cls, name: str, checkpoint: Path, device: str, torch_threads: int, workdir: Path) -> Server:
        """benchmarks.bare_app under uvicorn, one process, ``torch_threads`` (0: torch's default)."""
        port = free_port()
        env = {"ATNL_BENCH_CHECKPOINT": str(checkpoint), "ATNL_BENCH_TORCH_THREADS": str(torch_threads)}
        env["ATNL_BENCH_DEVICE"] = device
        args = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.bare_app:create_app"]
        args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        return cls(name, args, {**os.environ, **env}, workdir, "/healthz", port)

    def start(self, timeout: float = 120) -> Server:
        """Start it and wait until it serves (ATNL_TORCH_COMPILE compiles at load: give it minutes on a CPU)."""
        super().start()

        def ready() -> bool:
            if (code := self.exited()) is not None:
                raise RuntimeError(f"{self.name} exited with {code}; log: {self.log_tail()}")
            try:
                return httpx.get(self.url + self.ready_path, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(ready, f"{self.name} to answer {self.ready_path}", timeout, every=0.2)
        except TimeoutError as e:
            raise RuntimeError(f"{e}; log: {self.log_tail()}") from e
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        import psutil

        t = psutil.Process(self.pid).cpu_times()
        return float(t.user + t.system)

    def rss_bytes(self) -> int:
        import psutil

        return int(psutil.Process(self.pid).memory_info().rss)
