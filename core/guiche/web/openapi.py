"""OpenAPI 3.1 built from the routes' own declarations, and a docs page that works offline.

The document is derived from what `@endpoint` enforces (permission, models, status),
so it cannot drift from the code: a route without a declaration is not part of the API
(health, metrics, these docs) and is left out. Every schema comes from one pydantic
generation pass, which names models once and resolves clashes between same-named
models from different modules.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from swagger_ui_bundle import swagger_ui_path

from guiche import __version__
from guiche.foundation.errors import NotFound
from guiche.foundation.jsonio import dumps
from guiche.http.endpoint import AUTHENTICATED, PUBLIC, Endpoint, endpoint, endpoint_of

OPENAPI_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"
SCHEMA_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{([^}:]+)")
_PLUGIN_PREFIX = "/api/v1/plugins/"
_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE")

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}

# Shared error responses, referenced from operations by status.
_ERROR_RESPONSES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationError",
    429: "TooManyRequests",
    502: "BadGateway",
    503: "ServiceUnavailable",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class Error(BaseModel):
    """The one error shape every API failure uses."""

    error: ErrorDetail


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Any
    spec: Endpoint

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def plugin(self) -> str | None:
        if not self.path.startswith(_PLUGIN_PREFIX):
            return None
        return self.path[len(_PLUGIN_PREFIX) :].split("/", 1)[0] or None


def operations(app: web.Application) -> Iterator[Operation]:
    """Every declared route under /api/ (provider webhooks, HEAD twins of GETs and the
    docs' own routes left out)."""
    for route in app.router.routes():
        resource = route.resource
        spec = endpoint_of(route.handler)
        if spec is None or resource is None or route.method not in _METHODS:
            continue
        if not resource.canonical.startswith("/api/") or route.handler in _DOCS_HANDLERS:
            continue
        yield Operation(route.method, resource.canonical, route.handler, spec)


def build_openapi(app: web.Application) -> dict[str, Any]:
    ops = sorted(operations(app), key=lambda op: (op.path, _METHODS.index(op.method)))
    schemas, mapping = _schemas(ops)
    error_ref = mapping[("error", "serialization")]
    op_ids = _operation_ids(ops)
    paths: dict[str, dict[str, Any]] = {}
    for index, op in enumerate(ops):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(
            op, index, op_ids[index], mapping, schemas
        )
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Guichê API",
            "version": __version__,
            "description": (
                "Customer-service gateway API. Authenticate with a bearer access token "
                "(POST /api/v1/auth/login) or a company API key in the `x-api-key` header. "
                'Errors always have the shape {"error": {"code", "message", "details"}}.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                name: _error_response(status, error_ref)
                for status, name in _ERROR_RESPONSES.items()
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": [{"bearerAuth": []}, {"apiKey": []}],
    }
    _drop_unreferenced(doc)
    return doc


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _error_response(status: int, error_ref: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": error_ref}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def _schemas(
    ops: list[Operation],
) -> tuple[dict[str, Any], dict[tuple[Any, JsonSchemaMode], dict[str, Any]]]:
    """One pass over every model: bodies and queries as accepted, responses as sent."""
    inputs: list[tuple[Any, JsonSchemaMode, Any]] = [
        ("error", "serialization", TypeAdapter(Error).core_schema)
    ]
    for index, op in enumerate(ops):
        if op.spec.body is not None:
            inputs.append(((index, "body"), "validation", TypeAdapter(op.spec.body).core_schema))
        if op.spec.query is not None:
            inputs.append(((index, "query"), "validation", TypeAdapter(op.spec.query).core_schema))
        if op.spec.response is not None:
            adapter = TypeAdapter(op.spec.response)
            inputs.append(((index, "response"), "serialization", adapter.core_schema))
    generator = GenerateJsonSchema(ref_template=SCHEMA_REF)
    mapping, definitions = generator.generate_definitions(inputs)
    return dict(definitions), mapping


def _operation_ids(ops: list[Operation]) -> list[str]:
    """Handler names (prefixed by the plugin for plugin routes); the path where they clash."""
    names = [
        f"{op.plugin}_{op.handler.__name__}" if op.plugin else op.handler.__name__ for op in ops
    ]
    ids = []
    for op, name in zip(ops, names, strict=True):
        if names.count(name) > 1:
            slug = re.sub(r"[^A-Za-z0-9]+", "_", op.path).strip("_")
            name = f"{op.method.lower()}_{slug}"
        ids.append(name)
    return ids


def _operation(
    op: Operation,
    index: int,
    operation_id: str,
    mapping: dict[tuple[Any, JsonSchemaMode], dict[str, Any]],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    spec = op.spec
    doc = inspect.getdoc(op.handler) or ""
    first, _, rest = doc.partition("\n")
    description = (doc if spec.summary else rest).strip()
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": spec.summary or first.strip() or operation_id.replace("_", " "),
        "tags": list(spec.tags) or [_default_tag(op)],
        "x-permission": spec.permission,
    }
    if description:
        operation["description"] = description
    if spec.permission == PUBLIC:
        operation["security"] = []
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in op.path_params
    ]
    if spec.query is not None:
        parameters += _query_parameters(mapping[((index, "query"), "validation")], schemas)
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": mapping[((index, "body"), "validation")]}},
        }
    elif op.method in ("POST", "PUT", "PATCH") and not _is_json(spec.content_type):
        upload = _MULTIPART_UPLOAD if spec.content_type == "multipart/form-data" else _UPLOAD
        operation["requestBody"] = {"required": True, "content": {spec.content_type: upload}}
    operation["responses"] = _responses(
        op,
        mapping.get(((index, "response"), "serialization")),
        "requestBody" in operation,
        mapping[("error", "serialization")],
    )
    return operation


