"""Inbound media downloaded into core storage (on first access, or eagerly) and template
sync from the WABA (paginated), through the plugin's routes and tasks."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from guiche_meta_cloud import templates as template_sync

from guiche.plugin import NotFound, upsert_templates
from tests.conftest import Company, login
from tests.core.conversations.conftest import fetch
from tests.plugins.meta_cloud.conftest import (
    FakeGraph,
    MakeChannel,
    enable_plugin,
    fixture_bytes,
    fixture_json,
    now_ts,
    post_channel_webhook,
    services_of_client,
    settle,
    unique_phone_id,
    with_timestamps,
)

IMAGE_ID = "3035608771711194"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00 photo bytes"


def media_calls(graph: FakeGraph) -> list[Any]:
    return [r for r in graph.requests if IMAGE_ID in r.url.path or r.url.host == "lookaside.test"]


async def inbound_image(client: Any, channel_id: uuid.UUID) -> uuid.UUID:
    resp = await post_channel_webhook(client, channel_id, fixture_bytes("webhook_image.json"))
    assert resp.status == 200, await resp.text()
    rows = await fetch("SELECT id FROM messages WHERE channel = {} AND type = 'image'", channel_id)
    return rows[0]["id"]


async def test_media_is_fetched_once_on_first_access(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    graph.media[IMAGE_ID] = (JPEG, "image/jpeg")
    company = await make_company()
    channel_id = await make_meta_channel(company)
    message_id = await inbound_image(client, channel_id)
    assert media_calls(graph) == []  # nothing downloaded until someone looks
    headers = await login(client, company.owner)

    resp = await client.get(f"/api/v1/plugins/meta_cloud/media/{message_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    media = await resp.json()
    assert media["mime_type"] == "image/jpeg" and media["size"] == len(JPEG)
    download = await client.get(media["download_url"], headers=headers)
    assert download.status == 200 and await download.read() == JPEG
    assert len(media_calls(graph)) == 2  # GET /{media-id}, then the URL

    again = await client.get(f"/api/v1/plugins/meta_cloud/media/{message_id}", headers=headers)
    assert (await again.json())["media_id"] == media["media_id"]
    assert len(media_calls(graph)) == 2  # stored: Meta is not asked again
    conversation = await fetch("SELECT conversation FROM messages WHERE id = {}", message_id)
    history = await client.get(
        f"/api/v1/conversations/{conversation[0]['conversation']}/messages", headers=headers
    )
    (item,) = (await history.json())["items"]
    assert item["media_id"] == media["media_id"]


async def test_media_route_errors(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company, stranger = await make_company(), await make_company()
    channel_id = await make_meta_channel(company)
    message_id = await inbound_image(client, channel_id)  # Graph knows no such media
    headers = await login(client, company.owner)
    resp = await client.get(f"/api/v1/plugins/meta_cloud/media/{message_id}", headers=headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "media_unavailable"

    text = with_timestamps(fixture_bytes("webhook_text.json"), now_ts())
    await post_channel_webhook(client, channel_id, text)
    rows = await fetch("SELECT id FROM messages WHERE channel = {} AND type = 'text'", channel_id)
    resp = await client.get(f"/api/v1/plugins/meta_cloud/media/{rows[0]['id']}", headers=headers)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_media"

    await enable_plugin(stranger.tenant_id)  # another company never sees this message
    other = await login(client, stranger.owner)
    resp = await client.get(f"/api/v1/plugins/meta_cloud/media/{message_id}", headers=other)
    assert resp.status == 404
    resp = await client.get("/api/v1/plugins/meta_cloud/media/not-a-uuid", headers=headers)
    assert resp.status == 404


async def test_eager_channels_download_right_away(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    graph.media[IMAGE_ID] = (JPEG, "image/jpeg")
    company = await make_company()
    channel_id = await make_meta_channel(company, media_download="eager")
    message_id = await inbound_image(client, channel_id)
    await settle(client)  # the on_message hook kicked meta_cloud.download_media
    row = await fetch("SELECT payload FROM messages WHERE id = {}", message_id)
    media_id = uuid.UUID(row[0]["payload"]["media_id"])
    stored = await fetch("SELECT tenant, size, mime_type FROM media_files WHERE id = {}", media_id)
    assert stored[0]["tenant"] == company.tenant_id
    assert (stored[0]["size"], stored[0]["mime_type"]) == (len(JPEG), "image/jpeg")


# --- templates ---------------------------------------------------------------------------


def serve_fixture_pages(graph: FakeGraph) -> None:
    first = fixture_json("templates_page1.json")
    graph.template_pages = {
        None: first,
        first["paging"]["cursors"]["after"]: fixture_json("templates_page2.json"),
    }


async def channel_templates(channel_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    rows = await fetch(
        "SELECT name, language, category, status, body, external_id, components, tenant "
        "FROM templates WHERE channel = {}",
        channel_id,
    )
    return {row["name"]: row for row in rows}


async def sync(client: Any, channel_id: uuid.UUID, headers: dict[str, str]) -> Any:
    return await client.post(
        f"/api/v1/plugins/meta_cloud/channels/{channel_id}/templates/sync", headers=headers
    )


async def test_template_sync_follows_pages_and_updates(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    serve_fixture_pages(graph)
    company = await make_company()
    channel_id = await make_meta_channel(company)
    headers = await login(client, company.owner)
    resp = await sync(client, channel_id, headers)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"fetched": 5, "approved": 3, "upserted": 5, "retired": 0}
    pages = [r for r in graph.requests if r.url.path.endswith("/message_templates")]
    assert [r.url.path for r in pages] == ["/v26.0/102938475610293/message_templates"] * 2
    assert pages[0].url.params["fields"] == template_sync.FIELDS
    assert "after" not in pages[0].url.params
    assert pages[1].url.params["after"] == "QVFIU9Dm6Dn33AxzvDE6cIv65zoEB7H3FWA"
    assert all(r.url.host == "graph.test" for r in pages)  # never paging.next's host

    stored = await channel_templates(channel_id)
    assert set(stored) == {
        "pedido_confirmado",
        "boleto_vencendo",
        "promo_semana",
        "codigo_verificacao",
        "pesquisa_satisfacao",
    }
    confirmed = stored["pedido_confirmado"]
    assert (confirmed["status"], confirmed["category"], confirmed["language"]) == (
        "APPROVED",
        "UTILITY",
        "pt_BR",
    )
    assert confirmed["body"].startswith("Olá, {{1}}! Recebemos o pedido {{2}}")
    assert confirmed["external_id"] == "1184736290451827"
    components = json.loads(confirmed["components"])
    assert [c["type"] for c in components] == ["HEADER", "BODY", "FOOTER", "BUTTONS"]
    assert confirmed["tenant"] == company.tenant_id
    assert stored["promo_semana"]["status"] == "PAUSED"

    # Meta approves one and deletes another: a second sync updates and retires.
    first = fixture_json("templates_page1.json")
    first["data"] = first["data"][:2]
    second = fixture_json("templates_page2.json")
    second["data"][1]["status"] = "APPROVED"
    graph.template_pages = {None: first, first["paging"]["cursors"]["after"]: second}
    resp = await sync(client, channel_id, headers)
    assert await resp.json() == {"fetched": 4, "approved": 4, "upserted": 4, "retired": 1}
    stored = await channel_templates(channel_id)
    assert stored["promo_semana"]["status"] == "DELETED"
    assert stored["pesquisa_satisfacao"]["status"] == "APPROVED"
    assert len(stored) == 5


async def test_synced_template_is_sent_by_id(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    serve_fixture_pages(graph)
    company = await make_company()
    channel_id = await make_meta_channel(company)
    headers = await login(client, company.owner)
    await sync(client, channel_id, headers)
    await post_channel_webhook(client, channel_id, fixture_bytes("webhook_text.json"))
    conversation = await fetch("SELECT id FROM conversations WHERE channel = {}", channel_id)
    template = await fetch(
        "SELECT id FROM templates WHERE channel = {} AND name = 'pedido_confirmado'", channel_id
    )
    resp = await client.post(
        f"/api/v1/conversations/{conversation[0]['id']}/messages",
        json={
            "type": "template",
            "template_id": str(template[0]["id"]),
            "components": [{"type": "body", "parameters": [{"value": "Ana"}, {"value": "#1"}]}],
        },
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    await settle(client)
    (sent,) = graph.sends()
    assert sent["template"]["name"] == "pedido_confirmado"
    assert sent["template"]["language"] == {"code": "pt_BR"}


async def test_template_sync_permissions_and_tenancy(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    serve_fixture_pages(graph)
    company: Company = await make_company()
    channel_id = await make_meta_channel(company)
    supervisor, agent = await company.add("supervisor"), await company.add("agent")
    assert (await sync(client, channel_id, await login(client, supervisor))).status == 200
    denied = await sync(client, channel_id, await login(client, agent))
    assert denied.status == 403

    stranger = await make_company()
    await enable_plugin(stranger.tenant_id)
    resp = await sync(client, channel_id, await login(client, stranger.owner))
    assert resp.status == 404  # another company's channel does not exist for them
    resp = await sync(client, uuid.uuid4(), await login(client, company.owner))
    assert resp.status == 404

    # A number of its own: a revoked token proves no control of the company's first one.
    expired = await make_meta_channel(
        company, access_token="revoked", phone_number_id=unique_phone_id()
    )
    resp = await sync(client, expired, await login(client, company.owner))
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["code"] == "meta_graph_error"
    assert (error["details"]["error_code"], error["details"]["graph_code"]) == ("190", 190)
    state = await fetch("SELECT state FROM channels WHERE id = {}", expired)
    assert state[0]["state"] == "provisioning_failed"  # setup() checked the token at creation
    state = await fetch("SELECT state FROM channels WHERE id = {}", channel_id)
    assert state[0]["state"] == "provisioned"


async def test_template_sync_is_not_served_to_companies_without_the_plugin(
    client: Any, make_company: Any
) -> None:
    company = await make_company()
    resp = await sync(client, uuid.uuid4(), await login(client, company.owner))
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "plugin_not_enabled"


async def test_daily_task_syncs_every_active_channel(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    serve_fixture_pages(graph)
    first, second = await make_company(), await make_company()
    first_channel = await make_meta_channel(first)
    second_channel = await make_meta_channel(second)
    services = services_of_client(client)
    assert "meta_cloud.sync_templates" in services.tasks.names
    await services.tasks.kick("meta_cloud.sync_templates")
    await settle(client)
    assert len(await channel_templates(first_channel)) == 5
    assert len(await channel_templates(second_channel)) == 5
    summary = await template_sync.sync_all(services=services)
    assert summary["synced"] >= 2


async def test_concurrent_first_accesses_store_one_file(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    graph.media[IMAGE_ID] = (JPEG, "image/jpeg")
    company = await make_company()
    channel_id = await make_meta_channel(company)
    message_id = await inbound_image(client, channel_id)
    headers = await login(client, company.owner)
    url = f"/api/v1/plugins/meta_cloud/media/{message_id}"
    first, second = await asyncio.gather(
        client.get(url, headers=headers), client.get(url, headers=headers)
    )
    assert first.status == second.status == 200
    assert (await first.json())["media_id"] == (await second.json())["media_id"]
    files = await fetch(
        "SELECT count(*) AS n FROM media_files WHERE tenant = {}", company.tenant_id
    )
    assert files[0]["n"] == 1  # the losing copy was deleted


async def test_upsert_templates_is_scoped_to_the_tenant(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    owner, stranger = await make_company(), await make_company()
    channel_id = await make_meta_channel(owner)
    services = services_of_client(client)
    with pytest.raises(NotFound):
        await upsert_templates(services, stranger.tenant_id, channel_id, [{"name": "x"}])
    written = await upsert_templates(
        services, owner.tenant_id, channel_id, [{"name": "ola", "body": "Olá!"}]
    )
    assert written == {"upserted": 1, "retired": 0}
    stored = await channel_templates(channel_id)
    assert (stored["ola"]["language"], stored["ola"]["status"]) == ("pt_BR", "APPROVED")
