"""The full-history catalog through the real app and a fake ChatGuru server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from guiche_chatguru import catalog as catalog_module
from guiche_chatguru.catalog import create_job, run_catalog

from guiche.runtime.services import SERVICES
from tests.conftest import login, published_events

from .conftest import BASE, catalog, credentials, enable, fetch, messages_of
from .fake_chatguru import ANA_CHAT

LONG_CHAT = "1282877ba1399138c8b0865c"  # 9 messages


async def test_catalog_stores_each_message_once(client: Any, account: Any) -> None:
    fake = account.fake
    job = await catalog(client, account)
    assert job["state"] == "done", job
    assert job["chats_total"] == 3 and job["chats_done"] == 3
    stored = await messages_of(account.channel_id)
    assert len(stored) == fake.message_count() == 6 + 5 + 9
    assert len({m["provider_message_id"] for m in stored}) == len(stored)
    assert job["inserted"] == len(stored)
    assert job["notes"] == 1
    # the panel's note is a core note on its chat's conversation, written by its agent
    [note] = await fetch(
        "SELECT n.conversation, n.author, n.author_name, n.body FROM notes n"
        " JOIN chatguru_chats c ON c.conversation = n.conversation WHERE c.account = {}",
        account.channel_id,
    )
    assert note["author"] is None and note["author_name"].endswith("(ChatGuru)")
    resp = await client.get(
        "/api/v1/notes", params={"conversation_id": str(note["conversation"])},
        headers=account.headers,
    )
    [shown] = (await resp.json())["items"]
    assert shown["body"] == note["body"]
    assert shown["author"] == {"id": None, "name": note["author_name"]}
    # Ana's history: her fixture pages, in order, with directions and media kept
    ana = [m for m in stored if m["provider_message_id"] in {
        "64d4d4b4716cd193800da372", "89b03fd9aeaf01cdaf22a1ff", "2b1b8d7b845bf248433d7ba6",
        "3c0bc406c949fe426c395555", "4d77873ba12a4babf7963d0c", "581e18cdc0212c293e6f274d"}]
    assert [m["direction"] for m in ana] == ["in", "out", "in", "in", "out", "in"]
    assert [m["type"] for m in ana] == ["text", "text", "image", "text", "text", "audio"]
    # each chat is mapped to the conversation its messages landed in
    chats = await fetch(
        "SELECT chat_id, conversation FROM chatguru_chats WHERE account = {}", account.channel_id
    )
    for chat in chats:
        conversations = {
            m["conversation"] for m in stored if m["conversation"] == chat["conversation"]
        }
        assert chat["conversation"] is not None and len(conversations) == 1
    assert len({chat["conversation"] for chat in chats}) == 3


async def test_catalog_again_adds_nothing(client: Any, account: Any) -> None:
    first = await catalog(client, account)
    second = await catalog(client, account)
    assert second["state"] == "done" and second["inserted"] == 0
    assert len(await messages_of(account.channel_id)) == first["inserted"]
    notes = await fetch("SELECT count(*) AS n FROM notes WHERE source_key LIKE {}",
                        f"chatguru:{account.channel_id}:%")
    assert notes[0]["n"] == first["notes"] == 1


async def test_odd_items_429_and_expired_session_do_not_stop_it(client, account) -> None:
    fake = account.fake
    fake.add_odd(ANA_CHAT)
    fake.fail_next("/messages2/", 429, {"Retry-After": "0"})
    fake.fail_next("/chatlist/store", 503, {"Retry-After": "0"})
    # the first call logs in; then the session expires in the middle of the catalog
    resp = await client.post(
        f"{BASE}/test-connection", json=credentials(fake), headers=account.headers
    )
    assert resp.status == 200
    fake.expire_sessions()
    job = await catalog(client, account)
    assert job["state"] == "done", job
    assert job["odd"] == 1 and job["errors"] == 0
    assert job["inserted"] == fake.message_count()
    assert fake.logins >= 2  # logged in again after the expired session


async def test_a_killed_catalog_resumes_without_duplicates(client, account, monkeypatch) -> None:
    fake = account.fake
    fake.page_size = 1  # many pages, flushed every 2 messages: checkpoints inside a chat
    monkeypatch.setattr(catalog_module, "FLUSH_MESSAGES", 2)
    services = client.server.app[SERVICES]
    gate = asyncio.Event()
    original = fake.on_messages

    async def stall(chat_id: str, page: int) -> None:
        if chat_id == LONG_CHAT and page == 6:
            gate.set()
            await asyncio.sleep(30)  # the worker is killed while waiting here
        await original(chat_id, page)

    fake.on_messages = stall
    job_id = await create_job(account.company.tenant_id, account.channel_id)
    worker = asyncio.create_task(run_catalog(str(job_id), services))
    await asyncio.wait_for(gate.wait(), 10)
    for _ in range(100):  # the other chats finish
        done = await fetch(
            "SELECT count(*) AS n FROM chatguru_chats WHERE account = {} AND catalog_done",
            account.channel_id,
        )
        if done[0]["n"] == 2:
            break
        await asyncio.sleep(0.05)
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    fake.on_messages = original
    partial = await messages_of(account.channel_id)
    assert 0 < len(partial) < fake.message_count()
    [row] = await fetch("SELECT state FROM chatguru_catalog_jobs WHERE id = {}", job_id)
    assert row["state"] == "running"  # a dead worker cannot say so
    # a new start is refused while the dead worker's heartbeat is fresh ...
    resp = await client.post(f"{account.url}/catalog", headers=account.headers)
    assert resp.status == 409
    # ... and takes over once it is stale: resuming at each chat's checkpoint
    await fetch(
        "UPDATE chatguru_catalog_jobs SET heartbeat_at = now() - interval '5 minutes' "
        "WHERE id = {}",
        job_id,
    )
    before = len(fake.calls_to("/messages2/"))
    job = await catalog(client, account)
    assert job["state"] == "done"
    stored = await messages_of(account.channel_id)
    assert len(stored) == fake.message_count()
    assert len({m["provider_message_id"] for m in stored}) == len(stored)
    assert job["inserted"] == len(stored) - len(partial)
    # the run went on from the checkpoints: done chats were not read again, and the
    # stalled chat from after its last committed page
    again = fake.calls_to("/messages2/")[before:]
    assert all(LONG_CHAT in path for _, path in again)
    assert not any(path.endswith("/page/1") for _, path in again)
    [old] = await fetch("SELECT state, error_code FROM chatguru_catalog_jobs WHERE id = {}", job_id)
    assert old == {"state": "failed", "error_code": "worker_lost"}


async def worker_died(job_id: Any) -> None:
    """The job runs, but its worker stopped beating five minutes ago."""
    await fetch(
        "UPDATE chatguru_catalog_jobs SET state = 'running', "
        "heartbeat_at = now() - interval '5 minutes' WHERE id = {}",
        job_id,
    )


async def test_redelivered_task_takes_over_a_stale_job(client, account) -> None:
    services = client.server.app[SERVICES]
    job_id = await create_job(account.company.tenant_id, account.channel_id)
    await worker_died(job_id)
    await run_catalog(str(job_id), services)
    await run_catalog(str(job_id), services)  # at-least-once: a second delivery does nothing
    [row] = await fetch("SELECT state, inserted FROM chatguru_catalog_jobs WHERE id = {}", job_id)
    assert row == {"state": "done", "inserted": account.fake.message_count()}


async def test_cancel(client, account) -> None:
    fake = account.fake
    services = client.server.app[SERVICES]
    gate = asyncio.Event()
    original = fake.on_messages

    async def slow(chat_id: str, page: int) -> None:
        gate.set()
        await asyncio.sleep(0.6)
        await original(chat_id, page)

    fake.on_messages = slow
    job_id = await create_job(account.company.tenant_id, account.channel_id)
    worker = asyncio.create_task(run_catalog(str(job_id), services))
    await asyncio.wait_for(gate.wait(), 10)
    resp = await client.post(f"{BASE}/catalog/{job_id}/cancel", headers=account.headers)
    assert resp.status == 200 and (await resp.json())["cancel_requested"] is True
    await asyncio.wait_for(worker, 20)
    resp = await client.get(f"{BASE}/catalog/{job_id}", headers=account.headers)
    job = await resp.json()
    assert job["state"] == "cancelled"
    assert job["chats_done"] < job["chats_total"]


async def test_cancelling_a_job_whose_worker_died_ends_it_at_once(client, account) -> None:
    services = client.server.app[SERVICES]
    job_id = await create_job(account.company.tenant_id, account.channel_id)
    await worker_died(job_id)
    resp = await client.post(f"{BASE}/catalog/{job_id}/cancel", headers=account.headers)
    job = await resp.json()
    assert resp.status == 200 and job["state"] == "cancelled" and job["finished_at"]
    await run_catalog(str(job_id), services)  # a late redelivery does not revive it
    resp = await client.get(f"{BASE}/catalog/{job_id}", headers=account.headers)
    assert (await resp.json())["state"] == "cancelled"
    assert await messages_of(account.channel_id) == []
    resp = await client.post(f"{account.url}/catalog", headers=account.headers)
    assert resp.status == 202  # a new one may start


async def test_progress_is_published_and_tenant_scoped(client, account, make_company) -> None:
    services = client.server.app[SERVICES]
    with published_events(services.bus) as seen:
        job = await catalog(client, account)
    progress = [e for e in seen if getattr(e, "type", None) == "chatguru.catalog"]
    assert progress, [getattr(e, "type", None) for e in seen]
    last = progress[-1]
    assert last.tenant_id == account.company.tenant_id
    assert last.data["state"] == "done" and last.data["chats_done"] == 3
    assert job["rows_per_second"] > 0 and job["elapsed_seconds"] >= 0
    # another company sees none of it
    other = await make_company()
    headers = await login(client, other.owner)
    await enable(client, headers)
    resp = await client.get(f"{BASE}/catalog/{job['id']}", headers=headers)
    assert resp.status == 404
    resp = await client.get(f"{account.url}/catalog", headers=headers)
    assert resp.status == 404
    resp = await client.post(f"{account.url}/catalog", headers=headers)
    assert resp.status == 404
    resp = await client.post(f"{BASE}/catalog/{job['id']}/cancel", headers=headers)
    assert resp.status == 404


async def test_metrics_count_the_catalog(client, account) -> None:
    await catalog(client, account)
    resp = await client.get("/metrics")
    text = await resp.text()
    assert "guiche_chatguru_catalog_messages_total" in text
    assert "guiche_chatguru_catalog_chats_total" in text


async def test_one_batch_of_many_pages_records_each_chat(client, account) -> None:
    """Every page of every chat in one writer batch (one bookkeeping statement): each
    chat ends at its oldest page, with its count, newest message and conversation."""
    fake = account.fake
    fake.page_size = 2  # 3 to 5 pages per chat, all in one batch of FLUSH_MESSAGES
    job = await catalog(client, account)
    assert job["state"] == "done" and job["chats_done"] == 3, job
    assert job["notes"] == 1 and job["messages"] == fake.message_count()
    stored = await messages_of(account.channel_id)
    chats = await fetch(
        "SELECT chat_id, catalog_page, catalog_done, messages, newest_message_id,"
        " newest_message_at, conversation FROM chatguru_chats WHERE account = {}",
        account.channel_id,
    )
    assert len(chats) == 3
    for chat in chats:
        items = fake.items[chat["chat_id"]]
        upstream = [item["m"]["_id"]["$oid"] for item in items if "m" in item]
        pages = -(-len(items) // fake.page_size)  # the last page that is not empty
        assert chat["catalog_done"] and chat["catalog_page"] == pages
        assert chat["messages"] == len(upstream)
        assert chat["newest_message_id"] == upstream[-1]  # chronological upstream
        mine = [m for m in stored if m["provider_message_id"] in set(upstream)]
        assert {m["conversation"] for m in mine} == {chat["conversation"]}
        assert chat["newest_message_at"] == max(m["created_at"] for m in mine)


async def test_killed_between_the_messages_and_their_checkpoint(
    client, account, monkeypatch
) -> None:
    """A worker dies after a batch's messages committed but before its bookkeeping: no
    checkpoint moved, so the next run reads those pages again and stores nothing twice,
    and loses nothing."""
    from guiche_chatguru import store

    fake = account.fake
    services = client.server.app[SERVICES]
    reached = asyncio.Event()

    async def die(*args: Any, **kwargs: Any) -> None:
        reached.set()
        await asyncio.sleep(30)  # killed here

    monkeypatch.setattr(store, "record_batch", die)
    job_id = await create_job(account.company.tenant_id, account.channel_id)
    worker = asyncio.create_task(run_catalog(str(job_id), services))
    await asyncio.wait_for(reached.wait(), 10)
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    monkeypatch.undo()
    partial = await messages_of(account.channel_id)
    assert len(partial) == fake.message_count()  # the batch committed ...
    chats = await fetch(
        "SELECT catalog_page, catalog_done, messages FROM chatguru_chats WHERE account = {}",
        account.channel_id,
    )
    assert all(c == {"catalog_page": 0, "catalog_done": False, "messages": 0} for c in chats)
    await fetch(  # ... its checkpoints did not: the dead worker's job goes stale
        "UPDATE chatguru_catalog_jobs SET heartbeat_at = now() - interval '5 minutes' "
        "WHERE id = {}",
        job_id,
    )
    job = await catalog(client, account)
    assert job["state"] == "done" and job["chats_done"] == 3
    assert job["inserted"] == 0 and job["duplicates"] == len(partial)
    stored = await messages_of(account.channel_id)
    assert len(stored) == fake.message_count()
    assert len({m["provider_message_id"] for m in stored}) == len(stored)
    chats = await fetch(
        "SELECT catalog_done, messages, conversation FROM chatguru_chats WHERE account = {}",
        account.channel_id,
    )
    assert all(c["catalog_done"] and c["conversation"] is not None for c in chats)
    assert sum(c["messages"] for c in chats) == len(stored)
    [note] = await fetch("SELECT count(*) AS n FROM notes WHERE source_key LIKE {}",
                         f"chatguru:{account.channel_id}:%")
    assert note["n"] == 1


async def test_nul_characters_and_overlong_labels_do_not_stop_the_catalog(client, account) -> None:
    """Postgres holds no NUL and has column limits: such an item is cleaned (a label cut
    to its column), never a catalog that fails on the same page at every run."""
    fake = account.fake
    fake.chats[ANA_CHAT]["tags"] = [{"text": "t" * 300}]
    fake.chats[ANA_CHAT]["name"] = "Ana\x00 Souza"
    fake.add_message(ANA_CHAT, "com\x00 nulo", touch=False)
    fake.items[ANA_CHAT][-1]["m"]["extra"] = "\x00"
    fake.add_message(ANA_CHAT, "id longo", touch=False)
    fake.items[ANA_CHAT][-1]["m"]["_id"] = {"$oid": "x" * 65}

    job = await catalog(client, account)

    assert job["state"] == "done", job
    assert job["odd"] >= 1  # the id too long to store
    bodies = [row["body"] for row in await messages_of(account.channel_id)]
    assert "com nulo" in bodies and "id longo" not in bodies
    tags = await fetch(
        "SELECT tag FROM chatguru_chat_tags WHERE account = {} AND chat_id = {}",
        account.channel_id,
        ANA_CHAT,
    )
    assert tags == [{"tag": "t" * 120}]
    [chat] = await fetch(
        "SELECT name FROM chatguru_chats WHERE account = {} AND chat_id = {}",
        account.channel_id,
        ANA_CHAT,
    )
    assert chat["name"] == "Ana Souza"


async def test_an_account_row_is_never_answered_for_another_company(
    client, account, make_company
) -> None:
    from guiche_chatguru import store

    from guiche.plugin import NotFound

    other = await make_company()
    owners = "SELECT tenant FROM chatguru_accounts WHERE id = {}"
    for _ in range(2):  # before the account's row exists, and after
        with pytest.raises(NotFound):
            await store.ensure_account(other.tenant_id, account.channel_id)
        await store.ensure_account(account.company.tenant_id, account.channel_id)
        rows = await fetch(owners, account.channel_id)
        assert [row["tenant"] for row in rows] == [account.company.tenant_id]
    with pytest.raises(Exception, match="foreign key"):  # the database refuses it too
        await fetch(
            "INSERT INTO chatguru_accounts (id, tenant) VALUES ({}, {})",
            uuid.uuid4(),
            other.tenant_id,
        )
