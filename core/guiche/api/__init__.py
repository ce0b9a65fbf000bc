"""Core REST resources under /api/v1. Each module owns one resource and its route table."""

from aiohttp import web

from guiche.api import (
    api_keys,
    audit,
    auth,
    channel_types,
    channels,
    contacts,
    conversations,
    departments,
    events,
    invitations,
    messages,
    notes,
    plugins,
    presence,
    provider_calls,
    search,
    tabulations,
    templates,
    tenants,
    users,
)

CORE_ROUTE_TABLES: list[web.RouteTableDef] = [
    auth.routes,
    tenants.routes,
    users.routes,
    invitations.routes,
    departments.routes,
    contacts.routes,
    tabulations.routes,
    templates.routes,
    notes.routes,
    channels.routes,
    conversations.routes,
    messages.routes,
    api_keys.routes,
    plugins.routes,
    events.routes,
    audit.routes,
    provider_calls.routes,
    search.routes,
    presence.routes,
    channel_types.routes,
]
