"""Live polling: new messages only, within the interval, once, under one lease per account;
enable / disable / status through the API."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from guiche_chatguru.config import ChatGuruSettings
from guiche_chatguru.poller import poll_account, poll_due

from guiche.runtime.services import SERVICES
from tests.conftest import login, published_events

from .conftest import catalog, enable, fetch, messages_of, settle
from .fake_chatguru import ANA_CHAT

SETTINGS = ChatGuruSettings(poll_interval_seconds=2)


async def turn_on(client: Any, account: Any) -> dict[str, Any]:
    resp = await client.post(f"{account.url}/polling/enable", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def status(client: Any, account: Any) -> dict[str, Any]:
    resp = await client.get(f"{account.url}/polling", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_enable_disable_status(client, account, make_company) -> None:
    assert (await status(client, account))["polling_enabled"] is False
    on = await turn_on(client, account)
    assert on["polling_enabled"] is True and on["last_poll_at"] is None
    resp = await client.post(f"{account.url}/polling/disable", headers=account.headers)
    assert (await resp.json())["polling_enabled"] is False
    resp = await client.get("/api/v1/plugins/chatguru/accounts", headers=account.headers)
    [listed] = (await resp.json())["items"]
    assert listed["channel_id"] == str(account.channel_id)
    other = await make_company()
    headers = await login(client, other.owner)
    await enable(client, headers)
    for method, path in (("GET", "polling"), ("POST", "polling/enable")):
        resp = await client.request(method, f"{account.url}/{path}", headers=headers)
        assert resp.status == 404
    resp = await client.get("/api/v1/plugins/chatguru/accounts", headers=headers)
    assert (await resp.json())["items"] == []
    # an agent may not turn it on
    agent = await account.company.add("agent")
    resp = await client.post(f"{account.url}/polling/enable", headers=await login(client, agent))
    assert resp.status == 403


async def test_poll_stores_only_new_messages_with_events(client, account) -> None:
    fake = account.fake
    services = client.server.app[SERVICES]
    await catalog(client, account)
    await turn_on(client, account)
    before = len(await messages_of(account.channel_id))
    await poll_due(services)  # nothing new: no message, no duplicate
    assert (await status(client, account))["polls"] == 1
    assert len(await messages_of(account.channel_id)) == before
    new_id = fake.add_message(ANA_CHAT, "Chegou! Obrigada")
    await fetch(
        "UPDATE chatguru_accounts SET last_poll_at = NULL WHERE id = {}", account.channel_id
    )
    with published_events(services.bus) as seen:
        result = await poll_account(
            services, account.company.tenant_id, account.channel_id, SETTINGS
        )
    assert result is not None and result["stored"] == 1 and result["duplicates"] == 0
    assert result["chats"] == 1  # only the changed chat is read, the others are known
    stored = await messages_of(account.channel_id)
    assert len(stored) == before + 1
    assert stored[-1]["provider_message_id"] == new_id and stored[-1]["body"] == "Chegou! Obrigada"
    news = [e for e in seen if getattr(e, "type", None) == "message.new"]
    assert len(news) == 1
    state = await status(client, account)
    assert state["last_poll_messages"] == 1 and state["last_poll_error"] is None
    assert state["last_lag_ms"] is not None and state["polls"] == 2
    # the same poll again adds nothing
    again = await poll_account(services, account.company.tenant_id, account.channel_id, SETTINGS)
    assert again is not None and again["stored"] == 0
    assert len(await messages_of(account.channel_id)) == before + 1


async def test_new_chat_is_picked_up(client, account) -> None:
    import datetime as dt

    fake = account.fake
    services = client.server.app[SERVICES]
    await catalog(client, account)
    await turn_on(client, account)
    chat = fake.add_chat("5511912345678@c.us", "Novo Cliente", at=dt.datetime.now(dt.UTC))
    fake.add_message(chat, "Oi, quero comprar")
    result = await poll_account(services, account.company.tenant_id, account.channel_id, SETTINGS)
    assert result is not None and result["stored"] == 1
    rows = await fetch(
        "SELECT c.phone FROM messages m JOIN contacts c ON c.id = m.contact "
        "WHERE m.channel = {} AND m.body = 'Oi, quero comprar'",
        account.channel_id,
    )
    assert rows == [{"phone": "+5511912345678"}]


async def test_a_message_is_in_within_the_interval_plus_one_second(client, account) -> None:
    """The scheduler ticks `chatguru.poll` every second; the account's interval is 2 s."""
    fake = account.fake
    services = client.server.app[SERVICES]
    await catalog(client, account)
    await turn_on(client, account)

    ticks: set[asyncio.Task[Any]] = set()

    async def scheduler() -> None:  # as taskiq's: a tick per second, whatever runs
        while True:
            tick = asyncio.create_task(poll_due(services))
            ticks.add(tick)
            tick.add_done_callback(ticks.discard)
            await asyncio.sleep(1)

    ticking = asyncio.create_task(scheduler())
    try:
        await asyncio.sleep(1.3)  # upstream changes at an arbitrary moment between polls
        new_id = fake.add_message(ANA_CHAT, "mensagem ao vivo")
        written = time.monotonic()
        while True:
            rows = await fetch(
                "SELECT 1 FROM messages WHERE channel = {} AND provider_message_id = {}",
                account.channel_id,
                new_id,
            )
            if rows:
                break
            assert time.monotonic() - written < 10, "never arrived"
            await asyncio.sleep(0.05)
        assert time.monotonic() - written <= SETTINGS.poll_interval_seconds + 1
    finally:
        ticking.cancel()
        for tick in (ticking, *ticks):
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick


