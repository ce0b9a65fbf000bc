"""Walk every route of the real app: each API route declares a known permission, and the
server enforces exactly that permission for every role.

The walk reads the router, so routes added later (core or plugin) are covered without
touching this file. Each call uses a random UUID for path parameters and `{}` as body:
the point is the authorization decision, which comes before any lookup or validation.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from guiche.http.endpoint import AUTHENTICATED, PUBLIC, Endpoint, endpoint_of
from guiche.models import TenantPlugin, User
from guiche.runtime.services import SERVICES
from guiche.tenancy.rbac import PLATFORM_PERMISSIONS, ROLES

# Paths that are not API resources and so need no endpoint declaration.
UNDECLARED_ALLOWED = re.compile(
    r"^(/health(/.*)?|/metrics|/api/openapi\.json|/api/docs(/.*)?|/ws|/webhooks/.*)$"
)
PLUGIN_API = re.compile(r"^/api/v1/plugins/([^/{}]+)/")
PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class DeclaredRoute:
    method: str
    path: str  # canonical, with {params}
    url: str  # params filled with random UUIDs
    spec: Endpoint

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _path(route: web.AbstractRoute) -> str:
    resource = route.resource
    return resource.canonical if resource is not None else ""


def _declared_routes(app: web.Application) -> tuple[list[DeclaredRoute], list[str]]:
    """Every callable route with its declaration, and the routes that lack one."""
    declared: list[DeclaredRoute] = []
    undeclared: list[str] = []
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds HEAD beside every GET
            continue
        path = _path(route)
        if isinstance(route.resource, web.StaticResource) or UNDECLARED_ALLOWED.match(path):
            continue
        spec = endpoint_of(route.handler)
        if spec is None:
            undeclared.append(f"{route.method} {path}")
            continue
        params = {name: str(uuid.uuid4()) for name in PARAM.findall(path)}
        url = str(route.resource.url_for(**params)) if params else path
        declared.append(DeclaredRoute(route.method, path, url, spec))
    return declared, undeclared


async def _call(client: Any, route: DeclaredRoute, headers: dict[str, str]) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": headers}
    if route.method in ("POST", "PUT", "PATCH", "DELETE"):
        kwargs["json"] = {}
    resp = await client.request(route.method, route.url, **kwargs)
    body: Any = None
    if resp.content_type == "application/json":
        body = await resp.json()
    return resp.status, body


def _code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


async def test_every_api_route_declares_a_known_permission(client):
    declared, undeclared = _declared_routes(client.app)
    assert not undeclared, f"API routes without an @endpoint declaration: {undeclared}"
    registry = client.app[SERVICES].permissions
    unknown = [
        f"{route} -> {route.spec.permission!r}"
        for route in declared
        if route.spec.permission not in (PUBLIC, AUTHENTICATED)
        and not registry.known(route.spec.permission)
    ]
    assert not unknown, f"routes declaring permissions nobody grants: {unknown}"
    paths = {route.path for route in declared}
    assert {"/api/v1/auth/login", "/api/v1/api-keys", "/api/v1/tenant"} <= paths


async def test_no_credential_means_401_on_every_protected_route(client):
    declared, _ = _declared_routes(client.app)
    problems = []
    for route in declared:
        status, body = await _call(client, route, {})
        if route.spec.permission == PUBLIC:
            if status == 401:
                problems.append(f"{route}: PUBLIC but answered 401")
        elif status != 401 or _code(body) != "not_authenticated":
            problems.append(f"{route}: expected 401 not_authenticated, got {status} {body}")
        if status >= 500:
            problems.append(f"{route}: {status} without credentials")
    assert not problems, "\n".join(problems)


#: Routes that, when they succeed, end the caller's sessions (the walk signs in again).
SESSION_ENDING = {"/api/v1/auth/logout-all", "/api/v1/auth/password"}


async def test_each_role_gets_403_exactly_where_it_lacks_the_permission(
    client, make_company, auth_headers
):
    company = await make_company()
    declared, _ = _declared_routes(client.app)
    for plugin in {m.group(1) for r in declared if (m := PLUGIN_API.match(r.path))}:
        # plugin routes answer 404 to companies that have not enabled the plugin
        await TenantPlugin.insert(
            TenantPlugin(tenant=company.tenant_id, plugin=plugin, enabled=True, settings={})
        )
    members = {"owner": company.owner}
    for role in ROLES:
        if role != "owner":
            members[role] = await company.add(role)
    platform_admin = await company.add("viewer")
    await User.update({User.is_platform_admin: True}).where(User.id == platform_admin.user_id)

    registry = client.app[SERVICES].permissions
    problems: list[str] = []
    calls = 0
    for role, member in members.items():
        headers = await auth_headers(member)
        for route in declared:
            permission = route.spec.permission
            if permission in (PUBLIC, AUTHENTICATED):
                denied = False
            elif permission in PLATFORM_PERMISSIONS:
                denied = True
            else:
                denied = role not in registry.roles_for(permission)
            status, body = await _call(client, route, headers)
            calls += 1
            if route.path in SESSION_ENDING and status < 300:
                headers = await auth_headers(member)  # it ended every session of theirs
            if denied and (status != 403 or _code(body) != "permission_denied"):
                problems.append(f"{role} {route} ({permission}): expected 403, got {status} {body}")
            if not denied and status == 403:
                problems.append(f"{role} {route} ({permission}): unexpected 403 {body}")
            if status >= 500:
                problems.append(f"{role} {route}: {status} for a random id / empty body")

    platform_routes = [r for r in declared if r.spec.permission in PLATFORM_PERMISSIONS]
    assert platform_routes, "expected the platform routes (/api/v1/tenants) in the walk"
    headers = await auth_headers(platform_admin)
    for route in platform_routes:
        status, body = await _call(client, route, headers)
        calls += 1
        if status in (401, 403) or status >= 500:
            problems.append(f"platform admin {route}: got {status} {body}")

    assert calls >= len(declared) * len(ROLES)
    assert not problems, "\n".join(problems)
