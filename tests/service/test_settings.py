"""Settings: one source for every ATNL_* name, cross-field rules, and .env.example kept in step."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError

from models.training import TrainConfig
from service.settings import OTHER_ATNL_NAMES, Settings, get_settings, unknown_names

ROOT = Path(__file__).resolve().parents[2]


def settings_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_docs", ROOT / "scripts" / "settings_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_env_example_and_the_api_settings_table_are_generated_from_settings() -> None:
    assert settings_docs().stale() == [], "run python scripts/settings_docs.py"
    lines = [line.lstrip("# ").strip() for line in (ROOT / ".env.example").read_text().splitlines()]
    given = dict(line.split("=", 1) for line in lines if line.startswith("ATNL_") and "=" in line)
    assert set(given) == {f"ATNL_{name.upper()}" for name in Settings.model_fields}
    table = (ROOT / "docs" / "API.md").read_text()
    assert all(f"| ATNL_{name.upper()} |" in table for name in Settings.model_fields)


def test_a_stale_settings_table_or_env_example_is_found(tmp_path: Path) -> None:
    docs = settings_docs()
    env, api = tmp_path / ".env.example", tmp_path / "API.md"
    env.write_text(docs.env_example())
    api.write_text((ROOT / "docs" / "API.md").read_text())
    assert docs.stale(env, api) == []
    api.write_text(api.read_text().replace("| ATNL_MAX_STEPS | 64 |", "| ATNL_MAX_STEPS | 65 |"))
    env.write_text(env.read_text().replace("ATNL_PORT=8000\n", ""))
    assert docs.stale(env, api) == [env, api]


def test_default_steps_beyond_max_steps_is_refused() -> None:
    with pytest.raises(ValidationError, match="ATNL_DEFAULT_STEPS"):
        Settings(default_steps=10, max_steps=8, _env_file=None)


def test_training_defaults_are_checked_against_the_deployment_s_maxima() -> None:
    defaults = TrainConfig().to_dict()
    Settings(_env_file=None).check_training_defaults(defaults)
    tight = Settings(max_train_batch_size=50, max_train_epochs=10, _env_file=None)
    with pytest.raises(
        ValueError, match=r"batch_size 100 > ATNL_MAX_TRAIN_BATCH_SIZE 50; epochs|epochs 40 > ATNL_MAX_TRAIN_EPOCHS"
    ):
        tight.check_training_defaults(defaults)
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= {"epochs", "batch_size", "latent_dim", "threads"}


def test_a_misspelt_setting_is_named_in_a_warning(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert unknown_names({"ATNL_MAX_STEP": "9", "ATNL_MAX_STEPS": "9", "ATNL_CACHE_DIR": "/tmp", "HOME": "/"}) == [
        "ATNL_MAX_STEP"
    ]
    assert all(name.startswith("ATNL_") for name in OTHER_ATNL_NAMES)
    monkeypatch.setenv("ATNL_MAX_STEP", "9")
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="atnl.settings"):
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "ATNL_MAX_STEP is not a setting of this service" in caplog.text


def test_every_atnl_name_in_the_project_is_a_setting_or_a_known_other() -> None:
    root = ROOT
    files = [p for pattern in ("service/**/*.py", "models/**/*.py", "benchmarks/**/*.py", "scripts/*", "docker/**/*",
                               "docker-compose*.yml", "Makefile") for p in root.glob(pattern) if p.is_file()]  # fmt: skip
    used = {m for p in files for m in re.findall(r"ATNL_[A-Z][A-Z0-9_]*[A-Z0-9]", p.read_text(errors="ignore"))}
    not_names = {"ATNL_X", "ATNL_MAX_TRAIN", "ATNL_NAMES"}  # a docstring's placeholder, an f-string's prefix, OTHER_ATNL_NAMES
    assert not unknown_names(dict.fromkeys(used - not_names, ""))