async def test_two_pollers_never_run_for_one_account(client, account) -> None:
    fake = account.fake
    services = client.server.app[SERVICES]
    await catalog(client, account)
    await turn_on(client, account)
    fake.add_message(ANA_CHAT, "uma vez só")
    fake.message_delay = 0.3
    lists_before = len(fake.calls_to("/chatlist/store"))
    tenant = account.company.tenant_id
    results = await asyncio.gather(
        *(poll_account(services, tenant, account.channel_id, SETTINGS) for _ in range(3)),
        poll_due(services),
        poll_due(services),
    )
    ran = [r for r in results[:3] if r is not None]
    assert len(ran) <= 1, results
    # one poll's reading: the chat list's first page (Ana's chat changed) and the next,
    # where nothing changed
    assert len(fake.calls_to("/chatlist/store")) - lists_before == 2
    rows = await fetch(
        "SELECT count(*) AS n FROM messages WHERE channel = {} AND body = 'uma vez só'",
        account.channel_id,
    )
    assert rows[0]["n"] == 1
    # the lease is released after the poll
    [row] = await fetch(
        "SELECT lease_owner, polls FROM chatguru_accounts WHERE id = {}", account.channel_id
    )
    assert row == {"lease_owner": None, "polls": 1}


async def test_a_dead_holders_lease_is_taken_over(client, account) -> None:
    services = client.server.app[SERVICES]
    await turn_on(client, account)
    tenant = account.company.tenant_id
    await fetch(
        "UPDATE chatguru_accounts SET lease_owner = 'alive', "
        "lease_until = now() + interval '1 min' WHERE id = {}",
        account.channel_id,
    )
    assert await poll_account(services, tenant, account.channel_id, SETTINGS) is None
    await fetch(
        "UPDATE chatguru_accounts SET lease_owner = 'dead', lease_until = now() - interval '1 s' "
        "WHERE id = {}",
        account.channel_id,
    )
    assert await poll_account(services, tenant, account.channel_id, SETTINGS) is not None


async def test_disabled_accounts_are_not_polled_and_errors_are_reported(client, account) -> None:
    fake = account.fake
    services = client.server.app[SERVICES]
    await poll_due(services)
    assert (await status(client, account))["polls"] == 0  # polling is off
    await turn_on(client, account)
    fake.password = "changed-upstream"
    fake.expire_sessions()
    fake.sessions.clear()
    await poll_due(services)
    state = await status(client, account)
    assert state["poll_errors"] == 1
    assert state["last_poll_error"].startswith("bad_credentials")


async def test_agents_reply_through_the_documented_api(client, account) -> None:
    fake = account.fake
    services = client.server.app[SERVICES]
    await catalog(client, account)
    await turn_on(client, account)
    fake.add_message(ANA_CHAT, "Alguém aí?")
    await poll_account(services, account.company.tenant_id, account.channel_id, SETTINGS)
    [conversation] = await fetch(
        "SELECT conversation FROM messages WHERE channel = {} AND body = 'Alguém aí?'",
        account.channel_id,
    )
    resp = await client.post(
        f"/api/v1/conversations/{conversation['conversation']}/messages",
        json={"type": "text", "text": "Sim, como posso ajudar?"},
        headers=account.headers,
    )
    assert resp.status == 202, await resp.text()
    await settle(client)
    [sent] = fake.sent
    assert sent["action"] == "message_send" and sent["chat_number"] == "5511987654321"
    assert sent["text"] == "Sim, como posso ajudar?"
    [row] = await fetch(
        "SELECT status, provider_message_id FROM messages WHERE id = {}",
        uuid.UUID((await resp.json())["id"]),
    )
    assert row == {"status": "sent", "provider_message_id": "c36ea2af419e2b676e6e12f9"}


