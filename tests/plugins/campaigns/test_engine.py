"""The sender: pacing, pause within a second, windows, crash recovery, two drivers."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from guiche_campaigns import engine, store

from guiche.plugin import send_message

from .conftest import csv_of, fetch, ledger_rows, services_of_client, settle

WINDOW_FAKE = pytest.mark.parametrize("fake_plugin", [{"window_24h": True}], indirect=True)


def _phones(fake_plugin) -> list[str]:
    return [m.to.phone for m in fake_plugin.provider.sent]


async def test_the_rate_is_held_over_the_run(client, make_shop, fake_plugin):
    shop = await make_shop()
    campaign = await shop.create(client, rate_per_minute=600, jitter=0.3)  # 10/s
    await shop.csv(client, campaign["id"], csv_of(16))
    await shop.act(client, campaign["id"], "start")
    await settle(client)
    rows = await ledger_rows(campaign["id"])
    times = sorted(r["sent_at"] for r in rows)
    elapsed = (times[-1] - times[0]).total_seconds()
    # 15 gaps of 0.1 s on average; jitter never makes the run faster than the rate allows
    # by more than its bound (0.7 x), and one process is never much slower.
    assert 15 * 0.1 * 0.7 <= elapsed <= 15 * 0.1 * 3
    assert len(fake_plugin.provider.sent) == 16


async def test_campaigns_on_one_channel_share_its_budget(client, make_shop, fake_plugin):
    shop = await make_shop(channel_rate_per_minute=600.0)  # 10/s for all campaigns together
    first = await shop.create(client, rate_per_minute=60_000)
    second = await shop.create(client, rate_per_minute=60_000)
    await shop.csv(client, first["id"], csv_of(8))
    await shop.csv(client, second["id"], csv_of(16, start=8))
    await shop.act(client, first["id"], "start")
    await shop.act(client, second["id"], "start")
    await settle(client)
    rows = await ledger_rows(first["id"]) + await ledger_rows(second["id"])
    times = sorted(r["sent_at"] for r in rows)
    assert len(times) == 16 and len(set(_phones(fake_plugin))) == 16
    # alone, each would be done in milliseconds; together they wait for the channel's bucket
    assert (times[-1] - times[0]).total_seconds() >= 15 * 0.1 * 0.8


async def test_pause_takes_effect_within_a_second_and_resume_finishes(
    client, make_shop, fake_plugin
):
    shop = await make_shop()
    campaign = await shop.create(client, rate_per_minute=300)  # one every 0.2 s
    await shop.csv(client, campaign["id"], csv_of(12))
    await shop.act(client, campaign["id"], "start")
    await fake_plugin.provider.wait_sent(2)
    paused = await shop.act(client, campaign["id"], "pause")
    assert paused["status"] == "paused"
    at_pause = len(fake_plugin.provider.sent)
    await asyncio.sleep(1.2)
    assert len(fake_plugin.provider.sent) <= at_pause + 1  # at most the one in flight
    frozen = len(fake_plugin.provider.sent)
    await asyncio.sleep(0.6)
    assert len(fake_plugin.provider.sent) == frozen
    await settle(client)
    # targets claimed ahead in a batch and not sent went back: none is left `sending`
    states = [row["state"] for row in await ledger_rows(campaign["id"])]
    assert "sending" not in states and states.count("pending") == 12 - frozen
    await shop.act(client, campaign["id"], "resume")
    await settle(client)
    assert sorted(_phones(fake_plugin)) == sorted(set(_phones(fake_plugin)))
    assert len(fake_plugin.provider.sent) == 12
    body = await shop.get(client, f"campaigns/{campaign['id']}")
    assert body["status"] == "finished"


async def test_cancel_stops_and_the_ledger_stays_true(client, make_shop, fake_plugin):
    shop = await make_shop()
    campaign = await shop.create(client, rate_per_minute=300)
    await shop.csv(client, campaign["id"], csv_of(10))
    await shop.act(client, campaign["id"], "start")
    await fake_plugin.provider.wait_sent(2)
    cancelled = await shop.act(client, campaign["id"], "cancel")
    assert cancelled["status"] == "cancelled"
    await settle(client)
    rows = await ledger_rows(campaign["id"])
    sent = {m.to.phone for m in fake_plugin.provider.sent}
    for row in rows:
        if row["phone"] in sent:
            assert row["state"] == "sent" and row["message_id"] is not None
        else:
            assert row["state"] == "skipped" and row["message_id"] is None
    await shop.act(client, campaign["id"], "resume", status=409)


async def test_the_send_window_pauses_and_resumes_with_the_clock(
    client, make_shop, fake_plugin, monkeypatch
):
    shop = await make_shop()
    window = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}
    campaign = await shop.create(client, send_window=window)
    await shop.csv(client, campaign["id"], csv_of(3))
    saturday = dt.datetime(2026, 12, 5, 15, 0, tzinfo=dt.UTC)  # 12:00 in São Paulo
    monkeypatch.setattr(engine, "clock", lambda: saturday)
    await shop.act(client, campaign["id"], "start")
    await settle(client)
    assert fake_plugin.provider.sent == []
    services = services_of_client(client)
    assert await engine.drive(campaign["id"], services=services) == "outside_window"
    monday = dt.datetime(2026, 12, 7, 12, 30, tzinfo=dt.UTC)  # 09:30 in São Paulo
    monkeypatch.setattr(engine, "clock", lambda: monday)
    assert (await engine.tick(services=services))["redriven"] >= 1
    await settle(client)
    assert len(fake_plugin.provider.sent) == 3


async def test_a_future_start_at_schedules_and_the_tick_starts_it(client, make_shop, fake_plugin):
    shop = await make_shop()
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    campaign = await shop.create(client, start_at=soon.isoformat())
    await shop.csv(client, campaign["id"], csv_of(2))
    assert (await shop.act(client, campaign["id"], "start"))["status"] == "scheduled"
    services = services_of_client(client)
    assert (await engine.tick(services=services))["started"] == 0
    await fetch(
        "UPDATE campaigns SET start_at = now() - interval '1 second' WHERE id = {}",
        uuid.UUID(campaign["id"]),
    )
    assert (await engine.tick(services=services))["started"] == 1
    await settle(client)
    assert len(fake_plugin.provider.sent) == 2


async def _abandon(campaign_id: str, run: int = 1) -> dict:
    """What a driver killed right after claiming leaves: a `sending` row, leases expired."""
    cid = uuid.UUID(campaign_id)
    [row] = await fetch(
        "UPDATE campaign_targets SET state = 'sending', attempts = 1,"
        " lease_until = now() - interval '1 second'"
        " WHERE id = (SELECT id FROM campaign_targets WHERE campaign = {} AND run = {}"
        " ORDER BY seq LIMIT 1) RETURNING *",
        cid,
        run,
    )
    await fetch(
        "UPDATE campaigns SET status = 'running', driver_token = {},"
        " driver_until = now() - interval '1 second' WHERE id = {}",
        uuid.uuid4(),
        cid,
    )
    return row


async def test_a_driver_killed_after_its_claim_is_recovered_without_duplicates(
    client, make_shop, fake_plugin
):
    shop = await make_shop()
    campaign = await shop.create(client)
    await shop.csv(client, campaign["id"], csv_of(5))
    claimed = await _abandon(campaign["id"])
    services = services_of_client(client)
    assert await engine.drive(campaign["id"], services=services) != "busy"
    await settle(client)
    assert sorted(_phones(fake_plugin)) == sorted({r["phone"] for r in await ledger_rows(
        campaign["id"])})  # fmt: skip
    assert _phones(fake_plugin).count(claimed["phone"]) == 1
    [row] = [r for r in await ledger_rows(campaign["id"]) if r["id"] == claimed["id"]]
    assert (row["state"], row["attempts"]) == ("sent", 2)


async def test_a_driver_killed_after_the_outbox_took_the_message_never_sends_twice(
    client, make_shop, fake_plugin
):
    """Killed between `send_message` (committed, sent by the outbox) and its settle: the
    re-drive finds the same idempotency key and records that message instead."""
    shop = await make_shop()
    campaign = await shop.create(client, content={"type": "text", "text": "Oi"})
    await shop.csv(client, campaign["id"], csv_of(4))
    claimed = await _abandon(campaign["id"])
    services = services_of_client(client)
    first = await send_message(
        services,
        shop.company.tenant_id,
        channel_id=shop.channel.id,
        phone=claimed["phone"],
        message={"type": "text", "text": "Oi"},
        idempotency_key=f"campaign:{claimed['id']}",
    )
    await settle(client)
    assert _phones(fake_plugin) == [claimed["phone"]]
    await engine.tick(services=services)
    await settle(client)
    assert len(fake_plugin.provider.sent) == 4
    assert _phones(fake_plugin).count(claimed["phone"]) == 1
    [row] = [r for r in await ledger_rows(campaign["id"]) if r["id"] == claimed["id"]]
    assert row["message_id"] == first.message_id and row["state"] == "sent"


async def test_two_drivers_never_send_a_target_twice(client, make_shop, fake_plugin, monkeypatch):
    """Two workers kicked for one campaign, and a driver whose lease is stolen mid-run
    (a stalled worker presumed dead): each target is still sent once."""
    shop = await make_shop()
    campaign = await shop.create(client, rate_per_minute=1200)
    await shop.csv(client, campaign["id"], csv_of(20))
    await fetch("UPDATE campaigns SET status = 'running' WHERE id = {}", uuid.UUID(campaign["id"]))
    services = services_of_client(client)
    monkeypatch.setattr(engine, "DRIVER_LEASE_SECONDS", 0.3)  # leases expire mid-run
    results = await asyncio.gather(
        *(engine.drive(campaign["id"], services=services) for _ in range(2)),
        *(engine.tick(services=services) for _ in range(2)),
    )
    await settle(client)
    for _ in range(20):
        if (await shop.get(client, f"campaigns/{campaign['id']}"))["status"] == "finished":
            break
        await engine.tick(services=services)
        await settle(client)
    assert "busy" in results[:2] or len(fake_plugin.provider.sent) == 20
    phones = _phones(fake_plugin)
    assert len(phones) == 20 and len(set(phones)) == 20
    rows = await ledger_rows(campaign["id"])
    assert {r["state"] for r in rows} == {"sent"}


@WINDOW_FAKE
async def test_meta_like_channels_need_a_template_for_cold_contacts(client, make_shop, fake_plugin):
    shop = await make_shop()
    text = await shop.create(client)
    await shop.csv(client, text["id"], csv_of(2))
    await shop.act(client, text["id"], "start")
    await settle(client)
    assert fake_plugin.provider.sent == []
    rows = await ledger_rows(text["id"])
    assert {r["state"] for r in rows} == {"failed"}
    assert {store.loads(r["reason"])["code"] for r in rows} == {"outside_customer_care_window"}

    template = {
        "type": "template",
        "template": {
            "name": "oferta",
            "language": "pt_BR",
            "components": [
                {"type": "body", "parameters": [{"type": "text", "value": "{{first_name}}"}]}
            ],
        },
    }
    campaign = await shop.create(client, content=template)
    await shop.csv(client, campaign["id"], csv_of(2))
    await shop.act(client, campaign["id"], "start")
    await settle(client)
    assert len(fake_plugin.provider.sent) == 2
    values = {m.template.components[0].parameters[0].value for m in fake_plugin.provider.sent}
    assert values == {"Cliente"}


async def test_daily_caps_and_the_warm_up_ramp_hold_the_number_back(client, make_shop, fake_plugin):
    services = services_of_client(client)
    shop = await make_shop()
    capped = await shop.create(client, daily_cap=2)
    await shop.csv(client, capped["id"], csv_of(4))
    await shop.act(client, capped["id"], "start")
    await settle(client)
    assert len(fake_plugin.provider.sent) == 2
    assert await engine.drive(capped["id"], services=services) == "daily_cap"
    assert (await shop.get(client, f"campaigns/{capped['id']}"))["status"] == "running"

    young = await make_shop(warmup_days=3, warmup_first_day_cap=3)  # a channel made today
    ramped = await young.create(client)
    await young.csv(client, ramped["id"], csv_of(5))
    await young.act(client, ramped["id"], "start")
    await settle(client)
    assert len(fake_plugin.provider.sent) == 2 + 3
    assert await engine.drive(ramped["id"], services=services) == "daily_cap"


def test_the_warm_up_ramp_doubles_daily_until_it_ends() -> None:
    from guiche_campaigns.settings import CampaignSettings

    ramp = CampaignSettings(warmup_days=3, warmup_first_day_cap=50)
    caps = [engine.warmup_cap(ramp, dt.timedelta(days=d, hours=5)) for d in range(4)]
    assert caps == [50, 100, 200, None]
    assert engine.warmup_cap(CampaignSettings(), dt.timedelta()) is None


async def test_a_company_that_disables_the_plugin_sends_nothing_more(
    client, make_shop, fake_plugin
):
    shop = await make_shop()
    campaign = await shop.create(client)
    await shop.csv(client, campaign["id"], csv_of(3))
    resp = await client.put(
        "/api/v1/plugins/campaigns", json={"enabled": False}, headers=shop.headers
    )
    assert resp.status == 200
    await fetch("UPDATE campaigns SET status = 'running' WHERE id = {}", uuid.UUID(campaign["id"]))
    services = services_of_client(client)
    assert await engine.drive(campaign["id"], services=services) == "disabled"
    await settle(client)
    assert fake_plugin.provider.sent == []
