"""One Meta number belongs to one active channel platform-wide (core's provider identity
claims, declared by the plugin): another company's claim is refused with 409 unless its
own token proves control of the number, a channel whose provisioning failed is never
routed messages, and a number freed by deactivation or deletion can be claimed again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from guiche.models import Channel
from tests.conftest import Company, login
from tests.core.conversations.conftest import fetch
from tests.plugins.meta_cloud.conftest import (
    FIXTURE_PHONE_ID,
    MakeChannel,
    config,
    enable_plugin,
    fixture_bytes,
    unique_phone_id,
)
from tests.plugins.meta_cloud.test_webhooks import app_env, post_app  # noqa: F401

FIXTURE_WAMID = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDUwNTJGNjFENUIwOUZFQTA1Q0MxAA=="
pytestmark = pytest.mark.usefixtures("app_env")


def text_for(phone_id: str) -> tuple[bytes, str]:
    """A signed-ready text message for `phone_id`, with a wamid of its own."""
    wamid = f"wamid.ID{uuid.uuid4().hex}"
    body = fixture_bytes("webhook_text.json")
    body = body.replace(FIXTURE_PHONE_ID.encode(), phone_id.encode())
    return body.replace(FIXTURE_WAMID.encode(), wamid.encode()), wamid


async def deliver(client: Any, phone_id: str) -> tuple[dict[str, Any], str]:
    body, wamid = text_for(phone_id)
    resp = await post_app(client, body)
    assert resp.status == 200, await resp.text()
    return await resp.json(), wamid


async def landed_in(wamid: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(channel, tenant) of every stored copy of a provider message."""
    rows = await fetch("SELECT channel, tenant FROM messages WHERE provider_message_id = {}", wamid)
    return [(row["channel"], row["tenant"]) for row in rows]


async def create(client: Any, company: Company, **credentials: Any) -> Any:
    await enable_plugin(company.tenant_id)
    return await client.post(
        "/api/v1/channels",
        json={"type": "meta_cloud", "name": "Número", "credentials": config(**credentials)},
        headers=await login(client, company.owner),
    )


async def channel(channel_id: uuid.UUID) -> dict[str, Any]:
    return (await fetch("SELECT * FROM channels WHERE id = {}", channel_id))[0]


