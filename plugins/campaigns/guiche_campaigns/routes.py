"""The campaigns API, under `/api/v1/plugins/campaigns/`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from guiche.plugin import (
    ApiError,
    Conflict,
    NotFound,
    RouteSpec,
    ValidationFailed,
    channel_facts,
    company_locale,
    endpoint,
    find_contacts,
    plugin_context,
    usage_totals,
    use_generic_plans,
)

from . import engine, store, targets
from .content import Content
from .optout import add_opt_outs, remove_opt_out
from .pacing import SendWindow
from .targets import from_contacts, import_csv, lines

READ = "campaigns.read"
MANAGE = "campaigns.manage"
TAGS = ("campaigns",)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    channel_id: uuid.UUID
    content: Content
    rate_per_minute: float = Field(20.0, gt=0, le=60_000)
    jitter: float = Field(0.2, ge=0, le=0.9)
    start_at: dt.datetime | None = None
    send_window: SendWindow | None = None
    daily_cap: int | None = Field(None, ge=1)


class CampaignPatch(_Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    content: Content | None = None
    rate_per_minute: float | None = Field(None, gt=0, le=60_000)
    jitter: float | None = Field(None, ge=0, le=0.9)
    start_at: dt.datetime | None = None
    send_window: SendWindow | None = None
    daily_cap: int | None = Field(None, ge=1)


class TargetsIn(_Body):
    contact_ids: list[uuid.UUID] | None = Field(None, max_length=10_000)
    search: str | None = Field(None, min_length=1, max_length=200)
    department_id: uuid.UUID | None = None
    limit: int = Field(100_000, ge=1, le=1_000_000)


class ListQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = None


class LedgerQuery(BaseModel):
    state: Literal[store.LEDGER_STATES] | None = None  # type: ignore[valid-type]
    run: int | None = Field(None, ge=1)
    after: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)


class OptOutsIn(_Body):
    channel_id: uuid.UUID
    phones: list[str] = Field(min_length=1, max_length=10_000)


def _id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["campaign_id"])
    except ValueError:
        raise NotFound("campaign not found", code="campaign_not_found") from None


async def _campaign(ctx: Any, campaign_id: uuid.UUID) -> Any:
    row = await ctx.services.db.pool.fetchrow(store.GET, campaign_id, ctx.tenant_id)
    if row is None:
        raise NotFound("campaign not found", code="campaign_not_found")
    return row


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": field, "message": message}])


def _state_error(row: Any, action: str) -> Conflict:
    return Conflict(
        f"cannot {action} a campaign that is {row['status']}",
        code="invalid_campaign_state",
        details={"status": row["status"]},
    )


@endpoint(MANAGE, body=CampaignIn, status=201, summary="Create a campaign (draft)", tags=TAGS)
async def create_campaign(request: web.Request, *, body: CampaignIn) -> dict[str, Any]:
    ctx = await plugin_context(request)
    pool = ctx.services.db.pool
    if await channel_facts(ctx.services, ctx.tenant_id, body.channel_id) is None:
        raise _invalid("channel_id", "channel not found")
    row = await pool.fetchrow(
        store.INSERT,
        ctx.tenant_id,
        body.name,
        body.channel_id,
        store.jsonb(body.content.model_dump(mode="json", exclude_none=True)),
        body.rate_per_minute,
        body.jitter,
        body.start_at,
        store.jsonb(body.send_window.model_dump(mode="json")) if body.send_window else None,
        body.daily_cap,
    )
    return store.campaign_out(row)


@endpoint(READ, query=ListQuery, summary="List campaigns, newest first", tags=TAGS)
async def list_campaigns(request: web.Request, *, query: ListQuery) -> dict[str, Any]:
    ctx = await plugin_context(request)
    at, after = None, None
    if query.cursor:
        try:
            micros, raw_id = query.cursor.split("_", 1)
            at, after = EPOCH + dt.timedelta(microseconds=int(micros)), uuid.UUID(raw_id)
        except (ValueError, OverflowError):
            raise _invalid("cursor", "invalid cursor") from None
    rows = await ctx.services.db.pool.fetch(store.LIST, ctx.tenant_id, at, after, query.limit)
    items = [store.campaign_out(row) for row in rows]
    last = rows[-1] if len(rows) == query.limit else None
    cursor = (
        f"{(last['created_at'] - EPOCH) // dt.timedelta(microseconds=1)}_{last['id']}"
        if last
        else None
    )
    return {"items": items, "next_cursor": cursor}


@endpoint(READ, summary="A campaign with its ledger counts", tags=TAGS)
async def get_campaign(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    out = store.campaign_out(row)
    out["counts"] = await engine.counts(ctx.services, row["id"], row["run"])
    return out


@endpoint(MANAGE, body=CampaignPatch, summary="Edit a draft, scheduled or paused campaign",
          tags=TAGS, errors=(409,))  # fmt: skip
async def patch_campaign(request: web.Request, *, body: CampaignPatch) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    if row["status"] not in ("draft", "scheduled", "paused"):
        raise _state_error(row, "edit")
    changes = body.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "content":
            values[key] = store.jsonb(body.content.model_dump(mode="json", exclude_none=True))
        elif key == "send_window":
            values[key] = store.jsonb(value)
        else:
            values[key] = value
    if values:
        sets = ", ".join(
            f"{key} = ${i + 3}{'::jsonb' if key in ('content', 'send_window') else ''}"
            for i, key in enumerate(values)
        )
        row = await ctx.services.db.pool.fetchrow(
            f"UPDATE campaigns SET {sets}, updated_at = now() WHERE id = $1 AND tenant = $2"
            f" RETURNING {store.COLUMNS}",
            row["id"],
            ctx.tenant_id,
            *values.values(),
        )
    return store.campaign_out(row)


@endpoint(MANAGE, status=204, summary="Delete a campaign that is not running", tags=TAGS,
          errors=(409,))  # fmt: skip
async def delete_campaign(request: web.Request) -> web.Response:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    done = await ctx.services.db.pool.execute(
        store.DELETE, row["id"], ctx.tenant_id, ["draft", "scheduled", "finished", "cancelled"]
    )
    if done.endswith(" 0"):
        raise _state_error(row, "delete")
    return web.Response(status=204)


@endpoint(MANAGE, body=TargetsIn, summary="Add targets from contacts (ids, search, department)",
          tags=TAGS, errors=(409,))  # fmt: skip
async def add_targets(request: web.Request, *, body: TargetsIn) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    if row["status"] in store.FINAL:
        raise _state_error(row, "add targets to")
    pool = ctx.services.db.pool
    if body.contact_ids is not None:
        contacts = await find_contacts(ctx.services, ctx.tenant_id, ids=body.contact_ids)
        missing = set(body.contact_ids) - {c.id for c in contacts}
        if missing:
            raise _invalid("contact_ids", f"{len(missing)} contacts not found")
    elif body.search is not None or body.department_id is not None:
        contacts = await find_contacts(
            ctx.services,
            ctx.tenant_id,
            search=body.search,
            department_id=body.department_id,
            limit=body.limit,
        )
    else:
        raise _invalid("contact_ids", "give contact_ids, search or department_id")
    async with pool.acquire() as conn, conn.transaction():
        await use_generic_plans(conn)  # each target's two foreign-key checks
        added = await from_contacts(conn, row, contacts)
    return added.out()


@endpoint(MANAGE, summary="Add targets from a CSV upload (text/csv body, streamed, 50 MB)",
          tags=TAGS, errors=(409, 413))  # fmt: skip
async def import_targets(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    if row["status"] in store.FINAL:
        raise _state_error(row, "add targets to")
    if request.content_length is not None and request.content_length > targets.MAX_CSV_BYTES:
        raise _too_large()
    locale = await company_locale(ctx.services, ctx.tenant_id)
    try:
        async with ctx.services.db.pool.acquire() as conn, conn.transaction():
            await use_generic_plans(conn)  # each target's two foreign-key checks
            added = await import_csv(conn, row, request.content, locale.region)
    except OverflowError:
        raise _too_large() from None
    except ValueError as exc:
        raise _invalid("file", str(exc)) from None
    return added.out()


class CsvTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


def _too_large() -> CsvTooLarge:
    return CsvTooLarge(
        f"the CSV is larger than {targets.MAX_CSV_BYTES} bytes",
        details={"max_bytes": targets.MAX_CSV_BYTES},
    )


async def _transition(
    request: web.Request, action: str, to: str, allowed: tuple[str, ...]
) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    if action == "start" and row["start_at"] and row["start_at"] > engine.clock():
        to = "scheduled"
    pool = ctx.services.db.pool
    done = await pool.fetchrow(store.SET_STATUS, row["id"], ctx.tenant_id, to, list(allowed))
    if done is None:
        raise _state_error(row, action)
    if to == "cancelled":
        await pool.execute(store.CANCEL_OPEN, row["id"], row["run"])
    await engine.announce(ctx.services, done, row["status"])
    if to == "running":
        await engine.kick(ctx.services, row["id"])
    out = store.campaign_out(done)
    out["counts"] = await engine.counts(ctx.services, row["id"], row["run"])
    return out


@endpoint(MANAGE, summary="Start (or schedule, with a future start_at) a draft campaign",
          tags=TAGS, errors=(409,))  # fmt: skip
async def start_campaign(request: web.Request) -> dict[str, Any]:
    return await _transition(request, "start", "running", ("draft",))


@endpoint(MANAGE, summary="Pause a running campaign (within a second)", tags=TAGS, errors=(409,))
async def pause_campaign(request: web.Request) -> dict[str, Any]:
    return await _transition(request, "pause", "paused", ("running", "scheduled"))


@endpoint(MANAGE, summary="Resume a paused campaign", tags=TAGS, errors=(409,))
async def resume_campaign(request: web.Request) -> dict[str, Any]:
    return await _transition(request, "resume", "running", ("paused",))


@endpoint(MANAGE, summary="Cancel a campaign; unsent targets become skipped", tags=TAGS,
          errors=(409,))  # fmt: skip
async def cancel_campaign(request: web.Request) -> dict[str, Any]:
    return await _transition(
        request, "cancel", "cancelled", ("draft", "scheduled", "running", "paused")
    )


@endpoint(MANAGE, summary="A follow-up run over this run's failed targets only", tags=TAGS,
          errors=(409,))  # fmt: skip
async def resend_failed(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    if row["status"] not in store.FINAL:
        raise _state_error(row, "resend the failed of")
    pool = ctx.services.db.pool
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchrow(
            f"SELECT {store.COLUMNS} FROM campaigns WHERE id = $1 AND tenant = $2 FOR UPDATE",
            row["id"],
            ctx.tenant_id,
        )
        if locked["status"] != row["status"] or locked["run"] != row["run"]:
            raise _state_error(locked, "resend the failed of")
        await use_generic_plans(conn)
        copied = await conn.execute(store.RESEND_FAILED, row["id"], ctx.tenant_id, row["run"] + 1)
        count = int(copied.split()[-1])
        if count == 0:
            raise Conflict("no failed targets to resend", code="nothing_to_resend")
        done = await conn.fetchrow(
            "UPDATE campaigns SET run = run + 1, status = 'running', finished_at = NULL,"
            f" updated_at = now() WHERE id = $1 RETURNING {store.COLUMNS}",
            row["id"],
        )
    await engine.announce(ctx.services, done, row["status"])
    await engine.kick(ctx.services, row["id"])
    out = store.campaign_out(done)
    out["counts"] = await engine.counts(ctx.services, row["id"], done["run"])
    return out


def _ledger_item(row: Any) -> dict[str, Any]:
    item = dict(row)
    item["variables"] = store.loads(item["variables"])
    item["reason"] = store.loads(item["reason"])
    return item


@endpoint(READ, query=LedgerQuery, summary="The per-recipient ledger, filterable", tags=TAGS)
async def ledger(request: web.Request, *, query: LedgerQuery) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    rows = await ctx.services.db.pool.fetch(
        store.LEDGER, row["id"], ctx.tenant_id, query.run, query.state, query.after, query.limit
    )
    items = [_ledger_item(r) for r in rows]
    after = rows[-1]["seq"] if len(rows) == query.limit else None
    return {"items": items, "next_after": after}


CSV_FIELDS = ("run", "phone", "name", "state", "reason", "message_id", "attempts", "sent_at",
              "opted_out_at", "updated_at")  # fmt: skip


@endpoint(READ, query=LedgerQuery, summary="The ledger as CSV", tags=TAGS, content_type="text/csv")
async def ledger_csv(request: web.Request, *, query: LedgerQuery) -> web.StreamResponse:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="campaign-{row["id"]}.csv"',
        }
    )
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    after = 0
    while True:
        rows = await ctx.services.db.pool.fetch(
            store.LEDGER, row["id"], ctx.tenant_id, query.run, query.state, after, 5000
        )
        for r in rows:
            reason = store.loads(r["reason"])
            writer.writerow(
                [
                    r["run"], r["phone"], r["name"], r["state"],
                    (reason or {}).get("code", "") if isinstance(reason, dict) else "",
                    r["message_id"] or "", r["attempts"],
                    r["sent_at"].isoformat() if r["sent_at"] else "",
                    r["opted_out_at"].isoformat() if r["opted_out_at"] else "",
                    r["updated_at"].isoformat(),
                ]
            )  # fmt: skip
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < 5000:
            break
        after = rows[-1]["seq"]
    await response.write_eof()
    return response


@endpoint(READ, summary="Summary: counts by state, rates, daily breakdown", tags=TAGS)
async def report(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    row = await _campaign(ctx, _id(request))
    pool = ctx.services.db.pool
    rows = await pool.fetch(store.COUNTS_ALL, row["id"])
    by_state = store.counts_of(rows)
    opted = sum(r["opted"] for r in rows)
    handed = sum(by_state[s] for s in ("queued", "sent", "delivered", "read", "replied"))
    attempted = handed + by_state["failed"]
    delivered = by_state["delivered"] + by_state["read"] + by_state["replied"]
    locale = await company_locale(ctx.services, ctx.tenant_id)
    daily = await pool.fetch(store.DAILY, row["id"], ctx.tenant_id, locale.timezone)
    costs = await campaign_costs(ctx, row)
    total = sum(by_state.values())

    def rate(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "campaign_id": str(row["id"]),
        "status": row["status"],
        "runs": row["run"],
        "targets": total,
        "counts": by_state,
        "opted_out_after_send": opted,
        "success_rate": rate(handed, attempted),
        "delivery_rate": rate(delivered, handed),
        "read_rate": rate(by_state["read"] + by_state["replied"], handed),
        "reply_rate": rate(by_state["replied"], handed),
        "opt_out_rate": rate(by_state["opted_out"] + opted, total),
        "duration_seconds": (
            ((row["finished_at"] or engine.clock()) - row["started_at"]).total_seconds()
            if row["started_at"]
            else None
        ),
        "daily": [dict(d) | {"day": d["day"].isoformat()} for d in daily],
        "cost": costs,
    }


async def campaign_costs(ctx: Any, campaign: Any) -> list[dict[str, Any]]:
    """What the provider reported for the campaign's messages, per currency: core's usage
    rows (written by the status webhooks that carry pricing) tagged with the campaign's
    origin, all runs, since the campaign was created — one grouped read, however many
    messages it sent."""
    totals = await usage_totals(
        ctx.services,
        ctx.tenant_id,
        campaign["created_at"],
        dt.datetime.now(dt.UTC) + dt.timedelta(days=1),  # the database stamps usage rows
        origin=engine.origin_of(campaign["id"]),
    )
    by_currency: dict[str, dict[str, Any]] = {}
    for usage in totals:
        total = by_currency.setdefault(
            usage.currency,
            {"currency": usage.currency, "billable_messages": 0, "amount": None},
        )
        categories = total.setdefault("categories", set())
        total["billable_messages"] += usage.count if usage.billable else 0
        if usage.priced:
            total["amount"] = (total["amount"] or 0.0) + usage.cost
        if usage.category:
            categories.add(usage.category)
    return [
        total | {"categories": sorted(total["categories"])}
        for _, total in sorted(by_currency.items())
    ]


@endpoint(MANAGE, body=OptOutsIn, summary="Opt phones out of campaigns on a channel", tags=TAGS)
async def post_opt_outs(request: web.Request, *, body: OptOutsIn) -> dict[str, Any]:
    ctx = await plugin_context(request)
    return await add_opt_outs(ctx, body.channel_id, body.phones, "api")


@endpoint(MANAGE, summary="Import opt-outs: a CSV with a phone column (?channel_id=)", tags=TAGS)
async def import_opt_outs(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    try:
        channel_id = uuid.UUID(request.query.get("channel_id", ""))
    except ValueError:
        raise _invalid("channel_id", "give ?channel_id=") from None
    phones: list[str] = []
    try:
        async for line in lines(request.content):
            cell = next(csv.reader([line]), [""])
            if cell and cell[0].strip() and cell[0].strip().lower() not in ("phone", "telefone"):
                phones.append(cell[0].strip())
    except OverflowError:
        raise _too_large() from None
    if not phones:
        raise _invalid("file", "no phones in the file")
    return await add_opt_outs(ctx, channel_id, phones, "import")


@endpoint(READ, summary="Opt-outs of one channel (?channel_id=)", tags=TAGS)
async def list_opt_outs(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    try:
        channel_id = uuid.UUID(request.query.get("channel_id", ""))
    except ValueError:
        raise _invalid("channel_id", "give ?channel_id=") from None
    rows = await ctx.services.db.pool.fetch(
        "SELECT phone, source, created_at FROM campaign_opt_outs"
        " WHERE tenant = $1 AND channel = $2 ORDER BY created_at DESC LIMIT 1000",
        ctx.tenant_id,
        channel_id,
    )
    return {"items": [dict(r) for r in rows]}


@endpoint(MANAGE, status=204, summary="Remove an opt-out (?channel_id=&phone=)", tags=TAGS)
async def delete_opt_out(request: web.Request) -> web.Response:
    ctx = await plugin_context(request)
    try:
        channel_id = uuid.UUID(request.query.get("channel_id", ""))
    except ValueError:
        raise _invalid("channel_id", "give ?channel_id=") from None
    await remove_opt_out(ctx, channel_id, request.query.get("phone", ""))
    return web.Response(status=204)


def routes() -> list[RouteSpec]:
    c = "campaigns/{campaign_id}"
    return [
        RouteSpec("POST", "campaigns", create_campaign),
        RouteSpec("GET", "campaigns", list_campaigns),
        RouteSpec("GET", c, get_campaign),
        RouteSpec("PATCH", c, patch_campaign),
        RouteSpec("DELETE", c, delete_campaign),
        RouteSpec("POST", f"{c}/targets", add_targets),
        RouteSpec("POST", f"{c}/targets/import", import_targets),
        RouteSpec("POST", f"{c}/start", start_campaign),
        RouteSpec("POST", f"{c}/pause", pause_campaign),
        RouteSpec("POST", f"{c}/resume", resume_campaign),
        RouteSpec("POST", f"{c}/cancel", cancel_campaign),
        RouteSpec("POST", f"{c}/resend-failed", resend_failed),
        RouteSpec("GET", f"{c}/ledger", ledger),
        RouteSpec("GET", f"{c}/ledger.csv", ledger_csv),
        RouteSpec("GET", f"{c}/report", report),
        RouteSpec("GET", "opt-outs", list_opt_outs),
        RouteSpec("POST", "opt-outs", post_opt_outs),
        RouteSpec("POST", "opt-outs/import", import_opt_outs),
        RouteSpec("DELETE", "opt-outs", delete_opt_out),
    ]
