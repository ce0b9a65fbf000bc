"""`core.purge_message_keys`: dedup keys are pruned past the retention, counted from their
claim, and a message whose key is gone is no longer deduplicated (the documented cost)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from guiche.foundation.config import ConfigError, load_settings
from guiche.inbound import key_retention
from guiche.inbound.key_retention import purge_message_keys
from guiche.runtime.services import SERVICES
from guiche.tasks.core import core_tasks

from .conftest import fetch, text_message


def _services(client: Any, days: int) -> Any:
    services = client.app[SERVICES]
    settings = services.settings.model_copy(update={"message_keys_retention_days": days})
    return SimpleNamespace(settings=settings, db=services.db)


async def _keys(channel: Any) -> list[str]:
    rows = await fetch(
        "SELECT provider_message_id FROM message_keys WHERE channel = {}"
        " ORDER BY provider_message_id",
        channel.id,
    )
    return [row["provider_message_id"] for row in rows]


async def _age(channel: Any, provider_ids: list[str], days: int) -> None:
    await fetch(
        "UPDATE message_keys SET claimed_at = now() - make_interval(days => {})"
        " WHERE channel = {} AND provider_message_id = ANY({}::varchar[])",
        days,
        channel.id,
        provider_ids,
    )


async def test_keys_claimed_before_the_retention_are_pruned_and_the_rest_kept(
    client, make_company, make_channel, post_webhook, monkeypatch
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    messages = [text_message(f"m{n}", provider_id=f"keys-{n}") for n in range(4)]
    assert (await post_webhook(channel, messages)).status == 200
    await _age(channel, ["keys-0", "keys-1", "keys-2"], 31)
    await _age(channel, ["keys-3"], 29)
    monkeypatch.setattr(key_retention, "BATCH", 2)  # several batches

    pruned = await purge_message_keys(services=_services(client, 30))

    assert pruned >= 3
    assert await _keys(channel) == ["keys-3"]
    again = await post_webhook(channel, [messages[0], messages[3]])
    assert (await again.json())["messages"], "keys-0's dedup went with its key"
    assert (await again.json())["duplicates"] == 1  # keys-3 is still known


async def test_a_retention_of_zero_keeps_every_key(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    assert (await post_webhook(channel, [text_message(provider_id="keep-0")])).status == 200
    await _age(channel, ["keep-0"], 4000)

    assert await purge_message_keys(services=_services(client, 0)) == 0
    assert await _keys(channel) == ["keep-0"]


def test_the_purge_is_a_scheduled_core_task():
    spec = core_tasks()["core.purge_message_keys"]
    assert spec.func is purge_message_keys and spec.schedule


@pytest.mark.parametrize("days", ["1", "6", "-1"])
def test_a_retention_shorter_than_the_redelivery_horizon_is_refused(days, monkeypatch):
    monkeypatch.setenv("GUICHE_MESSAGE_KEYS_RETENTION_DAYS", days)
    with pytest.raises(ConfigError, match="GUICHE_MESSAGE_KEYS_RETENTION_DAYS"):
        load_settings()


def test_the_retention_defaults_to_30_days(monkeypatch):
    monkeypatch.delenv("GUICHE_MESSAGE_KEYS_RETENTION_DAYS", raising=False)
    assert load_settings().message_keys_retention_days == 30
