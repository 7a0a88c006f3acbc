"""Following a training job: what ``Job.wait`` and ``AsyncJob.wait`` do after each look at it."""

from __future__ import annotations

import time
from typing import Any

from atnl_client.answers import JOB_ENDED, JobState
from atnl_client.calls import segment

DEFAULT_POLL_SECONDS = 1.0
"""Seconds between two looks at a job while waiting for it."""


class JobWatch:
    """Tells new progress from old, and when to look again: ``poll`` seconds later, never past
    ``timeout`` seconds from the start (None: no limit)."""

    def __init__(self, poll: float, timeout: float | None) -> None:
        if poll <= 0:
            raise ValueError(f"poll must be > 0 seconds, got {poll}")
        self.poll = poll
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.seen: dict[str, Any] | None = None

    def look(self, state: JobState) -> tuple[dict[str, Any] | None, float | None]:
        """(the progress if it is new, else None; seconds to wait before the next look, None once
        the job ended). TimeoutError when it has not ended by the deadline."""
        news = None
        if state.progress and state.progress != self.seen:
            news = self.seen = state.progress
        if state.status in JOB_ENDED:
            return news, None
        if self.deadline is None:
            return news, self.poll
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"job {state.id} is still {state.status} after {self.timeout:g} s")
        return news, min(self.poll, left)


class JobRecord:
    """A training job as last looked at: ``state`` and its fields (``Job`` and ``AsyncJob`` look again)."""

    def __init__(self, state: JobState, status_url: str | None = None) -> None:
        self.state = state
        self.status_url = status_url or f"/v1/jobs/{segment(state.id)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, status={self.status!r}, model_id={self.model_id!r})"

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def progress(self) -> dict[str, Any] | None:
        """The last progress the job reported (phase, epoch, epochs, step, steps, loss, ...)."""
        return self.state.progress

    @property
    def model_id(self) -> str | None:
        """The model it made, once finished."""
        return self.state.model_id

    @property
    def error(self) -> str | None:
        return self.state.error

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED
