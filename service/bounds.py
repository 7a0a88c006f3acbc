"""Request values whose upper bound is a deployment setting, each declared once.

A ``Bound`` names its least value and the ``service.settings.Settings`` attribute holding its greatest (and,
for ``steps``, the one holding its default). Validation (``Bound.check``), the start-up check
of the training defaults (``Settings.check_training_defaults``) and the OpenAPI document
(``service.openapi``) all read these declarations, so a bound changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_settings import BaseSettings

from service.errors import InvalidInput


def env_name(attr: str) -> str:
    """The environment variable of the setting ``attr``: max_steps -> ATNL_MAX_STEPS."""
    return f"ATNL_{attr.upper()}"


@dataclass(frozen=True)
class Bound:
    maximum: str
    """The Settings attribute holding the greatest value."""
    minimum: int = 1
    default: str | None = None
    """The Settings attribute holding the value a request that leaves it out gets."""

    @property
    def env(self) -> str:
        return env_name(self.maximum)

    @property
    def default_env(self) -> str | None:
        return None if self.default is None else env_name(self.default)

    def highest(self, settings: BaseSettings) -> int:
        return int(getattr(settings, self.maximum))

    def check(self, name: str, value: int, settings: BaseSettings) -> None:
        """InvalidInput naming ``name`` when ``value`` is outside [minimum, the setting]."""
        if not self.minimum <= value <= self.highest(settings):
            raise InvalidInput(
                f"{name} must be between {self.minimum} and {self.highest(settings)} ({self.env}), got {value}", field=name
            )

    def schema(self, settings: BaseSettings) -> dict[str, Any]:
        """The JSON-schema keywords of this bound in this deployment."""
        keywords: dict[str, Any] = {"minimum": self.minimum, "maximum": self.highest(settings)}
        if self.default is not None:
            keywords["default"] = getattr(settings, self.default)
        return keywords


STEPS = Bound("max_steps", minimum=2, default="default_steps")
"""Frames of one interpolation, endpoints included."""
HALLUCINATE_N = Bound("max_hallucinate_n")
"""Images one hallucinate request makes (n, or per_class times the labels)."""
TRAIN_BOUNDS = {
    "epochs": Bound("max_train_epochs"),
    "batch_size": Bound("max_train_batch_size"),
    "latent_dim": Bound("max_train_latent_dim"),
    "threads": Bound("max_train_threads", minimum=0),
    "image_size": Bound("max_image_side", minimum=8),
}
"""Training fields whose greatest value is a setting, by TrainConfig field name."""
