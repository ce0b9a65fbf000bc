"""The sandbox channel: the strict contract suite, the whole loop through the real app
(a posted message in, a reply out, a posted tick), its refusals, and the demo company's
channel that `guiche run` seeds."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from guiche_sandbox import SECRET_HEADER, SandboxAdapter, SandboxConfig

from guiche.channel_host.demo_channel import SAMPLE_MESSAGE, seed_demo_channel
from guiche.channels import ChannelInfo, OutboundMessage, Recipient, WebhookRequest
from guiche.models import Channel, TenantPlugin
from guiche.runtime.services import SERVICES
from guiche.testing import ChannelContract
from tests.conftest import login
from tests.core.conversations.conftest import fetch

SECRET = "sandbox-secret-0123456789abcdef"


def hook(body: dict[str, Any], secret: str | None = SECRET) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return WebhookRequest(
        method="POST", path="/", headers=headers, query={}, body=orjson.dumps(body)
    )


def said(text: str, number: str = "m1", phone: str = "+5511987654321") -> dict[str, Any]:
    return {"id": number, "from": phone, "name": "Ana", "text": text}


class TestSandboxContract(ChannelContract):
    @pytest.fixture
    def adapter(self) -> SandboxAdapter:
        info = ChannelInfo(
            id=uuid.uuid4(), tenant_id=uuid.uuid4(), type="sandbox", name="S", webhook_secret=SECRET
        )
        return SandboxAdapter(info, SandboxConfig())

    @pytest.fixture
    def valid_webhooks(self) -> list[WebhookRequest]:
        return [
            hook(said("oi")),
            hook({"messages": [said("um", "m2"), said("dois", "m3", "11 91234-5678")]}),
            hook({**said("com hora", "m4"), "timestamp": "2026-12-06T09:00:00-03:00"}),
        ]

    @pytest.fixture
    def webhook_secrets(self) -> list[tuple[str, str]]:
        return [("header", SECRET_HEADER)]

    @pytest.fixture
    def outbound_text(self) -> OutboundMessage:
        return OutboundMessage(
            message_id=uuid.uuid4(), to=Recipient(phone="+5511987654321"), kind="text", text="Olá"
        )

    @pytest.fixture
    def provider_fails(self, adapter: SandboxAdapter) -> Any:
        def fail(scenario: str) -> float | None:
            adapter.fail_next_send(scenario)  # type: ignore[arg-type]
            return 1.0 if scenario == "rate_limited" else None

        return fail

    @pytest.fixture
    def same_native_id_in_two_chats(self) -> tuple[WebhookRequest, WebhookRequest]:
        return hook(said("oi", "7")), hook(said("oi", "7", phone="+5511912345678"))

    @pytest.fixture
    def status_progression(self) -> list[WebhookRequest]:
        return [
            hook({"statuses": [{"id": "out-1", "status": status}]})
            for status in ("sent", "delivered", "read")
        ]


async def parse(body: dict[str, Any]) -> Any:
    info = ChannelInfo(
        id=uuid.uuid4(), tenant_id=uuid.uuid4(), type="sandbox", name="S", webhook_secret=SECRET
    )
    return await SandboxAdapter(info, SandboxConfig()).parse_webhook(hook(body))


async def test_local_numbers_read_in_the_default_region_and_times_in_utc() -> None:
    batch = await parse({**said("oi", phone="(11) 98765-4321"), "timestamp": "2026-12-06T09:00"})
    [message] = batch.messages
    assert message.sender.phone == "+5511987654321"
    assert message.timestamp.isoformat() == "2026-12-06T09:00:00+00:00"


async def test_without_an_id_every_post_is_a_new_message() -> None:
    body = {"from": "+5511987654321", "text": "oi"}
    first, second = await parse(body), await parse(body)
    assert first.messages[0].provider_message_id != second.messages[0].provider_message_id


@pytest.mark.parametrize(
    "body",
    [
        {"from": "+5511987654321"},  # no text
        {"from": "not a phone", "text": "oi"},
        {"from": "+5511987654321", "text": "oi", "surprise": 1},  # unknown field
        {"statuses": [{"id": "x", "status": "teleported"}]},
    ],
)
async def test_bad_bodies_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        await parse(body)


# --- the whole loop through the app ---------------------------------------------------------


async def settle(client: Any) -> None:
    services = client.server.app[SERVICES]
    while services.background or services.tasks.broker._running_tasks:
        await services.wait_background()
        await services.tasks.broker.wait_all()


async def test_a_message_in_a_reply_out_a_tick_back(client: Any, make_company: Any) -> None:
    company = await make_company()
    await TenantPlugin.insert(
        TenantPlugin(tenant=company.tenant_id, plugin="sandbox", enabled=True, settings={})
    )
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/channels",
        json={"type": "sandbox", "name": "Teste", "credentials": {}},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    channel = await resp.json()
    assert channel["state"] == "provisioned"
    demo = await seed_demo_channel(client.server.app[SERVICES], company.tenant_id)
    assert demo is not None and demo.id == uuid.UUID(channel["id"])  # the one already there
    url = f"/webhooks/sandbox/{channel['id']}"

    wrong = await client.post(url, json=SAMPLE_MESSAGE, headers={SECRET_HEADER: "nope"})
    assert wrong.status == 401
    assert (await wrong.json())["error"]["code"] == "invalid_signature"
    bad = await client.post(url, json={"from": "x"}, headers={SECRET_HEADER: demo.webhook_secret})
    assert bad.status == 400
    assert (await bad.json())["error"]["code"] == "unparseable_webhook"

    posted = await client.post(
        url, json=SAMPLE_MESSAGE, headers={SECRET_HEADER: demo.webhook_secret}
    )
    assert posted.status == 200, await posted.text()
    assert (await posted.json())["messages"] == 1
    [message] = await fetch(
        "SELECT conversation, body FROM messages WHERE channel = {}", uuid.UUID(channel["id"])
    )
    assert message["body"] == SAMPLE_MESSAGE["text"]

    conversation = message["conversation"]
    resp = await client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"type": "text", "text": "Chega amanhã!"},
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    await settle(client)
    [reply] = await fetch(
        "SELECT status, provider_message_id FROM messages"
        " WHERE conversation = {} AND direction = 'out'",
        conversation,
    )
    assert reply["status"] == "sent"

    tick = {"statuses": [{"id": reply["provider_message_id"], "status": "read"}]}
    resp = await client.post(url, json=tick, headers={SECRET_HEADER: demo.webhook_secret})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["statuses"] == 1
    [reply] = await fetch(
        "SELECT status FROM messages WHERE conversation = {} AND direction = 'out'", conversation
    )
    assert reply["status"] == "read"


async def test_the_demo_channel_is_made_once_and_a_disabled_plugin_is_respected(
    client: Any, make_company: Any
) -> None:
    services = client.server.app[SERVICES]
    company = await make_company()
    first = await seed_demo_channel(services, company.tenant_id)
    second = await seed_demo_channel(services, company.tenant_id)
    assert first is not None and first == second
    [row] = await Channel.select(Channel.state).where(Channel.tenant == company.tenant_id)
    assert row["state"] == "provisioned"
    resp = await client.post(
        urlsplit(first.webhook_url).path,
        json=SAMPLE_MESSAGE,
        headers={SECRET_HEADER: first.webhook_secret},
    )
    assert resp.status == 200, await resp.text()

    headers = await login(client, company.owner)
    resp = await client.put("/api/v1/plugins/sandbox", json={"enabled": False}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert await seed_demo_channel(services, company.tenant_id) is None
    assert await Channel.count().where(Channel.tenant == company.tenant_id) == 1


async def test_no_demo_channel_when_the_plugin_is_blocked(
    make_client: Any, make_company: Any
) -> None:
    blocked = await make_client(plugins_blocked=["sandbox"])
    company = await make_company()
    assert await seed_demo_channel(blocked.server.app[SERVICES], company.tenant_id) is None
