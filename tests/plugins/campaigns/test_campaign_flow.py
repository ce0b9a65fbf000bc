"""A CSV campaign end to end through the API: create, import, start, watch, report."""

from __future__ import annotations

import uuid
from collections import Counter

from tests.conftest import pool_plan_cache_modes, published_events

from .conftest import BASE, csv_of, ledger_rows, services_of_client, settle


async def test_a_csv_campaign_sends_each_target_once_and_reports(client, make_shop, fake_plugin):
    shop = await make_shop()
    campaign = await shop.create(client)
    assert campaign["status"] == "draft"
    text = csv_of(12) + "not a phone,Fulano,X\n(11) 910000000,Repetido,Y\n"
    added = await shop.csv(client, campaign["id"], text)
    assert (added["rows"], added["added"], added["duplicates"], added["invalid"]) == (14, 12, 1, 1)
    assert added["errors"][0]["line"] == 14

    with published_events(services_of_client(client).bus) as seen:
        started = await shop.act(client, campaign["id"], "start")
        assert started["status"] == "running"
        await settle(client)

    sent = fake_plugin.provider.sent
    assert len(sent) == 12
    assert len({m.to.phone for m in sent}) == 12
    first = next(m for m in sent if m.to.phone == "+5511910000003")
    assert first.text == "Olá Cliente! CUPOM3"

    body = await shop.get(client, f"campaigns/{campaign['id']}")
    assert body["status"] == "finished"
    assert body["counts"]["sent"] == 12 and body["counts"]["pending"] == 0
    rows = await ledger_rows(campaign["id"])
    assert len({r["message_id"] for r in rows}) == 12
    kinds = Counter(e.type for e in seen)
    assert kinds["campaign.finished"] == 1 and kinds["campaign.progress"] >= 1
    finished = next(e for e in seen if e.type == "campaign.finished")
    # Finished = every target handed to core's outbox; the provider's "sent" for the
    # last ones may land just after (their ledger rows say `queued` until then).
    at_finish = finished.data["counts"]
    assert at_finish["pending"] == at_finish["sending"] == 0
    assert at_finish["queued"] + at_finish["sent"] == 12

    report = await shop.get(client, f"campaigns/{campaign['id']}/report")
    assert report["counts"]["sent"] == 12 and report["success_rate"] == 1.0
    assert report["daily"][0]["sent"] == 12
    exported = await shop.get(client, f"campaigns/{campaign['id']}/ledger.csv")
    assert exported.count("\n") == 13 and "+5511910000003" in exported
    page = await shop.get(client, f"campaigns/{campaign['id']}/ledger?state=sent&limit=5")
    assert len(page["items"]) == 5 and page["next_after"] is not None


