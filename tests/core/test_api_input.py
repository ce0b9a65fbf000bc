"""Bad API input is a 4xx with the error shape, never a 500, and types are strict.

Covers the request-parsing layer (`guiche.http.endpoint`): text Postgres cannot store
(U+0000, lone surrogates) in bodies and queries, strict JSON types, unknown fields,
malformed multipart uploads, and the database-bounded values found by fuzzing.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel

from guiche.models import Contact, Department, TenantPlugin
from guiche.plugin import PluginInfo, hookimpl
from guiche.web.openapi import build_openapi, operations
from tests.conftest import login

NUL = "\x00"


def _fields(body: dict[str, Any]) -> list[str]:
    return [item["field"] for item in body["error"]["details"]]


async def _unstorable(resp: Any, *fields: str) -> None:
    assert resp.status == 422, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == "unstorable_text"
    assert _fields(body) == list(fields)


# --- NUL and lone surrogates --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "fields"),
    [
        ("/api/v1/contacts", {"name": f"Ana{NUL}", "phone": "+5531988887777"}, ["name"]),
        (
            "/api/v1/contacts",
            {"phone": "+5531988887776", "custom_fields": {f"k{NUL}": "v", "deep": [{"x": NUL}]}},
            ["custom_fields.k\x00", "custom_fields.deep.0.x"],
        ),
        ("/api/v1/departments", {"name": f"Vendas{NUL}"}, ["name"]),
        ("/api/v1/tabulations", {"name": f"Resolvido{NUL}"}, ["name"]),
        (
            "/api/v1/templates",
            {"name": "boas_vindas", "components": [{"type": "BODY", "text": f"Olá{NUL}"}]},
            ["components.0.text"],
        ),
        ("/api/v1/channels", {"type": "fake", "name": f"WhatsApp{NUL}"}, ["name"]),
    ],
)
async def test_nul_in_a_body_is_refused_naming_the_field(
    client: Any, company: Any, path: str, payload: dict[str, Any], fields: list[str]
) -> None:
    headers = await login(client, company.owner)
    await _unstorable(await client.post(path, json=payload, headers=headers), *fields)


async def test_nul_stores_nothing_and_clean_input_still_works(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    await _unstorable(
        await client.post("/api/v1/departments", json={"name": f"A{NUL}B"}, headers=headers),
        "name",
    )
    assert not await Department.exists().where(Department.tenant == company.tenant_id)
    created = await client.post("/api/v1/departments", json={"name": "AB"}, headers=headers)
    assert created.status == 201
    department = await created.json()
    patched = await client.patch(
        f"/api/v1/departments/{department['id']}",
        json={"description": f"x{NUL}"},
        headers=headers,
    )
    await _unstorable(patched, "description")


async def test_nul_in_plugin_settings_is_refused(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    resp = await client.put(
        "/api/v1/plugins/meta_cloud",
        json={"enabled": False, "settings": {"note": f"a{NUL}"}},
        headers=headers,
    )
    await _unstorable(resp, "settings.note")
    assert not await TenantPlugin.exists().where(TenantPlugin.tenant == company.tenant_id)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/contacts",
        "/api/v1/departments",
        "/api/v1/tabulations",
        "/api/v1/templates",
        "/api/v1/users",
    ],
)
async def test_nul_in_a_query_parameter_is_refused(client: Any, company: Any, path: str) -> None:
    headers = await login(client, company.owner)
    await _unstorable(await client.get(f"{path}?q=a%00b", headers=headers), "q")


async def test_nul_in_a_filter_that_is_not_a_search_is_refused(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    resp = await client.get("/api/v1/templates?status=A%00", headers=headers)
    await _unstorable(resp, "status")


async def test_a_lone_surrogate_in_json_is_invalid_json(client: Any, company: Any) -> None:
    """JSON may spell one (`\\ud800`) but it is not Unicode text: 400, nothing stored."""
    headers = {**await login(client, company.owner), "Content-Type": "application/json"}
    resp = await client.post(
        "/api/v1/contacts",
        data=b'{"name": "Ana \\ud800", "phone": "+5531988887775"}',
        headers=headers,
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_json"
    assert not await Contact.exists().where(Contact.tenant == company.tenant_id)


async def test_undecodable_query_bytes_are_read_as_replacement_characters(
    client: Any, company: Any
) -> None:
    headers = await login(client, company.owner)
    resp = await client.get("/api/v1/contacts?q=%ED%A0%80%FF", headers=headers)
    assert resp.status == 200, await resp.text()


async def test_nul_in_an_imported_csv_fails_that_row_alone(client: Any, company: Any) -> None:
    headers = {**await login(client, company.owner), "Content-Type": "text/csv"}
    csv = f"name,phone\nAna{NUL},+5531988880001\nBia,+5531988880002\n".encode()
    resp = await client.post("/api/v1/contacts/import", data=csv, headers=headers)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["created"], report["failed"]) == (1, 1)
    assert report["errors"][0]["row"] == 2 and report["errors"][0]["field"] == "name"
    bad_header = f"name,phone,x{NUL}\nAna,+5531988880003,1\n".encode()
    resp = await client.post("/api/v1/contacts/import", data=bad_header, headers=headers)
    assert resp.status == 422


# --- numbers and strings the database bounds ------------------------------------------


async def test_events_after_beyond_bigint_is_422(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    resp = await client.get(f"/api/v1/events?after={2**63}", headers=headers)
    assert resp.status == 422, await resp.text()
    assert _fields(await resp.json()) == ["after"]
    resp = await client.get(f"/api/v1/events?after={2**63 - 1}", headers=headers)
    assert resp.status == 200, await resp.text()


async def test_template_status_fits_its_column(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    too_long = await client.post(
        "/api/v1/templates", json={"name": "a", "status": "S" * 31}, headers=headers
    )
    assert too_long.status == 422, await too_long.text()
    assert _fields(await too_long.json()) == ["status"]
    fits = await client.post(
        "/api/v1/templates", json={"name": "a", "status": "s" * 30}, headers=headers
    )
    assert fits.status == 201, await fits.text()
    assert (await fits.json())["status"] == "S" * 30
    patched = await client.patch(
        f"/api/v1/templates/{(await fits.json())['id']}",
        json={"status": "P" * 40},
        headers=headers,
    )
    assert patched.status == 422


# --- malformed multipart ------------------------------------------------------------------

BOUNDARY = "b0undary"
MALFORMED = [
    # bytes before the first boundary line, then an unterminated part
    f"--{BOUNDARY}\r\n185703--{BOUNDARY}--\r\n".encode(),
    # a part header with a NUL (invalid HTTP header)
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a\x00b"\r\n\r\nx\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode(),
    # a boundary that is not the declared one
    b'--other\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--other--\r\n',
]


@pytest.mark.parametrize("path", ["/api/v1/media", "/api/v1/contacts/import"])
@pytest.mark.parametrize("body", MALFORMED)
async def test_malformed_multipart_is_400(
    client: Any, company: Any, path: str, body: bytes
) -> None:
    headers = {
        **await login(client, company.owner),
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_multipart"


async def test_multipart_without_a_boundary_is_400(client: Any, company: Any) -> None:
    headers = {**await login(client, company.owner), "Content-Type": "multipart/form-data"}
    resp = await client.post("/api/v1/media", data=b"x", headers=headers)
    assert resp.status == 400, await resp.text()


async def test_a_wellformed_upload_still_works(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    form = aiohttp.FormData()
    form.add_field(
        "file", b"%PDF-1.4\n" + b"0" * 64, filename="a.pdf", content_type="application/pdf"
    )
    resp = await client.post("/api/v1/media", data=form, headers=headers)
    assert resp.status == 201, await resp.text()


# --- strict types and unknown fields ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/v1/contacts", {"phone": "+5531988887774", "opted_out": 0}, "opted_out"),
        (
            "/api/v1/users",
            {"email": "new@example.test", "role": "agent", "max_concurrent_chats": False},
            "max_concurrent_chats",
        ),
        (
            "/api/v1/users",
            {"email": "new@example.test", "role": "agent", "max_concurrent_chats": "3"},
            "max_concurrent_chats",
        ),
        ("/api/v1/tenant", {"settings": {"auto_close_hours": "24"}}, "settings.auto_close_hours"),
    ],
)
async def test_loose_types_are_refused(
    client: Any, company: Any, path: str, payload: dict[str, Any], field: str
) -> None:
    headers = await login(client, company.owner)
    method = client.patch if path == "/api/v1/tenant" else client.post
    resp = await method(path, json=payload, headers=headers)
    assert resp.status == 422, await resp.text()
    assert field in _fields(await resp.json())


async def test_json_strings_still_read_as_uuids_and_enums(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    tab = await client.post("/api/v1/tabulations", json={"name": "Ok"}, headers=headers)
    assert tab.status == 201
    contact = await client.post(
        "/api/v1/contacts", json={"phone": "+5531988887773"}, headers=headers
    )
    note = await client.post(
        "/api/v1/notes",
        json={"contact_id": (await contact.json())["id"], "body": "hi"},
        headers=headers,
    )
    assert note.status == 201, await note.text()
    status = await client.put(
        f"/api/v1/users/{company.owner.user_id}/status", json={"status": "away"}, headers=headers
    )
    assert status.status == 200, await status.text()


async def test_channel_creation_rejects_unknown_fields(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/channels", json={"type": "fake", "name": "x", "secret": "y"}, headers=headers
    )
    assert resp.status == 422, await resp.text()
    assert _fields(await resp.json()) == ["secret"]


async def test_every_core_json_body_rejects_unknown_fields(client: Any) -> None:
    """The contract for every route's body (plugins' routes are their own authors')."""
    doc = build_openapi(client.app)
    schemas = doc["components"]["schemas"]
    loose = []
    for op in operations(client.app):
        if op.plugin or op.spec.body is None:
            continue
        ref = doc["paths"][op.path][op.method.lower()]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        schema = schemas[ref["$ref"].rsplit("/", 1)[1]] if "$ref" in ref else ref
        if "properties" in schema and schema.get("additionalProperties") is not False:
            loose.append(f"{op.method} {op.path}")
    assert loose == []


