"""`GET /api/v1/presence`: the caller's own presence in the active company.

Agents may set their own status (`PUT /api/v1/users/{id}/status`) but not read the
people list (`users.read` is for leads), so a frontend needs this to show the status
it is about to change. Changes arrive live as `operator.status` events.
"""

from __future__ import annotations

import datetime as dt
import uuid

from aiohttp import web
from pydantic import BaseModel

from guiche.auth.principal import current_principal
from guiche.foundation.errors import Forbidden, NotFound
from guiche.http.endpoint import AUTHENTICATED, endpoint
from guiche.models import Membership
from guiche.tenancy.scope import owned

routes = web.RouteTableDef()


class PresenceOut(BaseModel):
    user_id: uuid.UUID
    status: str
    status_changed_at: dt.datetime
    max_concurrent_chats: int


@routes.get("/api/v1/presence")
@endpoint(
    AUTHENTICATED,
    response=PresenceOut,
    summary="My presence (online/away/offline) in this company",
    tags=("users",),
    errors=(403,),
)
async def my_presence(request: web.Request) -> PresenceOut:
    principal = current_principal(request)
    if principal.user_id is None:
        raise Forbidden("Presence belongs to a person, not an API key", code="not_a_person")
    row = (
        await owned(
            Membership,
            principal.tenant_id,
            Membership.status,
            Membership.status_changed_at,
            Membership.max_concurrent_chats,
        )
        .where(Membership.user == principal.user_id)
        .first()
    )
    if row is None:  # pragma: no cover - the auth middleware checked the seat
        raise NotFound("No seat in this company")
    return PresenceOut(user_id=principal.user_id, **row)
