"""The one error type ``models`` raises for input a caller can fix.

``InputError`` subclasses ``ValueError`` so plain Python callers keep working; the
service maps it to a 422 problem+json in one place (``service/errors.py``).
Programming errors (wrong tensor plumbing inside the package) stay ordinary
exceptions and surface as 500s.
"""

from __future__ import annotations


class InputError(ValueError):
    """A caller's input the models cannot take: bad shape, unknown option, out-of-range value.

    ``field`` names the input at fault where the caller's name for it is known
    (``method``, ``per_class``, ``labels``); the service puts it in the problem body."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
