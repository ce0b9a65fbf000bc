"""The OpenAPI document describes every declared /api route, and the docs page works offline."""

from __future__ import annotations

import enum
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from guiche.app import create_app
from guiche.http.endpoint import endpoint_of
from guiche.http.pagination import Page, PageQuery
from guiche.plugin import (
    PUBLIC,
    PluginInfo,
    RouteSpec,
    WebhookRouteSpec,
    endpoint,
    hookimpl,
)
from guiche.web.openapi import DOCS_PATH, OPENAPI_PATH


class Status(enum.StrEnum):
    open = "open"
    closed = "closed"


class Address(BaseModel):
    city: str
    zip_code: str | None = None


class ItemIn(BaseModel):
    name: str = Field(min_length=1, description="What the item is called")
    status: Status = Status.open
    address: Address | None = None


class ItemOut(BaseModel):
    id: str
    name: str
    status: Status


class ItemQuery(PageQuery):
    status: Status | None = None


class Tag(BaseModel):
    label: str


def _other_tag_model() -> type[BaseModel]:
    class Tag(BaseModel):  # same name, different model: the generator must keep both
        weight: int

    return Tag


OtherTag = _other_tag_model()


@endpoint("contacts.read", query=ItemQuery, response=Page[ItemOut])
async def list_items(request: web.Request, *, query: ItemQuery) -> dict[str, Any]:
    """List items.

    Newest first, cursor-paginated."""
    return {"items": [], "next_cursor": None}


@endpoint("contacts.manage", body=ItemIn, response=ItemOut, status=201, summary="Create an item")
async def create_item(request: web.Request, *, body: ItemIn) -> ItemOut:
    return ItemOut(id="1", name=body.name, status=body.status)


@endpoint("contacts.read", response=list[Tag])
async def item_tags(request: web.Request) -> list[Tag]:
    return []


@endpoint("contacts.read", response=list[OtherTag])  # type: ignore[valid-type]
async def item_weights(request: web.Request) -> list[Any]:
    return []


@endpoint("contacts.manage", status=204)
async def delete_item(request: web.Request) -> None:
    return None


class ImportSummary(BaseModel):
    created: int


@endpoint("contacts.import", response=ImportSummary, content_type="text/csv")
async def import_items(request: web.Request) -> ImportSummary:
    return ImportSummary(created=len((await request.read()).splitlines()))


@endpoint("contacts.read", content_type="text/csv")
async def export_items(request: web.Request) -> web.Response:
    return web.Response(text="name\n", content_type="text/csv")


async def provider_hook(request: web.Request) -> web.Response:
    return web.Response(text="ok")


class DocsPlugin:
    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="docsdemo", version="1.0")

    @hookimpl
    def guiche_routes(self) -> list[RouteSpec]:
        return [
            RouteSpec("GET", "items", list_items),
            RouteSpec("POST", "items", create_item),
            RouteSpec("GET", "items/{item_id}/tags", item_tags),
            RouteSpec("GET", "items/{item_id}/weights", item_weights),
            RouteSpec("DELETE", "items/{item_id}", delete_item),
            RouteSpec("POST", "items/import", import_items),
            RouteSpec("GET", "items/export", export_items),
        ]

    @hookimpl
    def guiche_webhook_routes(self) -> list[WebhookRouteSpec]:
        return [WebhookRouteSpec("POST", "inbound", provider_hook)]


@endpoint(PUBLIC, summary="Ping")
async def ping(request: web.Request) -> dict[str, str]:
    return {"pong": "yes"}


PLUGIN = "/api/v1/plugins/docsdemo"


@pytest.fixture
async def docs_client(aiohttp_client: Any, make_settings: Any) -> Any:
    app = create_app(make_settings(), extra_plugins=(("docsdemo", DocsPlugin()),))
    app.router.add_get("/api/v1/test-ping", ping)  # a PUBLIC route, as login will be
    return await aiohttp_client(app)


@pytest.fixture
async def spec(docs_client: Any) -> dict[str, Any]:
    resp = await docs_client.get(OPENAPI_PATH)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return await resp.json()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


async def test_document_is_valid_openapi_31_covering_every_declared_api_route(
    docs_client: Any, spec: dict[str, Any]
) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # the OpenAPI 3.1 meta-schema, JSON Schema 2020-12 included
    declared = {
        (route.resource.canonical, route.method.lower())
        for route in docs_client.app.router.routes()
        if endpoint_of(route.handler) is not None
        and route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
        and not route.resource.canonical.startswith(DOCS_PATH)
        and route.resource.canonical != OPENAPI_PATH
    }
    described = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert declared <= described
    assert (f"{PLUGIN}/items", "post") in described
    for ref in _refs(spec):
        _resolve(spec, ref)
    operation_ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


async def test_undeclared_routes_and_webhooks_are_left_out(spec: dict[str, Any]) -> None:
    paths = set(spec["paths"])
    assert not {"/health", "/health/ready", "/metrics", OPENAPI_PATH, DOCS_PATH} & paths
    assert not [path for path in paths if path.startswith("/webhooks/")]
    assert all(path.startswith("/api/") for path in paths)


