"""Rollups against raw rows: many conversations with hand-written histories, measured by the
catch-up task, then every aggregate compared with the same figure computed from the
metrics rows; plus pagination, reopen, rebuild and the live dashboard event."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import random
import uuid
from collections import defaultdict
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import guiche_reports
import pytest
from guiche_reports import aggregates, dashboard, histogram, store
from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings
from guiche_reports.visibility import Visibility

from tests.conftest import login
from tests.core.routing.helpers import add_department, join, sql

from .conftest import API, add_tabulation, enable_reports, history, services_of_client, settle

SP = ZoneInfo("America/Sao_Paulo")
TIMES = ("waiting", "first_response", "handling", "duration")


def nearest_rank(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


async def scene(
    client: Any,
    make_company: Any,
    make_channel: Any,
    n: int = 60,
    hours: int = 72,
    base: dt.datetime = dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC),
) -> Any:
    """A company with 3 agents, 2 departments, 2 tabulations and `n` finished conversations
    over `hours` (three days; some transferred, some reopened), written as core would have."""
    company = await make_company()
    headers = await login(client, company.owner)
    await enable_reports(client, headers, sla_first_response_seconds=300)
    agents = [(await company.add("agent")).user_id for _ in range(3)]
    depts = [await add_department(company.tenant_id) for _ in range(2)]
    tabs = [await add_tabulation(company.tenant_id, name) for name in ("Venda", "Dúvida")]
    channel = await make_channel(company.tenant_id)
    rng = random.Random(18)
    for i in range(n):
        agent = rng.choice(agents)
        start = base + dt.timedelta(hours=rng.randrange(0, hours), minutes=rng.randrange(60))
        wait = rng.randrange(0, 30)
        reply = wait + rng.randrange(1, 20)
        end = reply + rng.randrange(1, 90)
        steps: list[Any] = [
            (0, "opened", ("PENDING", None)),
            (0, "in", None),
            (wait, "assigned", ("ACTIVE", agent)),
            (reply, "out", agent),
        ]
        if i % 4 == 0:
            steps += [(reply + 1, "in", None), (reply + 2, "out", None)]  # a bot's answer
        steps.append((end, "closed", ("CLOSED", agent)))
        if i % 7 == 0:  # reopened later the same day
            steps += [
                (end + 30, "reopened", ("PENDING", None)),
                (end + 30, "in", None),
                (end + 35, "assigned", ("ACTIVE", agent)),
                (end + 40, "out", agent),
                (end + 50, "closed", ("CLOSED", agent)),
            ]
        await history(
            company.tenant_id,
            channel.id,
            start,
            steps,
            department_id=depts[i % 2],
            tabulation_id=tabs[i % 3 % 2],
        )
    return company, headers


async def raw_rows(tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    return await sql("SELECT * FROM reports_conversations WHERE tenant = {}", tenant_id)


def assert_equal_to_raw(
    items: list[dict[str, Any]], rows: list[dict[str, Any]], by: str, percentiles: bool = True
) -> None:
    """Every group's figures against the same figures computed from the metrics rows:
    counts exact, means up to float rounding, p50/p90 the middle of the exact value's 2%
    bucket."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        value = None if by == "total" else r[by]
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        groups[value].append(r)
    by_key = {item["key"]: item for item in items}
    assert set(by_key) == set(groups), by
    for key, members in groups.items():
        item = by_key[key]
        assert item["conversations"] == len(members)
        assert item["messages_in"] == sum(r["messages_in"] for r in members)
        assert item["messages_out"] == sum(r["messages_out"] for r in members)
        assert item["transfers"] == sum(r["transfers"] for r in members)
        assert item["reopened"] == sum(1 for r in members if r["reopens"])
        counted = [r for r in members if r["sla_met"] is not None]
        met = sum(1 for r in counted if r["sla_met"])
        assert item["sla_pct"] == (100.0 * (met / len(counted)) if counted else None)
        responses = sum(r["response_count"] for r in members)
        assert item["agent_response"]["count"] == responses
        for name in TIMES:
            for variant, suffix in ((name, "_s"), (f"{name}_business", "_bs")):
                values = [r[name + suffix] for r in members if r[name + suffix] is not None]
                figures = item[variant]
                assert figures["count"] == len(values)
                if values:
                    assert math.isclose(figures["mean"], sum(values) / len(values))
                for fraction, label in ((0.5, "p50"), (0.9, "p90")):
                    exact = nearest_rank(values, fraction)
                    if exact is None or not percentiles:
                        assert figures[label] is None
                    else:  # the middle of the exact value's 2% bucket
                        assert abs(figures[label] - exact) <= 0.011 * exact + 0.5


