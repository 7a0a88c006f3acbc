"""Settings: one source for every ATNL_* name, cross-field rules, and .env.example kept in step."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.training import TrainConfig
from service.settings import OTHER_ATNL_NAMES, Settings, get_settings, unknown_names

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_names_every_setting_with_its_default() -> None:
    lines = [line.lstrip("# ").strip() for line in ENV_EXAMPLE.read_text().splitlines()]
    given = dict(line.split("=", 1) for line in lines if line.startswith("ATNL_") and "=" in line)
    assert set(given) == {f"ATNL_{name.upper()}" for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        value = given[f"ATNL_{name.upper()}"]
        if isinstance(field.default, bool):
            assert value == str(field.default).lower(), name
        elif isinstance(field.default, int | float):
            assert float(value) == field.default, name
        elif isinstance(field.default, str):
            assert value == field.default, name


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
    root = ENV_EXAMPLE.parent
    files = [p for pattern in ("service/**/*.py", "models/**/*.py", "benchmarks/**/*.py", "scripts/*", "docker/**/*",
                               "docker-compose*.yml", "Makefile") for p in root.glob(pattern) if p.is_file()]  # fmt: skip
    used = {m for p in files for m in re.findall(r"ATNL_[A-Z][A-Z0-9_]*[A-Z0-9]", p.read_text(errors="ignore"))}
    not_names = {"ATNL_X", "ATNL_MAX_TRAIN", "ATNL_NAMES"}  # a docstring's placeholder, an f-string's prefix, OTHER_ATNL_NAMES
    assert not unknown_names(dict.fromkeys(used - not_names, ""))
