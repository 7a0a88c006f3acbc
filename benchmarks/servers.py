"""The server processes ``atnl bench service`` measures: ``atnl serve`` and the bare endpoint.

Each runs as its own process on a free loopback port, started from a scratch
directory (no stray ``.env``), its log in a file; psutil reads its CPU time and RSS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process; ``ready_path`` answers 200 once it serves."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path, ready_path: str) -> None:
        self.name, self.args, self.ready_path = name, args, ready_path
        self.port = free_port()
        self.env = {**os.environ, **env, "ATNL_PORT": str(self.port)}
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.process: psutil.Process | None = None

    @classmethod
    def service(cls, name: str, store: Path, device: str, workdir: Path, env: dict[str, str]) -> Server:
        """``atnl serve`` on ``store``; ``env``: extra ATNL_* settings (ATNL_BATCH_ENABLED=false, ...)."""
        base = {"ATNL_MODEL_STORE": str(store), "ATNL_HOST": "127.0.0.1", "ATNL_DEVICE": device}
        base |= {"ATNL_BOOTSTRAP_DEFAULT_MODEL": "false", "ATNL_LOG_LEVEL": "warning"}
        cli = [sys.executable, "-c", "from service.cli.app import main; main()"]  # `atnl`, without needing its script
        return cls(name, [*cli, "serve"], {**base, **env}, workdir, "/readyz")

    @classmethod
    def bare(cls, name: str, checkpoint: Path, device: str, torch_threads: int, workdir: Path) -> Server:
        """benchmarks.bare_app under uvicorn, one process, ``torch_threads`` (0: torch's default)."""
        env = {"ATNL_BENCH_CHECKPOINT": str(checkpoint), "ATNL_BENCH_TORCH_THREADS": str(torch_threads)}
        env["ATNL_BENCH_DEVICE"] = device
        server = cls(name, [], env, workdir, "/healthz")
        server.args = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.bare_app:create_app"]
        server.args += ["--host", "127.0.0.1", "--port", str(server.port), "--log-level", "warning"]
        return server

    def start(self, timeout: float = 900) -> Server:
        """Start it and wait until it serves (ATNL_TORCH_COMPILE compiles at load: minutes on a CPU)."""
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        self.process = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        assert self.process is not None
        t = self.process.cpu_times()
        return float(t.user + t.system)

    def rss_bytes(self) -> int:
        assert self.process is not None
        return int(self.process.memory_info().rss)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
