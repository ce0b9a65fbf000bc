"""The one error shape: `{"error": {"code", "message", "details"}}`, raised as typed exceptions."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error a client may see. Subclasses fix the status and code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        if code:
            self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(ApiError):
    status, code = 422, "validation_error"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, details=details, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


def pydantic_details(errors: list[Any]) -> list[dict[str, Any]]:
    """Flatten pydantic errors into one entry per bad field."""
    return [
        {
            "field": ".".join(str(part) for part in err.get("loc", ()) if part != "__root__"),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors
    ]
