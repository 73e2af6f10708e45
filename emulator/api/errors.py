"""Structured API errors, as the apiserver returns them and the client raises them.

Contract: every failure that crosses the wire is an ``APIError`` with one of the
codes below, a human message in Kubernetes' wording, and optional field causes
(``{"field": "spec.containers[0].name", "reason": "FieldValueRequired",
"message": "Required value"}``). ``to_wire``/``from_wire`` round-trip it.
"""
from __future__ import annotations

from typing import Any

NOT_FOUND = "NotFound"
ALREADY_EXISTS = "AlreadyExists"
CONFLICT = "Conflict"
INVALID = "Invalid"
FORBIDDEN = "Forbidden"
EXPIRED = "Expired"
TOO_LARGE = "TooLarge"
BAD_REQUEST = "BadRequest"
UNAVAILABLE = "Unavailable"
TIMEOUT = "Timeout"
TOO_MANY_REQUESTS = "TooManyRequests"   # e.g. an eviction a PodDisruptionBudget refuses
INTERNAL_ERROR = "InternalError"

CODES = (NOT_FOUND, ALREADY_EXISTS, CONFLICT, INVALID, FORBIDDEN, EXPIRED,
         TOO_LARGE, BAD_REQUEST, UNAVAILABLE, TIMEOUT, TOO_MANY_REQUESTS, INTERNAL_ERROR)

# The HTTP status Kubernetes would give each code; shown by the CLI.
HTTP_STATUS = {NOT_FOUND: 404, ALREADY_EXISTS: 409, CONFLICT: 409, INVALID: 422,
               FORBIDDEN: 403, EXPIRED: 410, TOO_LARGE: 413, BAD_REQUEST: 400,
               UNAVAILABLE: 503, TIMEOUT: 504, TOO_MANY_REQUESTS: 429, INTERNAL_ERROR: 500}


class APIError(Exception):
    """An API failure with a code, a message and field causes."""

    def __init__(self, code: str, message: str, causes: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.causes = list(causes or [])

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"APIError({self.code!r}, {self.message!r})"

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "causes": self.causes}

    @classmethod
    def from_wire(cls, d: Any) -> "APIError":
        if not isinstance(d, dict):
            return cls(BAD_REQUEST, f"malformed error from server: {d!r}")
        return cls(str(d.get("code", BAD_REQUEST)), str(d.get("message", "")),
                   list(d.get("causes") or []))


def cause(field: str, reason: str, message: str) -> dict[str, str]:
    return {"field": field, "reason": reason, "message": message}


def not_found(resource: str, name: str) -> APIError:
    """Kubernetes' wording: ``pods "web-1" not found``."""
    return APIError(NOT_FOUND, f'{resource} "{name}" not found')


def already_exists(resource: str, name: str) -> APIError:
    return APIError(ALREADY_EXISTS, f'{resource} "{name}" already exists')


def conflict(resource: str, name: str) -> APIError:
    return APIError(CONFLICT, f'Operation cannot be fulfilled on {resource} "{name}": '
                              "the object has been modified; please apply your changes "
                              "to the latest version and try again")
