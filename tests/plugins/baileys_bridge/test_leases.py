"""Leases: sessions spread over bridges, never run twice, and move when their holder
stops or dies (its lease expires)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from guiche_baileys_bridge import store
from guiche_baileys_bridge.tables import BaileysSession

from .conftest import Setup, create_channel, operator_settings


async def owners(channel_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await BaileysSession.raw(
        "SELECT channel_id, owner FROM baileys_sessions WHERE channel_id = ANY({}::uuid[])",
        [str(c) for c in channel_ids],
    )
    return {uuid.UUID(str(r["channel_id"])): r["owner"] for r in rows}


async def test_two_bridges_never_run_a_session_twice_and_take_over(
    client, setup: Setup, fake_sidecar, run_bridge
):
    more = [await create_channel(client, setup.headers) for _ in range(3)]
    channels = [setup.channel_id, *more]
    settings = operator_settings(fake_sidecar.address)
    first, second = run_bridge(settings), run_bridge(settings)
    for channel_id in channels:
        await fake_sidecar.wait_for("start", str(channel_id))
    await asyncio.sleep(0.3)  # several reconcile rounds of both
    for channel_id in channels:
        assert len(fake_sidecar.of("start", str(channel_id))) == 1
    held = await owners(channels)
    assert set(held.values()) <= {first.bridge.owner, second.bridge.owner}
    assert set(first.bridge.running).isdisjoint(second.bridge.running)
    assert set(first.bridge.running) | set(second.bridge.running) >= set(channels)

    moved = [c for c in first.bridge.running if c in channels]  # (other tests' channels too)
    await first.halt()  # a clean stop gives its leases up at once
    for channel_id in moved:
        await fake_sidecar.wait_for("start", str(channel_id), count=2)
    assert set(second.bridge.running) >= set(channels)


async def test_a_dead_holders_lease_must_expire_first(
    client, setup: Setup, fake_sidecar, run_bridge
):
    tenant = setup.company.tenant_id
    assert await store.acquire(setup.channel_id, tenant, "ghost", "10.0.0.9:1", "", 30)
    assert not await store.acquire(setup.channel_id, tenant, "other", "10.0.0.8:1", "", 30)
    running = run_bridge(operator_settings(fake_sidecar.address))
    await asyncio.sleep(0.3)
    assert not fake_sidecar.of("start", setup.session)  # the ghost still holds it
    await BaileysSession.raw(
        "UPDATE baileys_sessions SET lease_until = now() - interval '1 second'"
        " WHERE channel_id = {}",
        setup.channel_id,
    )
    await fake_sidecar.wait_for("start", setup.session)
    assert (await owners([setup.channel_id]))[setup.channel_id] == running.bridge.owner
    assert await store.renew("ghost", [setup.channel_id], 30) == set()  # the ghost lost it


async def test_a_session_busy_on_the_sidecar_gives_the_lease_back(
    client, setup: Setup, fake_sidecar, run_bridge
):
    running = run_bridge(operator_settings(fake_sidecar.address))
    await fake_sidecar.wait_for("start", setup.session)
    await fake_sidecar.push("error", setup.session, {"code": "session_busy", "message": "x"})
    for _ in range(100):
        if setup.channel_id not in running.bridge.running:
            break
        await asyncio.sleep(0.01)
    # given back, then (the other controller gone) taken again on a later round
    await fake_sidecar.wait_for("start", setup.session, count=2)


async def held_with_keys(setup: Setup, owner: str) -> None:
    """A session leased by `owner`, its keys stored."""
    assert await store.acquire(setup.channel_id, setup.company.tenant_id, owner, "h:1", "", 30)
    assert await store.save_auth(setup.channel_id, owner, "sealed-keys")


async def session_row(setup: Setup) -> dict[str, Any]:
    row = await store.load(setup.channel_id)
    assert row is not None
    return row


async def test_an_ended_session_is_released_and_halted_at_once(client, setup: Setup):
    """Ending frees the lease and writes `halt` in one step: no bridge can take the lease
    in between and start the logged-out session again (CI saw exactly that race)."""
    tenant = setup.company.tenant_id
    await held_with_keys(setup, "me")
    await store.end("me", setup.channel_id, clear_auth=True)
    row = await session_row(setup)
    assert (row["owner"], row["command"], row["auth_encrypted"]) == ("", store.HALT, "")
    assert not await store.acquire(setup.channel_id, tenant, "other", "10.0.0.8:1", "", 30)
    await store.set_command(setup.channel_id, tenant, "")  # the operator's connect
    assert await store.acquire(setup.channel_id, tenant, "other", "10.0.0.8:1", "", 30)


async def test_ending_keeps_another_holders_lease_and_the_keys_when_asked(client, setup: Setup):
    await held_with_keys(setup, "holder")
    await store.end("stale", setup.channel_id, clear_auth=False)
    row = await session_row(setup)
    assert (row["owner"], row["auth_encrypted"]) == ("holder", "sealed-keys")
