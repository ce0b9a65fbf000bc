"""`GET /api/v1/channel-types`: the channel types a company can create, with the JSON
Schema of each type's credentials, so a frontend draws the setup form (Meta's ids and
token, an Evolution server's URL and key) without knowing any provider.

Only types whose plugin the company enabled are listed: creating a channel of another
type would be refused anyway.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from guiche.auth.principal import current_principal
from guiche.companies.enablement import enabled_settings
from guiche.http.endpoint import endpoint
from guiche.runtime.services import services_of

routes = web.RouteTableDef()


class ChannelTypeOut(BaseModel):
    type: str
    plugin: str
    description: str
    capabilities: list[str]
    credentials_schema: dict[str, Any]


class ChannelTypeList(BaseModel):
    items: list[ChannelTypeOut]
    next_cursor: str | None = None


@routes.get("/api/v1/channel-types")
@endpoint(
    "channels.read",
    response=ChannelTypeList,
    summary="Channel types this company can create, with their credentials' JSON Schema",
    tags=("channels",),
)
async def list_channel_types(request: web.Request) -> ChannelTypeList:
    principal = current_principal(request)
    services = services_of(request)
    enabled = await enabled_settings(services, principal.tenant_id)
    items = [
        ChannelTypeOut(
            type=name,
            plugin=plugin,
            description=spec.description or services.plugins.infos[plugin].description,
            capabilities=sorted(spec.capabilities),
            credentials_schema=spec.credentials_model.model_json_schema(),
        )
        for name, (plugin, spec) in sorted(services.plugins.channel_types.items())
        if plugin in enabled
    ]
    return ChannelTypeList(items=items)