async def test_a_chat_that_fails_is_read_again_and_the_others_are_stored(client, account) -> None:
    """A failed read must not mark the chat as read (its message would be lost for
    good), nor stop the poll's other chats."""
    from aiohttp import web

    fake = account.fake
    services = client.server.app[SERVICES]
    tenant = account.company.tenant_id
    await catalog(client, account)
    await turn_on(client, account)
    other = "c1ef367622b640f500637aab"
    lost_id = fake.add_message(ANA_CHAT, "não pode se perder")
    other_id = fake.add_message(other, "chegou também")
    broken = True
    original = fake.on_messages

    async def failing(chat_id: str, page: int) -> None:
        if broken and chat_id == ANA_CHAT:
            raise web.HTTPBadRequest(text="scripted")
        await original(chat_id, page)

    fake.on_messages = failing
    result = await poll_account(services, tenant, account.channel_id, SETTINGS)
    assert result is not None and result["stored"] == 1 and result["failed_chats"] == 1
    state = await status(client, account)
    assert state["last_poll_error"].startswith(f"chat {ANA_CHAT}:")
    assert state["poll_errors"] == 1 and state["last_poll_messages"] == 1
    stored = {row["provider_message_id"] for row in await messages_of(account.channel_id)}
    assert other_id in stored and lost_id not in stored

    broken = False
    # a catalog run meanwhile skips the chat (catalogued before) and must not mark it read
    assert (await catalog(client, account))["state"] == "done"
    result = await poll_account(services, tenant, account.channel_id, SETTINGS)
    assert result is not None and result["stored"] == 1 and result["error"] is None
    stored = {row["provider_message_id"] for row in await messages_of(account.channel_id)}
    assert lost_id in stored
    assert (await status(client, account))["last_poll_error"] is None


async def test_a_backlog_longer_than_a_poll_reads_goes_to_the_catalog(
    client, account, monkeypatch
) -> None:
    """Polling off for long: more new pages than a poll reads. The newest are stored at
    once, the chat goes back to the catalog, which is started and stores the rest."""
    from guiche_chatguru import poller

    monkeypatch.setattr(poller, "MAX_MESSAGE_PAGES", 2)
    fake = account.fake
    services = client.server.app[SERVICES]
    tenant = account.company.tenant_id
    await catalog(client, account)
    await turn_on(client, account)
    backlog = [fake.add_message(ANA_CHAT, f"atrasada {n}") for n in range(5 * fake.page_size)]

    result = await poll_account(services, tenant, account.channel_id, SETTINGS)

    assert result is not None and result["error"].startswith("catalog_started:")
    assert 0 < result["stored"] < len(backlog)
    assert backlog[-1] in {r["provider_message_id"] for r in await messages_of(account.channel_id)}
    await settle(client)
    job = await client.get(f"{account.url}/catalog", headers=account.headers)
    assert (await job.json())["state"] == "done"
    rows = await messages_of(account.channel_id)
    ids = [row["provider_message_id"] for row in rows]
    assert set(backlog) <= set(ids) and len(ids) == len(set(ids))
    assert (await status(client, account))["chats_not_catalogued"] == 0


async def test_the_lease_is_renewed_while_a_long_poll_runs(client, account, monkeypatch) -> None:
    from guiche_chatguru import poller

    monkeypatch.setattr(poller, "LEASE", poller.dt.timedelta(seconds=1))
    monkeypatch.setattr(poller, "RENEW_SECONDS", 0.2)
    fake = account.fake
    services = client.server.app[SERVICES]
    tenant = account.company.tenant_id
    await catalog(client, account)
    await turn_on(client, account)
    fake.add_message(ANA_CHAT, "devagar")
    fake.message_delay = 2.0
    first = asyncio.create_task(poll_account(services, tenant, account.channel_id, SETTINGS))
    await asyncio.sleep(1.5)  # past the first lease: only its renewal keeps it
    assert await poll_account(services, tenant, account.channel_id, SETTINGS) is None
    result = await first
    assert result is not None and result["stored"] == 1
    [row] = await fetch(
        "SELECT lease_owner FROM chatguru_accounts WHERE id = {}", account.channel_id
    )
    assert row["lease_owner"] is None