class Knobs(BaseModel):
    enabled_flag: bool = False
    limit: int = 1


class KnobsPlugin:
    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="knobs", version="1", settings_model=Knobs)


async def test_plugin_settings_are_strict_too(make_client: Any, make_company: Any) -> None:
    client = await make_client(extra_plugins=(("knobs", KnobsPlugin()),))
    company = await make_company()
    headers = await login(client, company.owner)
    for bad in ({"enabled_flag": 0}, {"limit": False}, {"limit": "2"}):
        resp = await client.put(
            "/api/v1/plugins/knobs", json={"enabled": True, "settings": bad}, headers=headers
        )
        assert resp.status == 422, (bad, await resp.text())
    resp = await client.put(
        "/api/v1/plugins/knobs",
        json={"enabled": True, "settings": {"enabled_flag": True, "limit": 2}},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()


# --- deleted departments --------------------------------------------------------------


async def test_members_of_a_deleted_department_are_not_found(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    created = await client.post("/api/v1/departments", json={"name": "Old"}, headers=headers)
    department = await created.json()
    base = f"/api/v1/departments/{department['id']}"
    agent = await company.add("agent")
    assert (await client.put(f"{base}/members/{agent.user_id}", headers=headers)).status == 200
    assert (await client.delete(base, headers=headers)).status == 204
    for resp in (
        await client.get(f"{base}/members", headers=headers),
        await client.put(f"{base}/members/{agent.user_id}", headers=headers),
    ):
        assert resp.status == 404, await resp.text()
        assert (await resp.json())["error"]["code"] == "department_inactive"
    # still there to be reactivated, and then its members are back
    assert (await client.get(base, headers=headers)).status == 200
    await client.patch(base, json={"is_active": True}, headers=headers)
    members = await (await client.get(f"{base}/members", headers=headers)).json()
    assert [m["user_id"] for m in members["items"]] == [str(agent.user_id)]


# --- the document tells the truth ---------------------------------------------------------


def _responses(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return doc["paths"][path][method]["responses"]


async def test_documented_statuses_include_what_handlers_answer(client: Any) -> None:
    doc = build_openapi(client.app)
    for path in ("/api/v1/auth/login", "/api/v1/auth/refresh"):
        assert "401" in _responses(doc, "post", path)
    assert "404" in _responses(doc, "post", "/api/v1/auth/switch")
    for resource in ("departments", "tabulations", "templates", "users", "contacts"):
        assert "409" in _responses(doc, "post", f"/api/v1/{resource}")
        assert "409" in _responses(doc, "patch", f"/api/v1/{resource}/{{id}}")
    for ops in doc["paths"].values():
        for op in ops.values():
            assert "503" in op["responses"]  # the database may be away
    unavailable = doc["components"]["responses"]["ServiceUnavailable"]
    assert "Retry-After" in unavailable["headers"]


async def test_media_download_is_documented_as_any_media_type(client: Any) -> None:
    doc = build_openapi(client.app)
    content = _responses(doc, "get", "/api/v1/media/{id}")["200"]["content"]
    assert content == {"*/*": {"schema": {"type": "string", "format": "binary"}}}


async def test_downloaded_media_has_its_own_media_type(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    form = aiohttp.FormData()
    form.add_field(
        "file", b"%PDF-1.4\n" + b"0" * 64, filename="a.pdf", content_type="application/pdf"
    )
    media = await (await client.post("/api/v1/media", data=form, headers=headers)).json()
    resp = await client.get(f"/api/v1/media/{media['id']}", headers=headers)
    assert resp.status == 200
    assert resp.content_type == "application/pdf"


async def test_unknown_ids_in_paths_stay_404(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    resp = await client.get(f"/api/v1/departments/{uuid.uuid4()}/members", headers=headers)
    assert resp.status == 404


async def test_integers_beyond_64_bits_are_refused_or_stored_as_numbers(
    client: Any, company: Any
) -> None:
    """JSON read as JavaScript reads it: a typed integer field refuses the value, a
    free-form one stores the number (as a double), never a 500."""
    headers = await login(client, company.owner)
    huge = 18305766121005484032123
    resp = await client.patch(
        "/api/v1/tenant", json={"settings": {"auto_close_hours": huge}}, headers=headers
    )
    assert resp.status == 422, await resp.text()
    resp = await client.post(
        "/api/v1/contacts",
        json={"phone": "+5531988887772", "custom_fields": {"n": huge}},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["custom_fields"]["n"] == float(huge)


async def test_a_repeated_query_parameter_is_refused(client: Any, company: Any) -> None:
    headers = await login(client, company.owner)
    resp = await client.get("/api/v1/contacts?q=a&q=b", headers=headers)
    assert resp.status == 422, await resp.text()
    assert _fields(await resp.json()) == ["q"]
