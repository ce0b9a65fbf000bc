"""Core REST resources under /api/v1. Each module owns one resource and its route table."""

from aiohttp import web

from guiche.api import (
    api_keys,
    audit,
    channels,
    contacts,
    conversations,
    departments,
    events,
    invitations,
    messages,
    notes,
    plugins,
    search,
    tabulations,
    templates,
    tenants,
    users,
)
from guiche.auth import routes as auth_routes

CORE_ROUTE_TABLES: list[web.RouteTableDef] = [
    auth_routes.routes,
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
    search.routes,
]
