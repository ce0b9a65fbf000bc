"""The delivery log, replay from a sequence or a time, redelivery of one event, the
log's retention and the Prometheus metrics."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from guiche_webhooks import tasks
from guiche_webhooks.delivery import deliver_due

from tests.plugins.webhooks.conftest import Receiver, Setup, later

BASE = "/api/v1/plugins/webhooks/subscriptions"


async def run(setup: Setup, now: dt.datetime | None = None) -> int:
    return await deliver_due(setup.services, now=now, tenants={setup.company.tenant_id})


async def deliveries(setup: Setup, sub_id: str, **query: Any) -> dict[str, Any]:
    resp = await setup.client.get(
        f"{BASE}/{sub_id}/deliveries", params=query, headers=setup.headers
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_the_log_shows_each_attempt(setup: Setup, receiver: Receiver) -> None:
    sub = await setup.subscribe(receiver.url)
    seqs = await setup.publish(2)
    receiver.answers = [(503, {})]
    t0 = dt.datetime.now(dt.UTC)
    await run(setup, t0)
    await run(setup, later(60, t0))
    page = await deliveries(setup, sub["id"])
    ok, failed = page["items"]  # newest first
    assert ok["succeeded"] and ok["status_code"] == 200
    assert ok["event_ids"] == [f"evt_{s}" for s in seqs]
    assert ok["latency_ms"] is not None and ok["response_body"] == "answer 200"
    # the attempt's id is the one the receiver saw (X-Guiche-Delivery): one attempt, one id
    assert receiver.received[-1].headers["X-Guiche-Delivery"] == ok["id"]
    assert not failed["succeeded"] and failed["status_code"] == 503
    assert failed["error"] == "HTTP 503" and failed["response_body"] == "answer 503"

    first = await deliveries(setup, sub["id"], limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"]
    rest = await deliveries(setup, sub["id"], limit=1, cursor=first["next_cursor"])
    assert rest["items"][0]["id"] == failed["id"]
    resp = await setup.client.get(
        f"{BASE}/{sub['id']}/deliveries", params={"cursor": "garbage"}, headers=setup.headers
    )
    assert resp.status == 422


async def test_replay_from_a_seq_and_from_a_time(setup: Setup, receiver: Receiver) -> None:
    sub = await setup.subscribe(receiver.url)
    seqs = await setup.publish(4)
    await run(setup)
    assert [e["seq"] for e in receiver.events()] == seqs

    resp = await setup.client.post(
        f"{BASE}/{sub['id']}/replay", json={"from_seq": seqs[2]}, headers=setup.headers
    )
    assert resp.status == 200 and (await resp.json())["cursor"] == seqs[2] - 1
    await run(setup)
    assert [e["seq"] for e in receiver.events()] == seqs + seqs[2:]

    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    resp = await setup.client.post(
        f"{BASE}/{sub['id']}/replay", json={"since": since.isoformat()}, headers=setup.headers
    )
    assert resp.status == 200
    await run(setup)
    assert [e["seq"] for e in receiver.events()][-4:] == seqs

    for body in ({}, {"from_seq": 1, "since": since.isoformat()}, {"from_seq": 0}):
        resp = await setup.client.post(
            f"{BASE}/{sub['id']}/replay", json=body, headers=setup.headers
        )
        assert resp.status == 422, body


async def test_redeliver_one_event(setup: Setup, receiver: Receiver) -> None:
    sub = await setup.subscribe(receiver.url)
    seqs = await setup.publish(3)
    await run(setup)
    resp = await setup.client.post(
        f"{BASE}/{sub['id']}/redeliver", json={"event_id": f"evt_{seqs[1]}"},
        headers=setup.headers,
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json()) == {"succeeded": True, "status_code": 200, "error": None}
    assert [e["id"] for e in receiver.received[-1].events] == [f"evt_{seqs[1]}"]
    newest = (await deliveries(setup, sub["id"]))["items"][0]
    assert newest["kind"] == "redelivery"

    for event_id in ("evt_999999999999", "nope"):
        resp = await setup.client.post(
            f"{BASE}/{sub['id']}/redeliver", json={"event_id": event_id}, headers=setup.headers
        )
        assert resp.status == 404


async def test_old_log_rows_are_purged(setup: Setup, receiver: Receiver) -> None:
    sub = await setup.subscribe(receiver.url)
    await setup.publish(1)
    await run(setup)
    async with setup.services.db.transaction() as tx:  # that attempt was 30 days ago
        await tx.connection.execute(
            "UPDATE webhook_deliveries SET created_at = now() - interval '30 days'"
            " WHERE subscription = $1",
            uuid.UUID(sub["id"]),
        )
    await setup.publish(1)
    await run(setup)
    assert len((await deliveries(setup, sub["id"]))["items"]) == 2
    assert await tasks.purge(setup.services) >= 1
    assert len((await deliveries(setup, sub["id"]))["items"]) == 1


async def test_metrics_are_exported(setup: Setup, receiver: Receiver) -> None:
    await setup.subscribe(receiver.url)
    await setup.publish(1)
    await run(setup)
    resp = await setup.client.get("/metrics")
    text = await resp.text()
    assert 'guiche_webhooks_deliveries_total{outcome="ok"}' in text
    assert "guiche_webhooks_lag_seconds_bucket" in text
    assert "guiche_webhooks_events_delivered_total" in text


async def test_another_companys_event_cannot_be_redelivered_or_replayed_into_mine(
    setup: Setup, receiver: Receiver, make_company: Any
) -> None:
    from guiche.plugin import publish_event

    sub = await setup.subscribe(receiver.url)
    other = await make_company()
    theirs = await publish_event(setup.services, other.tenant_id, "test.secret", {"x": 1})
    resp = await setup.client.post(
        f"{BASE}/{sub['id']}/redeliver", json={"event_id": f"evt_{theirs.seq}"},
        headers=setup.headers,
    )
    assert resp.status == 404
    resp = await setup.client.post(
        f"{BASE}/{sub['id']}/replay", json={"from_seq": 1}, headers=setup.headers
    )
    assert resp.status == 200
    await run(setup)
    assert all(e["type"] != "test.secret" for e in receiver.events())