async def test_rollups_equal_the_raw_rows(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    company, headers = await scene(client, make_company, make_channel)
    services = services_of_client(client)
    assert await guiche_reports.catch_up(services) >= 60
    rows = await raw_rows(company.tenant_id)
    assert len(rows) == 60
    assert sum(1 for r in rows if r["reopens"]) == len(range(0, 60, 7))

    for by, column in (("agent", "agent"), ("department", "department"), ("day", "day")):
        resp = await client.get(
            f"{API}/aggregates",
            params={"by": by, "from": "2026-11-01", "to": "2026-11-30"},
            headers=headers,
        )
        assert resp.status == 200, await resp.text()
        items = {item["key"]: item for item in (await resp.json())["items"]}
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            value = r[column]
            groups[value.isoformat() if isinstance(value, dt.date) else str(value)].append(r)
        assert set(items) == set(groups)
        for key, members in groups.items():
            item = items[key]
            assert item["conversations"] == len(members)
            assert item["messages_in"] == sum(r["messages_in"] for r in members)
            assert item["messages_out"] == sum(r["messages_out"] for r in members)
            assert item["reopened"] == sum(1 for r in members if r["reopens"])
            counted = [r for r in members if r["sla_met"] is not None]
            met = sum(1 for r in counted if r["sla_met"])
            assert item["sla_pct"] == (100.0 * met / len(counted) if counted else None)
            for name in TIMES:
                values = [r[f"{name}_s"] for r in members if r[f"{name}_s"] is not None]
                figures = item[name]
                assert figures["count"] == len(values)
                if values:
                    assert math.isclose(figures["mean"], sum(values) / len(values))
                for fraction, label in ((0.5, "p50"), (0.9, "p90")):
                    exact = nearest_rank(values, fraction)
                    if exact is None:
                        assert figures[label] is None
                    else:  # the middle of the exact value's 2% bucket
                        assert abs(figures[label] - exact) <= 0.011 * exact + 0.5

    # without percentiles: the same counts and means, p50/p90 left out
    resp = await client.get(
        f"{API}/aggregates",
        params={"by": "total", "from": "2026-11-01", "to": "2026-11-30", "percentiles": "false"},
        headers=headers,
    )
    [total] = (await resp.json())["items"]
    assert total["conversations"] == 60 and total["waiting"]["p50"] is None
    waits = [r["waiting_s"] for r in rows if r["waiting_s"] is not None]
    assert math.isclose(total["waiting"]["mean"], sum(waits) / len(waits))

    # a day's rows are dated in the company's zone
    for r in rows:
        local = r["closed_at"].astimezone(SP)
        assert (r["day"], r["hour"]) == (local.date(), local.hour)

    # catching up again changes nothing
    before = await sql(
        "SELECT sum(conversations) AS n FROM reports_hourly WHERE tenant = {}", company.tenant_id
    )
    await guiche_reports.catch_up(services)
    resp = await client.post(f"{API}/rebuild", headers=headers)
    assert resp.status == 202
    await settle(client)
    await guiche_reports.catch_up(services)
    after = await sql(
        "SELECT sum(conversations) AS n FROM reports_hourly WHERE tenant = {}", company.tenant_id
    )
    assert before == after == [{"n": 60}]


async def test_list_sorts_and_pages_without_gaps(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    _, headers = await scene(client, make_company, make_channel, n=23)
    await guiche_reports.catch_up(services_of_client(client))
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"sort": "-duration", "limit": "5", **({"cursor": cursor} if cursor else {})}
        resp = await client.get(f"{API}/conversations", params=params, headers=headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 23 == len({r["conversation_id"] for r in seen})
    durations = [r["duration_s"] for r in seen]
    assert durations == sorted(durations, reverse=True)

    agent = seen[0]["agent_id"]
    resp = await client.get(f"{API}/conversations", params={"agent_id": agent}, headers=headers)
    mine = (await resp.json())["items"]
    assert mine and all(r["agent_id"] == agent for r in mine)

    resp = await client.get(f"{API}/conversations", params={"cursor": "nope"}, headers=headers)
    assert resp.status == 422 and "error" in await resp.json()
    resp = await client.get(
        f"{API}/conversations", params={"from": "2026-11-05", "to": "2026-11-01"}, headers=headers
    )
    assert resp.status == 422


async def test_reopen_takes_the_row_out_until_it_closes_again(client: Any, start_chat: Any) -> None:
    from .test_flow import served

    chat, tabulation = await served(client, start_chat)
    base = f"/api/v1/conversations/{chat.conversation_id}"
    resp = await client.post(f"{base}/reopen", headers=chat.headers)
    assert resp.status == 200, await resp.text()
    await settle(client)
    resp = await client.get(f"{API}/conversations", headers=chat.headers)
    assert (await resp.json())["items"] == []
    resp = await client.get(f"{API}/aggregates", params={"by": "total"}, headers=chat.headers)
    assert (await resp.json())["items"] == []

    await client.post(f"{base}/accept", headers=chat.headers)
    resp = await client.post(
        f"{base}/close", json={"tabulation_id": str(tabulation)}, headers=chat.headers
    )
    assert resp.status == 200, await resp.text()
    await settle(client)
    resp = await client.get(f"{API}/conversations", headers=chat.headers)
    [row] = (await resp.json())["items"]
    assert row["reopens"] == 1


async def test_dashboard_updated_at_most_once_per_run(client: Any, start_chat: Any) -> None:
    from .test_flow import served

    chat, _ = await served(client, start_chat)  # its close marked the company changed
    services = services_of_client(client)
    assert await guiche_reports.publish_dashboards(services) >= 1
    assert await dashboard.publish_changed(services, [chat.company.tenant_id]) == 0
    events = await sql(
        "SELECT data FROM events WHERE tenant = {} AND type = 'dashboard.updated'",
        chat.company.tenant_id,
    )
    assert len(events) == 1


async def test_each_role_sees_its_scope(client: Any, make_company: Any, make_channel: Any) -> None:
    company, _ = await scene(client, make_company, make_channel, n=20)
    await guiche_reports.catch_up(services_of_client(client))
    rows = await raw_rows(company.tenant_id)
    dept = rows[0]["department"]
    supervisor = await company.add("supervisor")
    await join(company.tenant_id, dept, supervisor.user_id)
    viewer = await company.add("viewer")

    async def seen(member: Any) -> tuple[set[str], int]:
        headers = await login(client, member)
        resp = await client.get(f"{API}/conversations", params={"limit": "500"}, headers=headers)
        ids = {r["conversation_id"] for r in (await resp.json())["items"]}
        resp = await client.get(
            f"{API}/aggregates",
            params={"by": "total", "from": "2026-11-01", "to": "2026-11-30"},
            headers=headers,
        )
        items = (await resp.json())["items"]
        return ids, (items[0]["conversations"] if items else 0)

    ids, total = await seen(supervisor)
    expected = {str(r["conversation"]) for r in rows if r["department"] == dept}
    assert ids == expected and total == len(expected)

    ids, total = await seen(viewer)
    assert len(ids) == total == 20

    member = await company.add("agent")
    await sql(
        "UPDATE reports_conversations SET agent = {} WHERE tenant = {} AND conversation = {}",
        member.user_id,
        company.tenant_id,
        rows[0]["conversation"],
    )
    ids, _ = await seen(member)  # an agent: their own conversation only
    assert ids == {str(rows[0]["conversation"])}


async def test_business_hours_from_settings_and_a_rebuild(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    """A customer writes on Friday 17:50 in São Paulo and is answered on Monday 08:05: 15
    business minutes once the company sets its hours (after a rebuild), 62 h 15 min on the
    wall clock either way."""
    company = await make_company()
    headers = await login(client, company.owner)
    await enable_reports(client, headers)
    agent = (await company.add("agent")).user_id
    channel = await make_channel(company.tenant_id)
    friday = dt.datetime(2026, 11, 6, 17, 50, tzinfo=SP)
    answered = (dt.datetime(2026, 11, 9, 8, 5, tzinfo=SP) - friday).total_seconds() / 60
    await history(
        company.tenant_id,
        channel.id,
        friday.astimezone(dt.UTC),
        [
            (0, "opened", ("PENDING", None)),
            (0, "in", None),
            (answered, "assigned", ("ACTIVE", agent)),
            (answered, "out", agent),
            (answered + 10, "closed", ("CLOSED", agent)),
        ],
    )
    services = services_of_client(client)
    await guiche_reports.catch_up(services)
    [row] = await raw_rows(company.tenant_id)
    assert row["first_response_s"] == row["first_response_bs"] == answered * 60

    hours = [{"start": "08:00", "end": "18:00"}]
    await enable_reports(
        client, headers, business_hours={d: hours for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    resp = await client.post(f"{API}/rebuild", headers=headers)
    assert resp.status == 202
    await settle(client)
    await guiche_reports.catch_up(services)
    [row] = await raw_rows(company.tenant_id)
    assert row["first_response_s"] == answered * 60
    assert row["first_response_bs"] == 15 * 60
    resp = await client.get(
        f"{API}/aggregates",
        params={"by": "total", "from": "2026-11-01", "to": "2026-11-30"},
        headers=headers,
    )
    [total] = (await resp.json())["items"]
    assert total["first_response_business"]["mean"] == 15 * 60
    assert total["sla_pct"] == 100.0  # judged in business hours: 900 s <= the 900 s target


@pytest.mark.parametrize(
    "client_overrides", [{"redis_url": os.environ.get("REDIS_URL")}], indirect=True
)
async def test_dashboard_changes_are_marked_in_redis(
    client: Any, make_company: Any, require_redis: str
) -> None:
    """With Redis, any process's hook marks the change and the scheduler's task sees it."""
    services = services_of_client(client)
    assert services.redis is not None
    company = await make_company()
    await dashboard.mark_changed(services, company.tenant_id)
    await dashboard.mark_changed(services, company.tenant_id)  # coalesced
    assert await dashboard.publish_changed(services, [company.tenant_id]) == 1
    assert await dashboard.publish_changed(services, [company.tenant_id]) == 0
    events = await sql(
        "SELECT count(*) AS n FROM events WHERE tenant = {} AND type = 'dashboard.updated'",
        company.tenant_id,
    )
    assert events == [{"n": 1}]


async def test_a_long_backfill_spans_runs_and_resumes_at_the_cursor(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    company, _ = await scene(client, make_company, make_channel, n=20)
    services = services_of_client(client)
    settings = ReportsSettings()
    done = [
        await store.catch_up(services, company.tenant_id, settings, batch=7, max_batches=2)
        for _ in range(3)
    ]
    assert done == [14, 6, 0]
    assert len(await raw_rows(company.tenant_id)) == 20


BY = ("day", "hour", "agent", "department", "channel", "tabulation", "total")


async def test_a_year_of_rollups_equals_the_raw_rows_by_every_grouping_and_scope(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    """80 conversations over ~400 days (blocks up to the top level, ranges cut mid-block):
    every grouping, unfiltered (day blocks), filtered on one dimension (its blocks), on two
    (pair blocks) and on three or four (the blocks keyed by all four ids), each equal to
    the raw rows and to the same question answered from the hourly rollups; by hour with a
    filter, from the hourly rollups."""
    company, headers = await scene(
        client,
        make_company,
        make_channel,
        n=80,
        hours=400 * 24,
        base=dt.datetime(2025, 10, 1, 12, tzinfo=dt.UTC),  # all before today: blocks built
    )
    services = services_of_client(client)
    await guiche_reports.catch_up(services)
    rows = await raw_rows(company.tenant_id)
    assert len(rows) == 80
    first, last = dt.date(2025, 10, 20), dt.date(2026, 10, 30)  # cuts the data at both ends
    inside = [r for r in rows if first <= r["day"] <= last]
    assert 0 < len(inside) < len(rows)
    one = inside[0]
    agent, dept = one["agent"], one["department"]
    channel, tab = one["channel"], one["tabulation"]
    scopes = {
        "everything": {},
        "one agent": {"agent_id": str(agent)},
        "agent and department": {"agent_id": str(agent), "department_id": str(dept)},
        "department and channel": {"department_id": str(dept), "channel_id": str(channel)},
        "channel and tabulation": {"channel_id": str(channel), "tabulation_id": str(tab)},
        "all four": {
            "agent_id": str(agent),
            "department_id": str(dept),
            "channel_id": str(channel),
            "tabulation_id": str(tab),
        },
    }
    for label, filters in scopes.items():
        chosen = [
            r for r in inside if all(str(r[k.removesuffix("_id")]) == v for k, v in filters.items())
        ]
        for by in BY:
            params = {"by": by, "from": first.isoformat(), "to": last.isoformat(), **filters}
            resp = await client.get(f"{API}/aggregates", params=params, headers=headers)
            assert resp.status == 200, await resp.text()
            items = (await resp.json())["items"]
            assert_equal_to_raw(items, chosen, by)
            scope = aggregates.Scope(
                company.tenant_id,
                first,
                last,
                {k.removesuffix("_id"): uuid.UUID(v) for k, v in filters.items()},
            )
            plan = aggregates.block_plan(scope, by)
            dims = set(scope.filters) | ({by} - {"day", "total"})
            if by == "hour" and scope.filters:
                assert plan is None, (label, by)  # the hour with another dimension
            else:  # the smallest kind keyed by every dimension asked about
                assert plan is not None and dims <= set(store.KINDS[plan.kind]), (label, by)
                smallest = min(len(n) for n in store.KINDS.values() if dims <= set(n))
                assert len(store.KINDS[plan.kind]) == smallest, (label, by)
            hourly = await aggregates._from_hourly(services, scope, by, True)
            assert [i["key"] for i in hourly] == [i["key"] for i in items], (label, by)
            for a, b in zip(hourly, items, strict=True):
                for name in TIMES:
                    assert a[name]["p50"] == b[name]["p50"] and a[name]["p90"] == b[name]["p90"]
                    assert a[name]["count"] == b[name]["count"]

    # a reopen takes a conversation out of its day and of every block above it
    gone = inside[0]
    await sql("UPDATE conversations SET status = 'ACTIVE' WHERE id = {}", gone["conversation"])
    await store.refresh(services, company.tenant_id, ReportsSettings(), [gone["conversation"]])
    params = {"by": "total", "from": first.isoformat(), "to": last.isoformat()}
    resp = await client.get(f"{API}/aggregates", params=params, headers=headers)
    [total] = (await resp.json())["items"]
    assert total["conversations"] == len(inside) - 1
    assert_equal_to_raw([total], [r for r in inside if r is not gone], "total")
    tops = await sql(
        "SELECT sum(conversations) AS n FROM reports_blocks WHERE tenant = {} AND dim = 0"
        " AND level = {}",
        company.tenant_id,
        store.MAX_LEVEL,
    )
    assert tops == [{"n": 79}]


async def test_a_supervisor_reads_department_agent_blocks_and_an_agent_their_own(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    """Own-or-my-departments is read from the department x agent blocks (with a filter on
    channel or tabulation, from the blocks keyed by all four ids; by hour, from the hourly
    rollups), an agent's own figures from the agent blocks: all equal to their rows."""
    company, _ = await scene(client, make_company, make_channel, n=30)
    await guiche_reports.catch_up(services_of_client(client))
    rows = await raw_rows(company.tenant_id)
    dept = rows[0]["department"]
    supervisor = await company.add("supervisor")
    await join(company.tenant_id, dept, supervisor.user_id)
    agent = rows[0]["agent"]
    await sql(
        "UPDATE reports_conversations SET agent = {} WHERE tenant = {} AND conversation = {}",
        supervisor.user_id,
        company.tenant_id,
        rows[-1]["conversation"],
    )
    await store.rebuild_day(services_of_client(client), company.tenant_id, rows[-1]["day"])
    rows = await raw_rows(company.tenant_id)
    mine = [r for r in rows if r["department"] == dept or r["agent"] == supervisor.user_id]
    headers = await login(client, supervisor)
    scoped = Visibility(
        all=False,
        user_id=supervisor.user_id,
        departments=frozenset({dept}),
        departments_in_full=True,
    )
    month = aggregates.Scope(company.tenant_id, dt.date(2026, 11, 1), dt.date(2026, 11, 30), {})
    assert aggregates.block_plan(replace(month, visible=scoped), "agent") == aggregates.BlockPlan(
        6, {}, own_or_departments=True
    )
    tab = rows[0]["tabulation"]
    for by in BY:
        params = {"by": by, "from": "2026-11-01", "to": "2026-11-30"}
        resp = await client.get(f"{API}/aggregates", params=params, headers=headers)
        assert_equal_to_raw((await resp.json())["items"], mine, by)
        resp = await client.get(
            f"{API}/aggregates", params={**params, "tabulation_id": str(tab)}, headers=headers
        )
        chosen = [r for r in mine if r["tabulation"] == tab]
        assert_equal_to_raw((await resp.json())["items"], chosen, by)
        resp = await client.get(
            f"{API}/aggregates", params={**params, "agent_id": str(agent)}, headers=headers
        )
        chosen = [r for r in mine if r["agent"] == agent]
        assert_equal_to_raw((await resp.json())["items"], chosen, by)

    member = await company.add("agent")  # takes over an agent's conversations
    await sql(
        "UPDATE reports_conversations SET agent = {} WHERE tenant = {} AND agent = {}",
        member.user_id,
        company.tenant_id,
        agent,
    )
    for day in {r["day"] for r in rows if r["agent"] == agent}:
        await store.rebuild_day(services_of_client(client), company.tenant_id, day)
    rows = await raw_rows(company.tenant_id)
    headers = await login(client, member)
    own = [r for r in rows if r["agent"] == member.user_id]
    assert own
    for by in BY:
        params = {"by": by, "from": "2026-11-01", "to": "2026-11-30"}
        resp = await client.get(f"{API}/aggregates", params=params, headers=headers)
        assert_equal_to_raw((await resp.json())["items"], own, by)
        resp = await client.get(
            f"{API}/aggregates", params={**params, "agent_id": str(uuid.uuid4())}, headers=headers
        )
        assert (await resp.json())["items"] == []


async def test_a_live_close_rebuilds_its_day_only_and_the_frontier_completes_its_blocks(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    """Closes of today (from the frontier on) rebuild today's rows only; aggregates read
    today from its level-0 rows until `advance` builds the blocks above it."""
    company, headers = await scene(client, make_company, make_channel, n=12)
    services = services_of_client(client)
    await guiche_reports.catch_up(services)  # past days measured, frontier moved to today
    settings = ReportsSettings()
    today = Calendar.of(settings).local(dt.datetime.now(dt.UTC)).date()
    [frontier] = await sql("SELECT day FROM reports_frontier WHERE tenant = {}", company.tenant_id)
    assert frontier["day"] == today

    async def above_today() -> int:
        found = await sql(
            "SELECT coalesce(sum(conversations), 0) AS n FROM reports_blocks WHERE tenant = {}"
            " AND dim = 0 AND level > 0 AND start <= {}"
            " AND start + (1 << level) > {}",
            company.tenant_id,
            today,
            today,
        )
        return int(found[0]["n"])

    before = await above_today()  # blocks holding today also hold past days
    agent = (await company.add("agent")).user_id
    channel = await make_channel(company.tenant_id)
    now = dt.datetime.now(dt.UTC)
    start = max(now - dt.timedelta(minutes=30), dt.datetime.combine(today, dt.time(), SP))
    minutes = (now - start).total_seconds() / 60 * 0.9
    await history(
        company.tenant_id,
        channel.id,
        start,
        [
            (0, "opened", ("PENDING", None)),
            (0, "in", None),
            (minutes / 3, "assigned", ("ACTIVE", agent)),
            (minutes / 2, "out", agent),
            (minutes, "closed", ("CLOSED", agent)),
        ],
    )
    await guiche_reports.catch_up(services)
    rows = await raw_rows(company.tenant_id)
    assert len(rows) == 13 and sum(1 for r in rows if r["day"] == today) >= 1

    async def check() -> None:
        for by in ("agent", "total", "day"):
            params = {"by": by, "from": "2026-11-01", "to": today.isoformat()}
            resp = await client.get(f"{API}/aggregates", params=params, headers=headers)
            assert_equal_to_raw((await resp.json())["items"], rows, by)

    assert await above_today() == before  # today's close touched no block above its day
    await check()
    assert await store.advance(services, company.tenant_id, today + dt.timedelta(days=1))
    live = sum(1 for r in rows if r["day"] == today)
    assert await above_today() == before + store.MAX_LEVEL * live  # one block per level
    await check()
    assert not await store.advance(services, company.tenant_id, today)  # never backwards


def test_packed_histograms_merge_by_addition_and_blocks_cover_a_range_exactly() -> None:
    rng = random.Random(3)
    merged: dict[int, int] = {}
    total = 0
    for _ in range(50):
        hist: dict[int, int] = {}
        for _ in range(rng.randrange(1, 40)):
            b = histogram.bucket(rng.expovariate(1 / 600))
            hist[b] = hist.get(b, 0) + 1
            merged[b] = merged.get(b, 0) + 1
        stored = histogram.encode(hist)
        assert histogram.encode_packed(histogram.packed(stored)) == stored
        total += histogram.packed(stored)
    assert histogram.encode_packed(total) == histogram.encode(merged)
    values = sorted(b for b, n in merged.items() for _ in range(n))
    for fraction in (0.01, 0.5, 0.9, 1.0):
        rank = values[max(1, math.ceil(fraction * len(values))) - 1]
        assert histogram.percentiles(total, (fraction,)) == [histogram.bucket_value(rank)]
    assert histogram.percentiles(0, (0.5, 0.9)) == [None, None]

    for first, days in (
        (dt.date(2026, 1, 1), 365),
        (dt.date(2026, 11, 7), 30),
        (dt.date(2026, 3, 3), 1),
    ):
        last = first + dt.timedelta(days=days - 1)
        blocks = store.blocks_of(first, last)
        covered = [
            start + dt.timedelta(days=i) for level, start in blocks for i in range(1 << level)
        ]
        assert covered == [first + dt.timedelta(days=i) for i in range(days)]
        assert all(store.block_start(start, level) == start for level, start in blocks)
        assert len(blocks) <= 2 * store.MAX_LEVEL


async def rollup_state(tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every hourly and block row of a company, in a stable order."""
    hourly = await sql(
        "SELECT * FROM reports_hourly WHERE tenant = {}"
        " ORDER BY day, hour, agent, department, channel, tabulation",
        tenant_id,
    )
    blocks = await sql(
        "SELECT * FROM reports_blocks WHERE tenant = {} ORDER BY level, start, dim, key", tenant_id
    )
    return hourly + blocks


def assert_same_rollups(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Equal row for row: counts and histograms exactly, float sums up to rounding."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for column, value in x.items():
            if isinstance(value, float):
                assert math.isclose(value, y[column], abs_tol=1e-6), column
            else:
                assert value == y[column], column


async def test_changes_update_their_groups_by_difference_equal_to_a_full_rebuild(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    """Rows stored, moved to another day and group, and deleted update only the groups
    they leave and enter: the rollups equal those rebuilt whole from the rows after each
    change; rollups that lack a row being taken out make its day rebuilt whole."""
    company, _ = await scene(client, make_company, make_channel, n=40)
    services = services_of_client(client)
    await guiche_reports.catch_up(services)  # every row added by difference
    tenant = company.tenant_id

    async def equal_to_full_rebuild() -> list[dict[str, Any]]:
        state = await rollup_state(tenant)
        days = {r["day"] for r in await raw_rows(tenant)} | {
            r["start"]
            for r in await sql(
                "SELECT start FROM reports_blocks WHERE tenant = {} AND level = 0", tenant
            )
        }
        await store.rebuild_days(services, tenant, days)
        assert_same_rollups(state, await rollup_state(tenant))
        return state

    await equal_to_full_rebuild()
    rows = await sql(
        f"SELECT {', '.join(store.METRIC_COLUMNS)} FROM reports_conversations"
        " WHERE tenant = {} ORDER BY closed_at",
        tenant,
    )
    first, second, third = rows[0], rows[1], rows[-1]
    moved = {
        **first,
        "day": third["day"],
        "hour": third["hour"],
        "agent": third["agent"],
        "tabulation": None,
    }
    alone = {**second, "agent": None, "department": None, "channel": None}  # new groups
    await store.store_rows(
        services,
        tenant,
        [tuple(r[c] for c in store.METRIC_COLUMNS) for r in (moved, alone)],
        [third["conversation"]],
    )
    assert len(await raw_rows(tenant)) == 39
    state = await equal_to_full_rebuild()
    lone = [r for r in state if r.get("dim") == 12 and r["key"] == f"|||{second['tabulation']}"]
    assert [r["conversations"] for r in lone if r["level"] == 0] == [1]

    # rollups missing a row (deleted by hand): the day is rebuilt from its rows
    await sql("DELETE FROM reports_hourly WHERE tenant = {} AND day = {}", tenant, second["day"])
    back = {**alone, "agent": second["agent"]}
    await store.store_rows(services, tenant, [tuple(back[c] for c in store.METRIC_COLUMNS)], [])
    day_rows = [r for r in await raw_rows(tenant) if r["day"] == second["day"]]
    [hourly] = await sql(
        "SELECT sum(conversations) AS n FROM reports_hourly WHERE tenant = {} AND day = {}",
        tenant,
        second["day"],
    )
    assert hourly["n"] == len(day_rows)
    await equal_to_full_rebuild()

    # concurrent changes (the same conversation twice, others moved across days and
    # blocks) serialise on their locks: the rollups equal a full rebuild
    rows = await sql(
        f"SELECT {', '.join(store.METRIC_COLUMNS)} FROM reports_conversations"
        " WHERE tenant = {} ORDER BY closed_at",
        tenant,
    )
    days = sorted({r["day"] for r in rows})
    changes = [
        {**r, "day": days[(i * 5) % len(days)], "agent": rows[-1 - i]["agent"]}
        for i, r in enumerate(rows[:12])
    ]
    changes.append({**changes[0], "tabulation": None})  # the first conversation again
    await asyncio.gather(
        *(
            store.store_rows(services, tenant, [tuple(c[k] for k in store.METRIC_COLUMNS)], [])
            for c in changes
        )
    )
    assert len(await raw_rows(tenant)) == 39
    await equal_to_full_rebuild()