# `Endpoint.content_type` that is not JSON names the upload's media type on a write
# (the CSV import) and the response's on a read (a page or a file).
_UPLOAD = {"schema": {"type": "string", "format": "binary"}}
_MULTIPART_UPLOAD = {
    "schema": {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}},
        "required": ["file"],
    }
}


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _query_parameters(ref: dict[str, Any], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    model = schemas[ref["$ref"].rsplit("/", 1)[1]] if "$ref" in ref else ref
    required = set(model.get("required", ()))
    parameters = []
    for name, prop in model.get("properties", {}).items():
        schema = {key: value for key, value in prop.items() if key != "title"}
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
        }
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _responses(
    op: Operation, schema: dict[str, Any] | None, has_body: bool, error_ref: dict[str, Any]
) -> dict[str, Any]:
    spec = op.spec
    status = spec.status
    ok: dict[str, Any] = {"description": HTTPStatus(status).phrase}
    if status != 204:
        if schema is not None:  # a model is always sent as JSON
            ok["content"] = {"application/json": {"schema": schema}}
        elif _is_json(spec.content_type) or op.method != "GET":
            ok["content"] = {"application/json": {"schema": {}}}
        else:
            text = spec.content_type.startswith("text/")
            body = {"type": "string"} if text else {"type": "string", "format": "binary"}
            ok["content"] = {spec.content_type: {"schema": body}}
    errors = {429, 503, *spec.errors}  # 503: the database is away (see web.middleware)
    if spec.permission != PUBLIC:
        errors.add(401)
        if spec.permission != AUTHENTICATED:
            errors.add(403)
    if has_body:
        errors |= {400, 413, 415, 422}
    if spec.query is not None:
        errors |= {400, 422}
    if op.path_params or op.plugin:
        errors.add(404)
    responses: dict[str, Any] = {str(status): ok}
    for code in sorted(errors):
        name = _ERROR_RESPONSES.get(code)
        responses[str(code)] = (
            {"$ref": f"#/components/responses/{name}"} if name else _error_response(code, error_ref)
        )
    return responses


def _default_tag(op: Operation) -> str:
    if op.plugin:
        return f"plugin: {op.plugin}"
    parts = [part for part in op.path.split("/") if part and not part.startswith("{")]
    if parts[:2] == ["api", "v1"] and len(parts) > 2:
        return parts[2]
    return parts[-1] if parts else "api"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _drop_unreferenced(doc: dict[str, Any]) -> None:
    """Remove schemas and shared responses nothing points to (e.g. query models, which
    become parameters)."""
    components = doc["components"]
    seen: set[str] = set()
    pending = list(_refs(doc["paths"]))
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, section, name = ref.split("/", 3)
        pending.extend(_refs(components.get(section, {}).get(name)))
    for section in ("schemas", "responses"):
        components[section] = {
            name: value
            for name, value in components[section].items()
            if f"#/components/{section}/{name}" in seen
        }


# The docs page: Swagger UI from the swagger-ui-bundle package, served by this app.
# Relative URLs keep it working behind a path prefix; no byte comes from a CDN.
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
_INIT_ASSET = "guiche-docs.js"
_ASSET_CACHE = "public, max-age=86400"
DOCS_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Guichê API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script src="docs/assets/guiche-docs.js"></script>
</body>
</html>
"""
# In a file, not inline: the page's Content-Security-Policy allows only 'self' scripts.
DOCS_INIT_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

_DOC_CACHE = web.AppKey("guiche.openapi", dict[str, bytes])


@endpoint(PUBLIC, summary="OpenAPI document")
async def openapi_json(request: web.Request) -> web.Response:
    cache = request.app[_DOC_CACHE]
    if "doc" not in cache:  # built once, on first use: the router is frozen by then
        cache["doc"] = dumps(build_openapi(request.app))
    return web.Response(body=cache["doc"], content_type="application/json")


@endpoint(PUBLIC, summary="API docs page", content_type="text/html")
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html")


@endpoint(PUBLIC, summary="API docs asset")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    headers = {"Cache-Control": _ASSET_CACHE}
    if name == _INIT_ASSET:
        return web.Response(
            text=DOCS_INIT_JS, content_type="application/javascript", headers=headers
        )
    if name not in DOCS_ASSETS:
        raise NotFound("No such docs asset")
    return web.FileResponse(Path(str(swagger_ui_path)) / name, headers=headers)


LANDING = {
    "name": "Guichê",
    "version": __version__,
    "api": "/api/v1",
    "docs": DOCS_PATH,
    "openapi": OPENAPI_PATH,
    "health": "/health",
}
"""What `/` answers an API client (`guiche.console.routes.index`); browsers get the console."""


_DOCS_HANDLERS = frozenset({openapi_json, docs_page, docs_asset})


def setup_openapi(app: web.Application) -> None:
    app[_DOC_CACHE] = {}
    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get(DOCS_PATH + "/assets/{name}", docs_asset)
