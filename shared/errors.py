"""One error family for the whole project, with messages a user can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problem:
    """One thing wrong with an input: where, what, and how to fix it."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class AppError(Exception):
    """An error whose message is safe and useful to show to the caller."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, problems: list[Problem] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.headers = headers or {}

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.problems:
            body["problems"] = [p.as_dict() for p in self.problems]
        return body


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_failed"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class ConfigError(Exception):
    """Start-up configuration is wrong; the message says which setting and how to fix it."""


@dataclass
class EventInvalid(Exception):
    """An event failed validation; `problems` names each field and what was expected."""

    reason: str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.problems:
            return self.reason
        details = "; ".join(f"{p.field}: {p.message}" for p in self.problems)
        return f"{self.reason}: {details}"


class TransientError(Exception):
    """A dependency (database, broker) is unavailable; retry the same work later."""