async def test_operations_carry_models_parameters_and_errors(spec: dict[str, Any]) -> None:
    items = spec["paths"][f"{PLUGIN}/items"]

    create = items["post"]
    assert create["summary"] == "Create an item"
    assert create["x-permission"] == "contacts.manage"
    assert create["tags"] == ["plugin: docsdemo"]
    assert "security" not in create  # inherits bearer or API key
    body = _resolve(spec, create["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert body["required"] == ["name"]
    assert body["properties"]["name"]["description"] == "What the item is called"
    address = body["properties"]["address"]["anyOf"][0]["$ref"]
    assert _resolve(spec, address)["properties"]["city"] == {"title": "City", "type": "string"}
    created = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert set(_resolve(spec, created["$ref"])["properties"]) == {"id", "name", "status"}
    for status in ("400", "401", "403", "413", "415", "422", "429"):
        error = _resolve(spec, create["responses"][status]["$ref"])
        schema = _resolve(spec, error["content"]["application/json"]["schema"]["$ref"])
        detail = _resolve(spec, schema["properties"]["error"]["$ref"])
        assert {"code", "message", "details"} <= set(detail["properties"])

    listing = items["get"]
    assert listing["summary"] == "List items."
    assert listing["description"] == "Newest first, cursor-paginated."
    params = {param["name"]: param for param in listing["parameters"]}
    assert set(params) == {"limit", "cursor", "status"}
    assert all(param["in"] == "query" and not param["required"] for param in params.values())
    assert params["limit"]["schema"]["maximum"] == 200
    status_ref = params["status"]["schema"]["anyOf"][0]["$ref"]
    assert _resolve(spec, status_ref)["enum"] == ["open", "closed"]
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    page_schema = _resolve(spec, page["$ref"])
    assert page_schema["properties"]["items"]["type"] == "array"
    item_ref = page_schema["properties"]["items"]["items"]["$ref"]
    assert set(_resolve(spec, item_ref)["properties"]) == {"id", "name", "status"}

    tags = spec["paths"][f"{PLUGIN}/items/{{item_id}}/tags"]["get"]
    assert tags["parameters"] == [
        {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert "404" in tags["responses"]
    tag_list = tags["responses"]["200"]["content"]["application/json"]["schema"]
    weights = spec["paths"][f"{PLUGIN}/items/{{item_id}}/weights"]["get"]
    weight_list = weights["responses"]["200"]["content"]["application/json"]["schema"]
    assert tag_list["type"] == weight_list["type"] == "array"
    assert tag_list["items"]["$ref"] != weight_list["items"]["$ref"]  # both "Tag" models kept
    assert set(_resolve(spec, tag_list["items"]["$ref"])["properties"]) == {"label"}
    assert set(_resolve(spec, weight_list["items"]["$ref"])["properties"]) == {"weight"}

    delete = spec["paths"][f"{PLUGIN}/items/{{item_id}}"]["delete"]
    assert delete["responses"]["204"] == {"description": "No Content"}


async def test_uploads_and_non_json_responses(spec: dict[str, Any]) -> None:
    upload = spec["paths"][f"{PLUGIN}/items/import"]["post"]
    assert upload["requestBody"]["content"] == {
        "text/csv": {"schema": {"type": "string", "format": "binary"}}
    }
    assert {"413", "415"} <= set(upload["responses"])
    report = upload["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(_resolve(spec, report["$ref"])["properties"]) == {"created"}
    export = spec["paths"][f"{PLUGIN}/items/export"]["get"]
    assert "requestBody" not in export
    assert export["responses"]["200"]["content"] == {"text/csv": {"schema": {"type": "string"}}}


async def test_security_schemes_and_public_operations(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert spec["security"] == [{"bearerAuth": []}, {"apiKey": []}]
    ping_op = spec["paths"]["/api/v1/test-ping"]["get"]
    assert ping_op["security"] == []
    assert ping_op["x-permission"] == PUBLIC
    assert "401" not in ping_op["responses"]


_ASSET_URL = re.compile(r'(?:src|href)="([^"]+)"')


async def test_docs_page_loads_only_local_assets(docs_client: Any) -> None:
    resp = await docs_client.get(DOCS_PATH)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    html = await resp.text()
    assert "http://" not in html and "https://" not in html and "//" not in html
    urls = _ASSET_URL.findall(html)
    assert len(urls) >= 3
    scripts = []
    for url in urls:
        path = urljoin(DOCS_PATH, url)
        assert urlsplit(path).netloc == ""
        asset = await docs_client.get(path)
        assert asset.status == 200, path
        assert asset.headers["Cache-Control"].startswith("public")
        body = await asset.read()
        assert body
        if path.endswith(".js"):
            scripts.append(body.decode())
    init = next(script for script in scripts if "SwaggerUIBundle({" in script)
    assert "https://" not in init and "http://" not in init
    spec_url = re.search(r'url: "([^"]+)"', init)
    assert spec_url is not None
    assert urljoin(DOCS_PATH, spec_url.group(1)) == OPENAPI_PATH
    assert "validatorUrl: null" in init  # no badge fetched from the public validator


async def test_docs_assets_outside_the_list_are_not_found(docs_client: Any) -> None:
    for name in ("index.html", "..%2F..%2F__init__.py", "swagger-initializer.js"):
        resp = await docs_client.get(f"{DOCS_PATH}/assets/{name}")
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_root_says_where_the_api_and_docs_are(docs_client: Any) -> None:
    """`/` is never a dead end: JSON links for API clients; the console page links the docs."""
    resp = await docs_client.get("/")
    assert resp.status == 200
    body = await resp.json()
    assert (body["api"], body["docs"], body["openapi"]) == ("/api/v1", DOCS_PATH, OPENAPI_PATH)
    for path in (body["docs"], body["openapi"]):
        assert (await docs_client.get(path)).status == 200
    page = await docs_client.get("/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert f'href="{DOCS_PATH}"' in html and f'href="{OPENAPI_PATH}"' in html
