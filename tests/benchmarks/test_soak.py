"""`atnl bench soak` (make soak): a short soak of a real `atnl serve` writes its figures, with no
5xx; the RSS growth is measured from the end of the warm-up to the end of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.soak import MIX, SoakConfig, rss_figures, run_soak


def test_rss_growth_is_measured_after_the_warm_up() -> None:
    # 100 s: fast growth during the warm-up (first 20 s), then flat but for one spike.
    samples = [(float(t), 400.0 + min(t, 20) * 5 + (50 if t == 60 else 0)) for t in range(101)]
    rss = rss_figures(samples, 100.0)
    assert (rss["baseline_mb"], rss["final_mb"], rss["peak_mb"], rss["growth"]) == (500.0, 500.0, 550.0, 0.0)
    samples[-4:] = [(t, 530.0) for t in (97.0, 98.0, 99.0, 100.0)]  # most of the last 5 s: the median moves
    assert rss_figures(samples, 100.0)["growth"] == pytest.approx(0.06)


@pytest.mark.e2e
def test_a_short_soak_has_no_5xx_and_writes_its_figures(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "reports"
    result = run_soak(tiny_checkpoint, out, SoakConfig(seconds=8, concurrency=2), "atnl bench soak --quick", tmp_path)
    assert result["requests"] > 10
    assert result["server_errors"] == 0 and result["transport_errors"] == 0
    assert result["good_requests_failed"] == 0 and result["bad_requests_wrongly_answered"] == 0
    assert set(result["per_kind"]) <= set(MIX)
    report = json.loads((out / "soak.json").read_text())
    assert report["rss"]["baseline_mb"] > 0 and report["rss_samples"]
    md = (out / "soak.md").read_text()
    assert "atnl bench soak --quick" in md and "growth" in md
