"""schemathesis, as an outside client would run it, against a real `atnl serve` on the tiny model
(docs/API.md §1-§3): every check (`--checks all`), every phase (examples, coverage, fuzzing, and the stateful
one: train -> job -> cancel -> job, models -> activate), seeded and bounded. Passes only with no
failure and no server error. What the hooks add, and why: tests/service/schemathesis_hooks.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import Server

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
TOKEN = "schemathesis-token"
MAX_EXAMPLES = 10
"""Cases per operation and phase: about 900 requests, 20-60 s on two busy cores."""
SEED = 15


@pytest.fixture
def api(tmp_path: Path, store_dir: Path, redis_url: str) -> Iterator[Server]:
    """`atnl serve` on the tiny model, with a token; no worker, so jobs stay queued until canceled."""
    env = {
        "ATNL_MODEL_STORE": str(store_dir),
        "ATNL_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/2",  # its own database: other tests flush theirs
        "ATNL_MAX_QUEUED_JOBS": "100000",  # every enqueued job stays queued: room for all of them
    }
    server = Server.serve({**env, "ATNL_API_TOKEN": TOKEN}, tmp_path)
    yield server.start()
    server.stop()


def schemathesis_run(url: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The command docs/API.md's readers run by hand, on ``url``."""
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def test_schemathesis_finds_no_failure_and_no_server_error(api: Server, tmp_path: Path) -> None:
    run = schemathesis_run(api.url, tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    assert re.search(r"✅ Stateful", output), output[-3000:]
    counts = httpx.get(f"{api.url}/metrics").text
    for seen in (  # the stateful phase went train -> job -> cancel and models -> activate
        r'atnl_requests_total\{method="POST",route="/v1/train",status="202"\}',
        r'atnl_requests_total\{method="DELETE",route="/v1/jobs/\{job_id\}",status="200"\}',
        r'atnl_requests_total\{method="GET",route="/v1/jobs/\{job_id\}",status="200"\}',
        r'atnl_requests_total\{method="POST",route="/v1/models/\{model_id\}/activate",status="200"\}',
    ):
        assert re.search(seen, counts), seen
