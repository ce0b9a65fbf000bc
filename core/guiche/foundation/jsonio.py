"""Fast JSON responses (orjson) that understand pydantic models, UUIDs and datetimes."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "__str__"):
        return str(value)
    raise TypeError


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def dumps_text(data: Any) -> str:
    """JSON as text, for jsonb query parameters."""
    return dumps(data).decode()


def validate_strict(model: type[M], data: Any) -> M:
    """`data` (parsed from a client's JSON by orjson) validated as JSON, in strict mode.

    API input has one contract: `0` is not a boolean, `false` not an integer, `"1"` not
    a number, while UUIDs, datetimes and enums are read from their JSON strings (which
    strict validation of Python objects would refuse). Going through orjson's reading
    also bounds numbers: an integer literal beyond 64 bits is read as a double, as
    JavaScript reads it, so an `int` field refuses it and free-form JSON stays storable.
    Raises pydantic's ValidationError.
    """
    return model.model_validate_json(dumps(data), strict=True)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`data` as a JSON response; a pydantic model is written by pydantic's own serializer
    (straight to bytes: no intermediate dict, the same JSON `model_dump(mode="json")` gives)."""
    body = (
        data.__pydantic_serializer__.to_json(data) if isinstance(data, BaseModel) else dumps(data)
    )
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)
