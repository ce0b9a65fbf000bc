"""`guiche chatguru catalog`: the plugin's CLI command (core's `guiche_commands` hook) run
through `guiche.cli.main` against the fake ChatGuru server, its errors, and Ctrl+C."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import pytest
from guiche_chatguru import command

from guiche.cli import main
from guiche.runtime.services import SERVICES
from tests.plugins.chatguru.conftest import fetch, messages_of


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, encryption_key: str) -> None:
    """The environment of an operator's shell on the tests' database and keys."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GUICHE_SECRET_KEY", "test-secret-key-" + "x" * 32)
    monkeypatch.setenv("GUICHE_ENCRYPTION_KEYS", encryption_key)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("GUICHE_LOG_LEVEL", "WARNING")
    # the command runs in this process: its objects must not be frozen out of collection
    monkeypatch.setenv("GUICHE_GC_FREEZE", "false")


async def guiche(*argv: str) -> int:
    """`guiche ...` in a thread: its own event loop, while this one serves the fake."""
    return await asyncio.to_thread(main, list(argv))


async def test_the_cli_catalogs_the_whole_history_with_progress(
    account: Any, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    slug = (await fetch("SELECT slug FROM tenants WHERE id = {}", account.company.tenant_id))[0]
    code = await guiche("chatguru", "catalog", "--company", slug["slug"])
    err = capsys.readouterr().err
    assert code == 0, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"[{'#' * command.BAR_WIDTH}] 100%"), err
    assert "chats 3/3" in last and "messages 20" in last and last.endswith("done")
    stored = await messages_of(account.channel_id)
    assert len(stored) == account.fake.message_count() == 20

    # again, by the company's id (as --tenant) and the channel's: resumable, so nothing is
    # added twice
    code = await guiche(
        "chatguru", "catalog", "--tenant", str(account.company.tenant_id),
        "--channel", str(account.channel_id),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert len(await messages_of(account.channel_id)) == 20


async def test_unknown_company_or_channel_is_a_one_line_error(
    account: Any, make_company: Any, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await guiche("chatguru", "catalog", "--company", "no-such-company") == 1
    assert "no company 'no-such-company'" in capsys.readouterr().err
    other = await make_company()
    assert await guiche("chatguru", "catalog", "--company", str(other.tenant_id)) == 1
    assert "no active ChatGuru channel" in capsys.readouterr().err
    stranger = str(uuid.uuid4())
    code = await guiche(
        "chatguru", "catalog", "--company", str(other.tenant_id), "--channel", stranger
    )
    assert code == 1  # another company's (or no) channel is never catalogued
    assert await messages_of(account.channel_id) == []
    code = await guiche(
        "chatguru", "catalog", "--company", str(other.tenant_id),
        "--channel", str(account.channel_id),
    )  # fmt: skip
    assert code == 1 and "no ChatGuru channel" in capsys.readouterr().err
    assert await messages_of(account.channel_id) == []
    rows = await fetch("SELECT tenant FROM chatguru_accounts WHERE id = {}", account.channel_id)
    assert all(row["tenant"] == account.company.tenant_id for row in rows)


async def test_ctrl_c_cancels_the_job_and_keeps_its_checkpoints(
    client: Any, account: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = account.fake
    started = asyncio.Event()
    original = fake.on_messages

    async def slow(chat_id: str, page: int) -> None:
        started.set()
        await asyncio.sleep(0.6)
        await original(chat_id, page)

    fake.on_messages = slow
    services = client.server.app[SERVICES]
    args = argparse.Namespace(tenant_id=account.company.tenant_id, channel=account.channel_id)
    running = asyncio.create_task(command.run(services, args))
    await asyncio.wait_for(started.wait(), 10)
    running.cancel()  # what asyncio.run does with the main task on Ctrl+C
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 20)
    [job] = await fetch(
        "SELECT state, chats_done, chats_total FROM chatguru_catalog_jobs WHERE account = {}",
        account.channel_id,
    )
    assert job["state"] == "cancelled" and job["chats_done"] < job["chats_total"]
    assert capsys.readouterr().err.strip().endswith("cancelled")
