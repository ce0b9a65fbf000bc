"""The CSV export streams: every row once, in blocks, in memory that does not grow with
the number of rows."""

from __future__ import annotations

import contextlib
import csv
import io
import tracemalloc
from typing import Any
from zoneinfo import ZoneInfo

from guiche_reports import listing

from tests.conftest import login
from tests.core.routing.helpers import sql

from .conftest import API, enable_reports, services_of_client

ROWS = 20_000


async def many_finished(tenant_id: Any, channel_id: Any, n: int) -> None:
    """`n` closed conversations and their metrics rows, written in two statements."""
    contact = await sql(
        "INSERT INTO contacts (tenant, phone, name) VALUES ({}, '+5511900000001', 'Ana')"
        " RETURNING id",
        tenant_id,
    )
    await sql(
        "INSERT INTO conversations (tenant, contact, channel, status, opened_at, closed_at)"
        " SELECT {}, {}, {}, 'CLOSED', t - interval '20 minutes', t"
        " FROM generate_series(1, {}) AS i,"
        " LATERAL (SELECT timestamptz '2026-11-02 12:00Z' + i * interval '1 minute' AS t) x",
        tenant_id,
        contact[0]["id"],
        channel_id,
        n,
    )
    await sql(
        "INSERT INTO reports_conversations (tenant, conversation, contact, channel, channel_type,"
        " opened_at, closed_at, day, hour, messages_in, messages_out, waiting_s, duration_s,"
        " sla_met)"
        " SELECT tenant, id, contact, channel, 'fake', opened_at, closed_at,"
        " (closed_at AT TIME ZONE 'America/Sao_Paulo')::date,"
        " extract(hour FROM closed_at AT TIME ZONE 'America/Sao_Paulo'), 3, 2, 61.5, 1200, true"
        " FROM conversations WHERE tenant = {}",
        tenant_id,
    )


async def test_export_streams_every_row_in_flat_memory(
    client: Any, make_company: Any, make_channel: Any
) -> None:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable_reports(client, headers)
    channel = await make_channel(company.tenant_id)
    await many_finished(company.tenant_id, channel.id, ROWS)

    resp = await client.get(f"{API}/conversations.csv", params={"delimiter": ";"}, headers=headers)
    assert resp.status == 200
    chunks = 0
    body = io.BytesIO()
    async for chunk in resp.content.iter_any():
        chunks += 1
        body.write(chunk)
    rows = list(csv.reader(io.StringIO(body.getvalue().decode()), delimiter=";"))
    assert len(rows) == ROWS + 1
    assert len({r[0] for r in rows[1:]}) == ROWS
    header = rows[0]
    first = dict(zip(header, rows[1], strict=True))
    assert first["waiting_seconds"] == "61,5"  # decimal comma with `;`
    assert first["closed_at"] == "2026-11-16 06:20:00"  # São Paulo time of the last close
    assert chunks > 1

    # the generator holds one block at a time: its peak does not follow the row count
    services = services_of_client(client)
    query = listing.Query(company.tenant_id, None, None, {})
    zone = ZoneInfo("America/Sao_Paulo")

    async def peak(limit_rows: int) -> tuple[int, int]:
        total = 0
        tracemalloc.start()
        try:
            chunks = listing.csv_chunks(services, query, {}, zone, block=500)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    total += len(chunk)
                    if total > limit_rows * 100:
                        break
            return total, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small_total, small_peak = await peak(2_000)
    full_total, full_peak = await peak(ROWS)
    assert full_total > 5 * small_total
    assert full_peak < 2 * small_peak + 512 * 1024
