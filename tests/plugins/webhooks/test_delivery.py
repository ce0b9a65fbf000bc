"""Delivery to a real local receiver: order, signatures, batching, retries with backoff
and Retry-After, a long outage in simulated time, pausing, SSRF at delivery time, a
worker killed mid-delivery, and tenant isolation."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from guiche_webhooks import delivery, signing
from guiche_webhooks.delivery import deliver_due
from guiche_webhooks.netguard import GuardedResolver, TargetRefused

from guiche.plugin import read_events
from tests.conftest import login
from tests.plugins.webhooks.conftest import Receiver, Setup, enable, free_port, later


async def run(setup: Setup, now: dt.datetime | None = None) -> int:
    return await deliver_due(setup.services, now=now, tenants={setup.company.tenant_id})


async def test_events_arrive_in_order_signed_once_each(setup: Setup, receiver: Receiver) -> None:
    sub = await setup.subscribe(receiver.url)
    a, b = uuid.uuid4(), uuid.uuid4()
    seqs = []
    for _ in range(3):
        seqs += await setup.publish(1, conversation=a)
        seqs += await setup.publish(1, conversation=b)
    assert await run(setup) == 6
    events = receiver.events()
    assert [e["seq"] for e in events] == seqs
    assert [e["id"] for e in events] == [f"evt_{s}" for s in seqs]
    assert [e["conversation_id"] for e in events] == [str(a), str(b)] * 3
    for item in receiver.received:
        assert signing.verify(sub["secret"], item.headers[signing.HEADER], item.body)
        assert not signing.verify("whsec_wrong", item.headers[signing.HEADER], item.body)
        assert not signing.verify(sub["secret"], item.headers[signing.HEADER], item.body + b" ")
    assert (await setup.subscription(sub["id"]))["cursor"] == seqs[-1]

    assert await run(setup) == 0  # nothing twice
    assert len(receiver.events()) == 6
    more = await setup.publish(2)
    await run(setup)
    assert [e["seq"] for e in receiver.events()] == seqs + more


async def test_type_channel_and_department_filters(setup: Setup, receiver: Receiver) -> None:
    await setup.subscribe(receiver.url, event_types=["campaign.*"])
    await setup.publish(1, type="bot.reply")
    wanted = await setup.publish(2, type="campaign.progress")
    await setup.publish(1, type="bot.reply")
    await run(setup)
    assert [e["seq"] for e in receiver.events()] == wanted
    assert {e["type"] for e in receiver.events()} == {"campaign.progress"}


async def test_a_lagging_receiver_gets_batches(
    client: Any, make_company: Any, receiver: Receiver
) -> None:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers, max_batch=3)
    setup = Setup(client, company, headers)
    await setup.subscribe(receiver.url)
    receiver.default = 503
    seqs = await setup.publish(7)
    now = dt.datetime.now(dt.UTC)
    assert await run(setup, now) == 0
    receiver.default = 200
    assert await run(setup, later(3600, now)) == 7
    assert [len(item.events) for item in receiver.received] == [3, 3, 1]
    assert [e["seq"] for e in receiver.events()] == seqs


async def test_retry_with_backoff_then_retry_after_then_success(
    setup: Setup, receiver: Receiver
) -> None:
    sub = await setup.subscribe(receiver.url)
    seqs = await setup.publish(2)
    receiver.answers = [(500, {}), (429, {"Retry-After": "120"})]
    t0 = dt.datetime.now(dt.UTC)
    await run(setup, t0)
    state = await setup.subscription(sub["id"])
    assert state["state"] == "failing" and state["failures"] == 1
    wait = dt.datetime.fromisoformat(state["next_attempt_at"]) - t0
    assert dt.timedelta(seconds=2) <= wait <= dt.timedelta(seconds=5)  # backoff with jitter
    assert state["last_error"] == "HTTP 500"

    await run(setup, later(1, t0))  # the circuit is open: no request
    assert len(receiver.answers) == 1  # the 429 is still waiting for its request
    await run(setup, later(6, t0))  # the probe: 429, Retry-After 120
    state = await setup.subscription(sub["id"])
    wait = dt.datetime.fromisoformat(state["next_attempt_at"]) - later(6, t0)
    assert abs(wait.total_seconds() - 120) < 1
    await run(setup, later(60, t0))
    assert receiver.received == []
    assert await run(setup, later(130, t0)) == 2
    assert [e["seq"] for e in receiver.events()] == seqs
    state = await setup.subscription(sub["id"])
    assert state["state"] == "active" and state["failures"] == 0 and state["last_error"] is None


async def test_receiver_down_for_an_hour_then_back_gets_everything_once_in_order(
    setup: Setup, receiver: Receiver
) -> None:
    """Simulated time: events keep coming for an hour while the receiver refuses
    connections; when it is back, every event arrives, in order, once per id."""
    await setup.subscribe(receiver.url)
    await receiver.stop()
    t0 = dt.datetime.now(dt.UTC)
    seqs: list[int] = []
    for minute in range(0, 61, 5):
        seqs += await setup.publish(2, conversation=uuid.uuid4())
        assert await run(setup, later(minute * 60, t0)) == 0
    await receiver.start()
    delivered = 0
    for step in range(10):
        delivered += await run(setup, later(7200 + step * 3600, t0))
    assert delivered == len(seqs)
    ids = [e["id"] for e in receiver.events()]
    assert ids == [f"evt_{s}" for s in seqs]
    assert len(set(ids)) == len(ids)


async def test_paused_after_the_retry_budget_nothing_dropped(
    client: Any, make_company: Any, receiver: Receiver
) -> None:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers, retry_hours=1)
    setup = Setup(client, company, headers)
    sub = await setup.subscribe(receiver.url, event_types=["test.*"])
    receiver.default = 500
    seqs = await setup.publish(3)
    t0 = dt.datetime.now(dt.UTC)
    await run(setup, t0)
    await run(setup, later(3 * 3600, t0))
    state = await setup.subscription(sub["id"])
    assert state["state"] == "paused"
    assert "failing since" in state["paused_reason"] and "HTTP 500" in state["paused_reason"]
    notices = await read_events(
        setup.services, company.tenant_id, after=0, types=["webhook.paused"]
    )
    assert len(notices) == 1 and notices[0].data["subscription_id"] == sub["id"]
    assert notices[0].data["reason"] == state["paused_reason"]

    receiver.default = 200
    await run(setup, later(10 * 3600, t0))
    assert receiver.received == []  # paused: nothing goes out
    resp = await client.patch(
        f"/api/v1/plugins/webhooks/subscriptions/{sub['id']}", json={"active": True},
        headers=headers,
    )
    assert (await resp.json())["state"] == "active"
    assert await run(setup) == 3
    assert [e["seq"] for e in receiver.events()] == seqs


async def test_a_worker_killed_mid_delivery_loses_nothing(
    setup: Setup, receiver: Receiver
) -> None:
    await setup.subscribe(receiver.url)
    seqs = await setup.publish(3)
    receiver.hold = asyncio.Event()
    t0 = dt.datetime.now(dt.UTC)
    worker = asyncio.create_task(run(setup, t0))
    await asyncio.wait_for(receiver.got_request.wait(), 10)
    worker.cancel()  # killed after the POST left, before the cursor moved
    with pytest.raises(asyncio.CancelledError):
        await worker
    receiver.hold.set()
    await asyncio.sleep(0.1)
    receiver.hold = None
    assert await run(setup, later(5, t0)) == 0  # still leased by the dead worker
    assert await run(setup, later(delivery.LEASE_SECONDS + 1, t0)) == 3
    last = receiver.received[-1]
    assert [e["seq"] for e in last.events] == seqs  # delivered again, in order
    assert {e["seq"] for e in receiver.events()} == set(seqs)


async def test_delivery_rechecks_the_target_every_time(
    setup: Setup, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = await setup.subscribe(receiver.url)
    await setup.publish(1)
    monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOWED_NETWORKS", "")  # the operator withdraws it
    assert await run(setup) == 0
    assert receiver.received == [] and not receiver.got_request.is_set()
    state = await setup.subscription(sub["id"])
    assert state["state"] == "failing" and state["last_error"].startswith("refused:")


async def test_the_resolver_refuses_names_that_resolve_inside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = GuardedResolver()
    try:
        monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOWED_NETWORKS", "")
        with pytest.raises(TargetRefused):
            await resolver.resolve("localhost", 80)
        with pytest.raises(TargetRefused):
            await resolver.resolve("metadata.google.internal", 80)
        monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.1/32")
        answers = await resolver.resolve("localhost", 80)
        assert {a["host"] for a in answers} == {"127.0.0.1"}
    finally:
        await resolver.close()


async def test_one_company_never_gets_anothers_events(
    setup: Setup, receiver: Receiver, make_company: Any
) -> None:
    other = await make_company()
    other_headers = await login(setup.client, other.owner)
    await enable(setup.client, other_headers)
    other_setup = Setup(setup.client, other, other_headers)
    second = Receiver(port=free_port())
    await second.start()
    try:
        await setup.subscribe(receiver.url)
        await other_setup.subscribe(second.url)
        mine = await setup.publish(2)
        theirs = await other_setup.publish(3)
        await deliver_due(setup.services, tenants={setup.company.tenant_id, other.tenant_id})
        assert [e["seq"] for e in receiver.events()] == mine
        assert [e["seq"] for e in second.events()] == theirs
    finally:
        await second.stop()


async def test_a_rotated_secret_overlaps(setup: Setup, receiver: Receiver) -> None:
    sub = await setup.subscribe(receiver.url)
    resp = await setup.client.post(
        f"/api/v1/plugins/webhooks/subscriptions/{sub['id']}/rotate-secret",
        headers=setup.headers,
    )
    new = (await resp.json())["secret"]
    await setup.publish(1)
    await run(setup)
    (item,) = receiver.received
    header = item.headers[signing.HEADER]
    assert header.count("v1=") == 2
    assert signing.verify(new, header, item.body)
    assert signing.verify(sub["secret"], header, item.body)