async def test_targets_from_contacts_and_crud(client, make_shop, fake_plugin):
    shop = await make_shop()
    ids = []
    for i in range(3):
        resp = await client.post(
            "/api/v1/contacts",
            json={"name": f"Ana {i}", "phone": f"+55119876500{i:02d}"},
            headers=shop.headers,
        )
        ids.append((await resp.json())["id"])
    campaign = await shop.create(client, content={"type": "text", "text": "Oi {{name}}"})
    resp = await client.post(
        f"{BASE}/campaigns/{campaign['id']}/targets",
        json={"contact_ids": [*ids, ids[0]]},
        headers=shop.headers,
    )
    assert (await resp.json())["added"] == 3
    resp = await client.patch(
        f"{BASE}/campaigns/{campaign['id']}", json={"name": "Renamed"}, headers=shop.headers
    )
    assert (await resp.json())["name"] == "Renamed"
    listed = await shop.get(client, "campaigns")
    assert [c["id"] for c in listed["items"]] == [campaign["id"]]
    await shop.act(client, campaign["id"], "start")
    await settle(client)
    assert sorted(m.text for m in fake_plugin.provider.sent) == ["Oi Ana 0", "Oi Ana 1", "Oi Ana 2"]
    rows = await ledger_rows(campaign["id"])
    assert {str(r["contact"]) for r in rows} == set(ids)
    resp = await client.patch(
        f"{BASE}/campaigns/{campaign['id']}", json={"name": "x"}, headers=shop.headers
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "invalid_campaign_state"
    resp = await client.delete(f"{BASE}/campaigns/{campaign['id']}", headers=shop.headers)
    assert resp.status == 204
    await shop.get(client, f"campaigns/{campaign['id']}", status=404)


async def test_validation_errors_are_json(client, make_shop):
    shop = await make_shop()
    resp = await client.post(
        f"{BASE}/campaigns",
        json={"name": "x", "channel_id": str(uuid.uuid4()), "content": {"type": "text"}},
        headers=shop.headers,
    )
    assert resp.status == 422
    assert "error" in await resp.json()
    resp = await client.post(
        f"{BASE}/campaigns",
        json={
            "name": "x",
            "channel_id": str(uuid.uuid4()),
            "content": {"type": "text", "text": "oi"},
        },
        headers=shop.headers,
    )
    assert resp.status == 422
    campaign = await shop.create(client)
    resp = await client.post(
        f"{BASE}/campaigns/{campaign['id']}/targets/import",
        data=b"nome,cidade\nAna,BH\n",
        headers={**shop.headers, "Content-Type": "text/csv"},
    )
    assert resp.status == 422
    await shop.act(client, campaign["id"], "resume", status=409)
    await shop.get(client, f"campaigns/{uuid.uuid4()}", status=404)
    await shop.get(client, "campaigns/not-a-uuid", status=404)


async def test_another_company_never_sees_or_touches_a_campaign(client, make_shop, fake_plugin):
    mine = await make_shop()
    theirs = await make_shop()
    campaign = await mine.create(client)
    await mine.csv(client, campaign["id"], csv_of(2))
    path = f"campaigns/{campaign['id']}"
    await theirs.get(client, path, status=404)
    await theirs.get(client, f"{path}/ledger", status=404)
    await theirs.get(client, f"{path}/report", status=404)
    await theirs.act(client, campaign["id"], "start", status=404)
    resp = await client.delete(f"{BASE}/{path}", headers=theirs.headers)
    assert resp.status == 404
    assert (await theirs.get(client, "campaigns"))["items"] == []
    # a campaign on another company's channel cannot be created
    resp = await client.post(
        f"{BASE}/campaigns",
        json={
            "name": "x",
            "channel_id": str(mine.channel.id),
            "content": {"type": "text", "text": "oi"},
        },
        headers=theirs.headers,
    )
    assert resp.status == 422
    await settle(client)
    assert fake_plugin.provider.sent == []


async def test_campaigns_are_listed_newest_first_by_pages(client, make_shop):
    shop = await make_shop()
    made = [(await shop.create(client, name=f"c{i}"))["id"] for i in range(3)]
    first = await shop.get(client, "campaigns?limit=2")
    assert [c["id"] for c in first["items"]] == made[:0:-1]
    second = await shop.get(client, f"campaigns?limit=2&cursor={first['next_cursor']}")
    assert [c["id"] for c in second["items"]] == made[:1]
    assert second["next_cursor"] is None
    await shop.get(client, "campaigns?cursor=nonsense", status=422)


async def test_a_csv_over_the_limit_is_refused_and_stores_nothing(client, make_shop, monkeypatch):
    from guiche_campaigns import targets

    monkeypatch.setattr(targets, "MAX_CSV_BYTES", 2000)
    shop = await make_shop()
    campaign = await shop.create(client)
    url = f"{BASE}/campaigns/{campaign['id']}/targets/import"
    headers = {**shop.headers, "Content-Type": "text/csv"}
    big = csv_of(200).encode()
    resp = await client.post(url, data=big, headers=headers)  # declared length: refused at once
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"

    async def chunked():  # no declared length: refused while streaming, nothing kept
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    resp = await client.post(url, data=chunked(), headers=headers)
    assert resp.status == 413
    assert await ledger_rows(campaign["id"]) == []
    assert (await shop.csv(client, campaign["id"], csv_of(5)))["added"] == 5


async def test_targets_from_a_contact_search_stay_in_the_company(client, make_shop):
    mine = await make_shop()
    theirs = await make_shop()
    for shop, name in ((mine, "Joana Prado"), (mine, "Joana Lima"), (theirs, "Joana Outra")):
        resp = await client.post(
            "/api/v1/contacts",
            json={"name": name, "phone": f"+55119{uuid.uuid4().int % 10**8:08d}"},
            headers=shop.headers,
        )
        assert resp.status == 201
    campaign = await mine.create(client)
    resp = await client.post(
        f"{BASE}/campaigns/{campaign['id']}/targets",
        json={"search": "Joana"},
        headers=mine.headers,
    )
    assert (await resp.json())["added"] == 2
    names = sorted(r["name"] for r in await ledger_rows(campaign["id"]))
    assert names == ["Joana Lima", "Joana Prado"]
    resp = await client.post(
        f"{BASE}/campaigns/{campaign['id']}/targets", json={}, headers=mine.headers
    )
    assert resp.status == 422


async def test_targets_are_written_with_generic_plans_in_their_transaction_only(
    client, make_shop, monkeypatch
):
    """A target batch's rows each run two foreign-key checks; the import's transaction
    lets Postgres keep their plans (`use_generic_plans`: 100,000 targets 3.0 s against
    4.8 s re-planned per row) and the pooled connection goes back with the pool's mode."""
    from guiche_campaigns import targets

    modes: list[str] = []
    real = targets.store_batch

    async def spying(conn, campaign, batch, added):
        modes.append(await conn.fetchval("SHOW plan_cache_mode"))
        await real(conn, campaign, batch, added)

    monkeypatch.setattr(targets, "store_batch", spying)
    shop = await make_shop()
    campaign = await shop.create(client)

    assert (await shop.csv(client, campaign["id"], csv_of(5)))["added"] == 5
    assert modes and set(modes) == {"auto"}
    pool = services_of_client(client).db.pool
    assert await pool_plan_cache_modes(pool) == {"force_custom_plan"}
