"""`GET /api/v1/agents`: who can take a conversation, for anyone allowed to transfer one.

Agents may transfer to a colleague (`conversations.transfer`) but may not read the
people list (`users.read`: names, emails, roles, caps are for leads), so the transfer
picker gets this narrower view: active seats of the roles that take conversations, with
their name and presence, and nothing else.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import BaseModel

from guiche.auth.principal import current_principal
from guiche.http.endpoint import endpoint
from guiche.models import Membership
from guiche.tenancy.scope import owned

routes = web.RouteTableDef()

TAKING_ROLES = ("owner", "admin", "supervisor", "agent")
MAX_AGENTS = 1000


class AgentOut(BaseModel):
    id: uuid.UUID
    name: str
    status: str


class AgentList(BaseModel):
    items: list[AgentOut]
    next_cursor: str | None = None


@routes.get("/api/v1/agents")
@endpoint(
    "conversations.transfer",
    response=AgentList,
    summary="People who can take a conversation (name and presence), for transfers",
    tags=("conversations",),
)
async def list_agents(request: web.Request) -> AgentList:
    principal = current_principal(request)
    rows = (
        await owned(
            Membership,
            principal.tenant_id,
            Membership.user.id.as_alias("user_id"),
            Membership.user.name.as_alias("account_name"),
            Membership.display_name,
            Membership.status,
        )
        .where(Membership.is_active == True)  # noqa: E712 - Piccolo's column comparison
        .where(Membership.role.is_in(list(TAKING_ROLES)))
        .limit(MAX_AGENTS)
    )
    items = [
        AgentOut(
            id=row["user_id"],
            name=row["display_name"] or row["account_name"],
            status=row["status"],
        )
        for row in rows
    ]
    return AgentList(items=sorted(items, key=lambda a: (a.name.casefold(), a.id)))