async def test_another_company_cannot_take_a_held_number(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    victim, attacker = await make_company(), await make_company()
    phone_id = unique_phone_id()
    victim_channel = await make_meta_channel(victim, phone_number_id=phone_id, app_secret=None)

    # The attacker's own token cannot read the victim's number at Meta: refused, no row.
    resp = await create(client, attacker, phone_number_id=phone_id, access_token="attacker")
    assert resp.status == 409, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "provider_identity_claimed"
    assert error["details"][0]["field"] == "credentials"
    assert "access token" in error["details"][0]["message"]
    rows = await fetch("SELECT id FROM channels WHERE tenant = {}", attacker.tenant_id)
    assert rows == []

    # Nor by re-configuring a channel of its own onto the victim's number.
    own = await make_meta_channel(attacker, phone_number_id=unique_phone_id())
    resp = await client.patch(
        f"/api/v1/channels/{own}",
        json={"credentials": {"phone_number_id": phone_id, "access_token": "attacker"}},
        headers=await login(client, attacker.owner),
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "provider_identity_claimed"
    assert (await channel(own))["provider_identity"] != phone_id

    # The victim's customers still reach the victim.
    answer, wamid = await deliver(client, phone_id)
    assert answer["messages"] == 1 and answer["unknown_phone_number_ids"] == []
    assert await landed_in(wamid) == [(victim_channel, victim.tenant_id)]
    assert (await channel(victim_channel))["state"] == "provisioned"


async def test_a_channel_whose_provisioning_failed_gets_no_messages(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    owner, squatter = await make_company(), await make_company()
    phone_id = unique_phone_id()
    owners = await make_meta_channel(owner, phone_number_id=phone_id)
    resp = await client.delete(
        f"/api/v1/channels/{owners}", headers=await login(client, owner.owner)
    )
    assert resp.status == 204

    # While the owner's channel is inactive, another company configures the number with a
    # token that cannot read it: the channel is kept (failed), but routes nothing.
    resp = await create(client, squatter, phone_number_id=phone_id, access_token="squatter")
    assert resp.status == 201, await resp.text()
    squatters = uuid.UUID((await resp.json())["id"])
    assert (await resp.json())["state"] == "provisioning_failed"
    answer, wamid = await deliver(client, phone_id)
    assert answer["unknown_phone_number_ids"] == [phone_id]
    assert await landed_in(wamid) == []

    # The owner re-activates: its token proves control, so it takes the number back.
    resp = await client.patch(
        f"/api/v1/channels/{owners}",
        json={"is_active": True},
        headers=await login(client, owner.owner),
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "provisioned"
    row = await channel(squatters)
    assert (row["state"], row["provider_identity"]) == ("provisioning_failed", None)
    answer, wamid = await deliver(client, phone_id)
    assert await landed_in(wamid) == [(owners, owner.tenant_id)]


async def test_a_failed_retry_stops_routing_at_once(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    phone_id = unique_phone_id()
    channel_id = await make_meta_channel(company, phone_number_id=phone_id)
    answer, _ = await deliver(client, phone_id)  # routed (and the directory loaded)
    assert answer["messages"] == 1
    resp = await client.patch(  # the token is revoked, then provisioning is retried
        f"/api/v1/channels/{channel_id}",
        json={"credentials": {"access_token": "revoked"}},
        headers=await login(client, company.owner),
    )
    assert resp.status == 200, await resp.text()
    resp = await client.post(
        f"/api/v1/channels/{channel_id}/provision", headers=await login(client, company.owner)
    )
    assert (await resp.json())["state"] == "provisioning_failed"
    answer, wamid = await deliver(client, phone_id)
    assert answer["unknown_phone_number_ids"] == [phone_id]
    assert await landed_in(wamid) == []


async def test_a_number_freed_by_deletion_or_deactivation_can_be_claimed_again(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    first, second, third = await make_company(), await make_company(), await make_company()
    phone_id = unique_phone_id()
    firsts = await make_meta_channel(first, phone_number_id=phone_id)
    resp = await client.delete(
        f"/api/v1/channels/{firsts}", headers=await login(client, first.owner)
    )
    assert resp.status == 204

    resp = await create(client, second, phone_number_id=phone_id)
    assert resp.status == 201, await resp.text()
    seconds = uuid.UUID((await resp.json())["id"])
    _, wamid = await deliver(client, phone_id)
    assert await landed_in(wamid) == [(seconds, second.tenant_id)]

    resp = await client.patch(
        f"/api/v1/channels/{seconds}",
        json={"is_active": False},
        headers=await login(client, second.owner),
    )
    assert resp.status == 200
    resp = await create(client, third, phone_number_id=phone_id, access_token="not-proven")
    assert resp.status == 201  # free again: claimed even before provisioning proves it
    thirds = uuid.UUID((await resp.json())["id"])
    assert (await channel(thirds))["provider_identity"] == phone_id


async def test_a_proven_claim_moves_the_number_and_the_loser_can_prove_it_back(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    old, new = await make_company(), await make_company()
    phone_id = unique_phone_id()
    olds = await make_meta_channel(old, phone_number_id=phone_id)
    news = await make_meta_channel(new, phone_number_id=phone_id)  # its token reads it
    row = await channel(olds)
    assert row["provider_identity"] is None and row["state"] == "provisioning_failed"
    assert "proved control" in row["state_detail"]
    _, wamid = await deliver(client, phone_id)
    assert await landed_in(wamid) == [(news, new.tenant_id)]

    resp = await client.post(
        f"/api/v1/channels/{olds}/provision", headers=await login(client, old.owner)
    )
    assert (await resp.json())["state"] == "provisioned"
    assert (await channel(news))["state"] == "provisioning_failed"
    _, wamid = await deliver(client, phone_id)
    assert await landed_in(wamid) == [(olds, old.tenant_id)]


async def test_concurrent_claims_leave_one_holder(client: Any, make_company: Any) -> None:
    companies = [await make_company() for _ in range(4)]
    phone_id = unique_phone_id()
    answers = await asyncio.gather(
        *(create(client, company, phone_number_id=phone_id) for company in companies)
    )
    assert {resp.status for resp in answers} <= {201, 409}
    holders = await fetch(
        "SELECT id FROM channels WHERE type = 'meta_cloud' AND provider_identity = {}"
        " AND is_active",
        phone_id,
    )
    assert len(holders) == 1
    holder = await channel(holders[0]["id"])
    _, wamid = await deliver(client, phone_id)
    assert await landed_in(wamid) == [(holder["id"], holder["tenant"])]


async def test_the_database_refuses_two_active_holders(make_company: Any) -> None:
    first, second = await make_company(), await make_company()
    phone_id = unique_phone_id()
    insert = (
        "INSERT INTO channels (tenant, type, name, provider_identity) "
        "VALUES ({}, 'meta_cloud', 'x', {})"
    )
    await Channel.raw(insert, first.tenant_id, phone_id)
    with pytest.raises(asyncpg.UniqueViolationError):
        await Channel.raw(insert, second.tenant_id, phone_id)


async def test_channels_configured_before_identities_claim_theirs_when_first_routed(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    older, newer = await make_company(), await make_company()
    phone_id = unique_phone_id()
    olders = await make_meta_channel(older, phone_number_id=phone_id)
    newers = await make_meta_channel(newer, phone_number_id=unique_phone_id())
    # As rows migrated from before `provider_identity` look: two active channels, one
    # number, no identity stored (the newer one re-pointed by hand, say).
    await Channel.raw(
        "UPDATE channels SET provider_identity = NULL, credentials_encrypted = "
        "(SELECT credentials_encrypted FROM channels WHERE id = {}) WHERE id IN ({}, {})",
        olders,
        olders,
        newers,
    )
    _, wamid = await deliver(client, phone_id)
    assert await landed_in(wamid) == [(olders, older.tenant_id)]  # the oldest claims it
    assert (await channel(olders))["provider_identity"] == phone_id
    assert (await channel(newers))["provider_identity"] is None
