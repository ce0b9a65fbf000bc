"""Core's one attachment route for every channel: `GET /api/v1/messages/{id}/media` fetches
an inbound file through the channel's `fetch_media` once, keeps it, and checks access."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from guiche.channels import InboundMessage, Media, MessageType, Sender
from guiche.models import Department
from guiche.plugin import MEDIA_FIELDS, message_media
from guiche.runtime.services import SERVICES
from tests.conftest import login

from .conftest import BASE_TIME, fetch, text_message

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def image_message(media_id: str) -> InboundMessage:
    return InboundMessage(
        provider_message_id=f"wamid.{uuid.uuid4().hex}",
        sender=Sender(phone="5511987654321", name="Ana Souza"),
        timestamp=BASE_TIME,
        type=MessageType.IMAGE,
        media=Media(provider_media_id=media_id, mime_type="image/png", filename="foto.png"),
        raw={"image": {"id": media_id}},
    )


async def _message_id(tenant_id: uuid.UUID) -> str:
    rows = await fetch("SELECT id FROM messages WHERE tenant = {}", tenant_id)
    return str(rows[0]["id"])


@pytest.fixture
def photo_received(
    make_company: Any, make_channel: Any, post_webhook: Any, fake_plugin: Any
) -> Callable[[], Awaitable[tuple[Any, str]]]:
    """A company whose customer sent a photo the provider holds: (company, message id)."""

    async def receive() -> tuple[Any, str]:
        company = await make_company()
        channel = await make_channel(company.tenant_id)
        media_id = f"photo-{uuid.uuid4().hex[:8]}"
        fake_plugin.provider.media[media_id] = (PNG, "image/png")
        await post_webhook(channel, [image_message(media_id)])
        return company, await _message_id(company.tenant_id)

    return receive


async def test_an_inbound_photo_is_fetched_once_and_downloadable(
    client: Any, photo_received: Any, fake_plugin: Any
) -> None:
    company, message_id = await photo_received()
    headers = await login(client, company.owner)

    first = await client.get(f"/api/v1/messages/{message_id}/media", headers=headers)
    again = await client.get(f"/api/v1/messages/{message_id}/media", headers=headers)

    assert first.status == again.status == 200, await first.text()
    described = await first.json()
    assert described == await again.json()
    assert (described["mime_type"], described["size"]) == ("image/png", len(PNG))
    assert "storage_key" not in described
    assert fake_plugin.provider.fetches == 1  # kept in core's storage after the first
    download = await client.get(described["download_url"], headers=headers)
    assert download.status == 200
    assert await download.read() == PNG


async def test_attachments_respect_tenancy_visibility_and_absence(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any, fake_plugin: Any
) -> None:
    company, other = await make_company(), await make_company()
    sales = Department(tenant=company.tenant_id, name="Vendas")
    await sales.save()
    channel = await make_channel(company.tenant_id, department_id=sales.id)
    fake_plugin.provider.media["photo-2"] = (PNG, "image/png")
    await post_webhook(channel, [image_message("photo-2")])
    photo_id = await _message_id(company.tenant_id)
    agent = await company.add("agent")  # not in Vendas: the conversation is not theirs

    resp = await client.get(
        f"/api/v1/messages/{photo_id}/media", headers=await login(client, other.owner)
    )
    assert resp.status == 404
    resp = await client.get(
        f"/api/v1/messages/{photo_id}/media", headers=await login(client, agent)
    )
    assert resp.status == 404
    assert fake_plugin.provider.fetches == 0

    await post_webhook(channel, [text_message("só texto")])
    rows = await fetch(
        "SELECT id FROM messages WHERE tenant = {} AND type = 'text'", company.tenant_id
    )
    resp = await client.get(
        f"/api/v1/messages/{rows[0]['id']}/media", headers=await login(client, company.owner)
    )
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "no_media"


async def test_a_file_the_provider_no_longer_has_is_a_404(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    await post_webhook(channel, [image_message("expired")])
    message_id = await _message_id(company.tenant_id)

    resp = await client.get(
        f"/api/v1/messages/{message_id}/media", headers=await login(client, company.owner)
    )

    assert resp.status == 404


async def test_plugins_get_the_documented_fields_only(client: Any, photo_received: Any) -> None:
    company, message_id = await photo_received()
    services = client.server.app[SERVICES]

    row = await message_media(services, company.tenant_id, uuid.UUID(message_id))

    assert tuple(row) == MEDIA_FIELDS
