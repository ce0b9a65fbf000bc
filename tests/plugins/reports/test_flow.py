"""A conversation served through the real app (webhook in, accept, reply, close) lands in
the reports: list, CSV, aggregates, dashboard — and only for its own company and agent."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings
from guiche_reports.metrics import measure

from guiche.plugin import conversation_timeline
from tests.conftest import login
from tests.core.routing.helpers import add_agent

from .conftest import API, add_tabulation, enable_reports, send_text, services_of_client, settle


async def served(client: Any, start_chat: Any, company: Any = None) -> tuple[Any, uuid.UUID]:
    """A chat the owner accepts, answers and closes; returns (chat, tabulation)."""
    chat = await start_chat(company=company)
    await enable_reports(client, chat.headers)
    resp = await client.post(
        f"/api/v1/conversations/{chat.conversation_id}/accept", headers=chat.headers
    )
    assert resp.status == 200, await resp.text()
    resp = await send_text(client, chat)
    assert resp.status in (200, 201, 202), await resp.text()
    tabulation = await add_tabulation(chat.company.tenant_id)
    resp = await client.post(
        f"/api/v1/conversations/{chat.conversation_id}/close",
        json={"tabulation_id": str(tabulation)},
        headers=chat.headers,
    )
    assert resp.status == 200, await resp.text()
    await settle(client)
    return chat, tabulation


async def test_a_closed_conversation_is_measured_on_close(client: Any, start_chat: Any) -> None:
    chat, tabulation = await served(client, start_chat)
    resp = await client.get(f"{API}/conversations", headers=chat.headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["next_cursor"] is None
    [row] = body["items"]
    assert row["conversation_id"] == str(chat.conversation_id)
    assert row["agent_id"] == str(chat.company.owner.user_id)
    assert row["tabulation_id"] == str(tabulation)
    assert (row["messages_in"], row["messages_out"]) == (1, 1)
    assert row["waiting_s"] is not None and row["handling_s"] is not None
    assert row["sla_met"] is True

    # the row is exactly the definitions applied to core's timeline of the conversation
    services = services_of_client(client)
    timeline = await conversation_timeline(services, chat.company.tenant_id, chat.conversation_id)
    settings = ReportsSettings()
    expected = measure(timeline, Calendar.of(settings), settings.sla_target)
    assert expected is not None
    for name, value in expected.times.items():
        assert row[name] == value


async def test_csv_export_with_bom_and_semicolons(client: Any, start_chat: Any) -> None:
    chat, _ = await served(client, start_chat)
    resp = await client.get(
        f"{API}/conversations.csv", params={"bom": "true", "delimiter": ";"}, headers=chat.headers
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/csv")
    raw = await resp.read()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    header, lines = rows[0], rows[1:]
    assert header[0] == "conversation_id" and "waiting_seconds" in header
    assert len(lines) == 1 and lines[0][0] == str(chat.conversation_id)
    line = dict(zip(header, lines[0], strict=True))
    assert line["agent"] == "Owner" and line["tabulation"] == "Resolvido"
    assert len(line["closed_at"]) == len("2026-12-06 10:00:00")  # local, spreadsheet-friendly

    plain = await client.get(f"{API}/conversations.csv", headers=chat.headers)
    text = (await plain.read()).decode()
    assert not text.startswith("\ufeff") and text.splitlines()[0].count(",") == len(header) - 1


async def test_aggregates_and_dashboard_count_the_close(client: Any, start_chat: Any) -> None:
    chat, _ = await served(client, start_chat)
    resp = await client.get(f"{API}/aggregates", params={"by": "agent"}, headers=chat.headers)
    assert resp.status == 200, await resp.text()
    [item] = (await resp.json())["items"]
    assert item["key"] == str(chat.company.owner.user_id)
    assert item["conversations"] == 1 and item["sla_pct"] == 100.0
    assert item["messages_in"] == 1 and item["messages_out"] == 1

    resp = await client.get(f"{API}/dashboard", headers=chat.headers)
    assert resp.status == 200, await resp.text()
    board = await resp.json()
    assert board["today_conversations"] == 1
    assert board["mean_duration_seconds"] is not None
    assert board["queue"]["waiting"] == 0


async def test_another_company_and_an_agent_see_nothing_of_it(
    client: Any, start_chat: Any, make_company: Any
) -> None:
    chat, _ = await served(client, start_chat)
    other = await make_company()
    other_headers = await login(client, other.owner)
    await enable_reports(client, other_headers)
    for path in ("conversations", "aggregates?by=total", "conversations.csv"):
        resp = await client.get(f"{API}/{path}", headers=other_headers)
        assert resp.status == 200
        if path.endswith("csv"):
            assert len((await resp.text()).splitlines()) == 1  # the header only
        else:
            assert (await resp.json())["items"] == []

    agent = await add_agent(chat.company)
    agent_headers = await login(client, agent)
    resp = await client.get(
        f"{API}/conversations",
        params={"agent_id": str(chat.company.owner.user_id)},
        headers=agent_headers,
    )
    assert (await resp.json())["items"] == []  # an agent sees their own figures only

    # a company that has not enabled the plugin does not have the routes at all
    third = await make_company()
    resp = await client.get(f"{API}/conversations", headers=await login(client, third.owner))
    assert resp.status == 404


async def test_layout_saved_per_person_and_viewers_read_only(client: Any, start_chat: Any) -> None:
    chat = await start_chat()
    await enable_reports(client, chat.headers)
    resp = await client.get(f"{API}/dashboard/layout", headers=chat.headers)
    assert (await resp.json())["saved"] is False
    layout = {"widgets": [{"id": "w1", "type": "mean_waiting", "x": 0, "y": 0, "w": 4, "h": 2}]}
    resp = await client.put(f"{API}/dashboard/layout", json=layout, headers=chat.headers)
    assert resp.status == 200, await resp.text()
    resp = await client.get(f"{API}/dashboard/layout", headers=chat.headers)
    saved = await resp.json()
    assert saved["saved"] is True and saved["layout"]["widgets"][0]["id"] == "w1"

    viewer = await chat.company.add("viewer")
    viewer_headers = await login(client, viewer)
    resp = await client.get(f"{API}/dashboard/layout", headers=viewer_headers)
    assert (await resp.json())["saved"] is False  # layouts are per person
    resp = await client.put(f"{API}/dashboard/layout", json=layout, headers=viewer_headers)
    assert resp.status == 403
    resp = await client.put(
        f"{API}/dashboard/layout", json={"widgets": [{"id": "x"}]}, headers=chat.headers
    )
    assert resp.status == 422
    assert "error" in await resp.json()
