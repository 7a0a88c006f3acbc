"""Bounds that are settings: one declaration (service.bounds) drives the check, the start-up check
of the training defaults and the OpenAPI document."""

from __future__ import annotations

import pytest

from service.bounds import HALLUCINATE_N, STEPS, TRAIN_BOUNDS, Bound, env_name
from service.errors import InvalidInput
from service.settings import Settings


def test_a_bound_refuses_outside_its_range_naming_the_setting() -> None:
    s = Settings(max_steps=12, _env_file=None)
    for ok in (STEPS.minimum, 12):
        STEPS.check("steps", ok, s)
    for bad in (STEPS.minimum - 1, 13):
        with pytest.raises(InvalidInput, match=rf"steps must be between 2 and 12 \(ATNL_MAX_STEPS\), got {bad}") as e:
            STEPS.check("steps", bad, s)
        assert e.value.extra["field"] == "steps"


def test_schema_keywords_follow_the_deployment() -> None:
    s = Settings(max_steps=12, default_steps=5, max_train_threads=3, _env_file=None)
    assert STEPS.schema(s) == {"minimum": 2, "maximum": 12, "default": 5}
    assert TRAIN_BOUNDS["threads"].schema(s) == {"minimum": 0, "maximum": 3}
    assert env_name("max_hallucinate_n") == HALLUCINATE_N.env == "ATNL_MAX_HALLUCINATE_N"
    assert STEPS.default_env == "ATNL_DEFAULT_STEPS" and Bound("max_files").default_env is None


def test_every_declared_bound_names_a_setting() -> None:
    for bound in (STEPS, HALLUCINATE_N, *TRAIN_BOUNDS.values()):
        assert bound.maximum in Settings.model_fields
        assert bound.default is None or bound.default in Settings.model_fields
