"""`atnl bench quality|fewshot --quick` run end to end and write their reports (figures not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app


@pytest.mark.parametrize("bench", ["quality", "fewshot"])
def test_quick_bench_writes_markdown_json_and_png(bench: str, tmp_path: Path, atnl_cache_dir: Path) -> None:
    out = tmp_path / "reports"
    result = CliRunner().invoke(app, ["bench", bench, "--quick", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)

    md = (out / f"{bench}.md").read_text()
    report = json.loads((out / f"{bench}.json").read_text())
    assert f"bench {bench} --quick" in md and "Hardware:" in md
    assert "bench" in report["command"] and report["hardware"]["cpu"]
    assert list(out.glob("*.png"))
    if bench == "quality":
        datasets = [r["dataset"] for r in report["results"]]
        assert datasets == ["mnist-5k", "pose-digits"]
        families = report["results"][0]["families"]
        assert set(families) == {"ae", "vae", "aae", "acai", "vae-tl", "atnl"}
        assert {"path_lerp", "path_slerp"} <= set(families["atnl"])
        best = max(m["linear_probe_acc"] for m in families.values())  # the best family always gets extra seeds
        seeded = [m for m in families.values() if m["linear_probe_acc"] == best]
        assert all(len(m["linear_probe_seeds"]) == 2 and m["linear_probe_seeds"][0] == best for m in seeded)
        assert "Linear probe over seeds" in md
    else:
        assert set(report["accuracy"]) == {"knn", "cnn"}
        assert report["hallucinator"]["trained_on"] > 0
        seen = set(report["hallucinator"]["trained_on_indices"])
        assert not seen & set(report["split"]["pool_indices"]) and not seen & set(report["split"]["test_indices"])
