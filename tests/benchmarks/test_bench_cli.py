"""`atnl bench quality|fewshot|labels --quick` run end to end and write their reports (figures not
asserted). Each trains models for a minute or more: marked e2e, so `make test-fast` leaves them out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.hallucination import DEFAULT_STRATEGY
from service.cli.app import app

pytestmark = pytest.mark.e2e


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
        seeded += [families["atnl"], families["vae-tl"]]  # and so do ATNL and VAE-TL, wherever their probe is
        assert all(len(m["linear_probe_seeds"]) == 2 and m["linear_probe_seeds"][0] == m["linear_probe_acc"] for m in seeded)
        assert [p["seed"] for p in families["atnl"]["path_slerp_seeds"]] == [0, 1]
        assert families["atnl"]["path_slerp_seeds"][0]["sps"] == families["atnl"]["path_slerp"]["sps"]
        for family, m in families.items():
            assert 0.0 <= m["recon_identity"] <= 1.0, family
            h = m["hallucination"]
            assert h["strategy"] == (DEFAULT_STRATEGY if family == "atnl" else "both"), family
            assert 0.0 <= h["judge_agreement"] <= 1.0 and h["diversity_ratio"] > 0.0, family
            assert h["frechet"] >= 0.0 and h["jittered_frechet"] >= 0.0, family
            assert h["self_check"]["checked"] == (family == "atnl"), family  # only atnl can read its images back
            assert (0.0 <= h["self_check"]["unchecked_judge_agreement"] <= 1.0) if family == "atnl" else True
        for r in report["results"]:
            assert (out / r["figures"]["hallucination"]).is_file()
            assert f"]({r['figures']['hallucination']})" in md
        for heading in ("Linear probe over seeds", "Slerp paths over seeds", "### Hallucinations", "### Targets"):
            assert heading in md, heading
        assert not re.search(r"\bissue \d", md, re.IGNORECASE) and "ATNL* (lerp), explained" in md
    else:
        assert set(report["accuracy"]) == {"knn", "cnn"}
        assert report["hallucinator"]["trained_on"] > 0
        seen = set(report["hallucinator"]["trained_on_indices"])
        assert not seen & set(report["split"]["pool_indices"]) and not seen & set(report["split"]["test_indices"])
        assert report["config"]["strategy"] == DEFAULT_STRATEGY
        assert "hallucination - traditional" in md and "beats both" in md


def test_quick_labels_bench_reads_every_strategy_with_and_without_the_self_check(tmp_path: Path, atnl_cache_dir: Path) -> None:
    out = tmp_path / "reports"
    result = CliRunner().invoke(app, ["bench", "labels", "--quick", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "labels.json").read_text())
    assert set(report["judge_test_accuracy"]) == {"judge CNN", "batch-norm CNN", "RBF SVM"}
    assert list(report["results"]) == ["README example", "5-shot draw 0"]
    for cells in report["results"].values():
        assert [c["strategy"] for c in cells] == ["same", "ordinal", "both", "restyle", "mixed"]
        for c in cells:
            assert c["none"]["replaced"] == c["none"]["dropped"] == 0  # unchecked: the first draws, all kept
            assert c["model"]["images"] + c["model"]["dropped"] == c["none"]["images"]
    assert "unchecked" in (out / "labels.md").read_text()
