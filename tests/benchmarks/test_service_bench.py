"""`atnl bench service --quick` end to end: real servers (the service with batching on and off,
the bare endpoint twice) on the tiny checkpoint, every row and check in the report (docs/API.md §8.2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.pyspy import summarise
from service.cli.app import app


@pytest.mark.e2e
def test_quick_service_bench_writes_every_row(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "reports"
    args = ["bench", "service", "--quick", "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)

    md = (out / "service.md").read_text()
    report = json.loads((out / "service.json").read_text())
    assert "bench service --quick" in md and "Hardware:" in md and "load average" in md
    servers = report["servers"]
    assert list(servers) == [
        "service",
        "service, batching off",
        "bare FastAPI endpoint",
        "bare FastAPI endpoint, 1 torch thread",
    ]
    for name, rows in servers.items():
        for row in ("encode64", "encode1"):
            assert rows[row]["failures"] == 0 and rows[row]["requests"] > 0, (name, row)
            assert rows[row]["cpu_ms_per_image"] > 0, (name, row)
    service = servers["service"]
    assert service["soak"]["failures"] == 0 and service["soak"]["rss_after_mb"] > 0
    assert service["healthz_under_hallucinate"]["requests"] > 0
    assert service["interpolate14"]["service"]["requests"] == service["interpolate14"]["in_process"]["requests"] > 0
    assert set(service["ops"]) == {"encode", "interpolate", "hallucinate"}
    assert report["in_process"]["encode64"]["cpu_ms_per_image"] > 0
    assert len(report["checks"]) == 8 and all(isinstance(c["met"], bool) for c in report["checks"])
    for heading in ("## Rows", "## Checks", "## Per op", "py-spy"):
        assert heading in md, heading
    assert not re.search(r"\bissue \d", md, re.IGNORECASE)
    assert "encode, 1 image a request, 32 concurrent" in md and "efficiency" in md


def test_profile_summary_groups_samples_by_kind() -> None:
    collapsed = "\n".join(
        [
            "run (uvicorn/main.py:1);forward (torch/nn/modules/conv.py:560) 6",
            "run (uvicorn/main.py:1);load (PIL/ImageFile.py:425) 3",
            "run (uvicorn/main.py:1);parse (python_multipart/multipart.py:1) 1",
        ]
    )
    summary = summarise(collapsed)
    assert summary["samples"] == 10
    assert summary["kinds_percent"]["model forward (torch)"] == 60.0
    assert summary["kinds_percent"]["image decoding (Pillow, numpy)"] == 30.0
    assert summary["top_self_percent"][0] == ("forward (torch/nn/modules/conv.py:560)", 60.0)
