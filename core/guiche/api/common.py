"""Small pieces the resource modules share: path ids, partial updates, search, emails."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, StringConstraints

from guiche.tenancy.scope import parse_uuid

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


#: An email address, lower-cased: the shape is checked, deliverability is not.
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_email)]


def path_id(request: web.Request, what: str, key: str = "id") -> uuid.UUID:
    """A UUID from the URL; anything else is simply not found."""
    return parse_uuid(request.match_info[key], what)


def like_pattern(text: str) -> str:
    """`%text%` with LIKE's wildcards escaped, so a search for "50%" means fifty percent."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def changes(body: BaseModel, nullable: Iterable[str] = ()) -> dict[str, Any]:
    """The fields a PATCH sent; null counts only for fields that may be cleared."""
    allowed = set(nullable)
    return {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name in allowed
    }
