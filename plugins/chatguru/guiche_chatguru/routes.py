"""The plugin's API under `/api/v1/plugins/chatguru/`: connection tests, the catalog job,
polling on/off/status, messages by phone and chats by tag / funnel step / agent / period.

Authenticated as every plugin route: a user's token or the company's API key in
`x-api-key` (how the old cataloger was called). Everything is scoped to the caller's
company; another company's account answers 404. Dates are shown in the company's
ChatGuru time zone (`time_zone` setting, America/Sao_Paulo by default).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from guiche.plugin import (
    ApiError,
    NotFound,
    ValidationFailed,
    endpoint,
    load_channel,
    messages_by_phone,
    plugin_context,
    services_of,
)
from guiche_chatguru import catalog, store
from guiche_chatguru.adapter import CHANNEL_TYPE, ChatGuruAdapter, check_connection, rate_key
from guiche_chatguru.client import ChatGuruAuthError, ChatGuruClient, ChatGuruError
from guiche_chatguru.config import ChatGuruCredentials, ChatGuruSettings

PERMISSION_READ = "chatguru.read"
PERMISSION_MANAGE = "chatguru.manage"
TAGS = ("chatguru",)


class ChatGuruRefused(ApiError):
    """ChatGuru refused the credentials."""

    status, code = 422, "bad_credentials"


class ChatGuruFailed(ApiError):
    """ChatGuru was unreachable or answered something unexpected."""

    status, code = 502, "chatguru_error"


def upstream_error(exc: ChatGuruError) -> ApiError:
    if isinstance(exc, ChatGuruAuthError):
        return ChatGuruRefused(exc.message, details=exc.details or None)
    return ChatGuruFailed(exc.message, code=exc.code, details=exc.details or None)


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} not found", code=f"{what.replace(' ', '_')}_not_found") from None


def _local(value: Any, zone: dt.tzinfo) -> Any:
    return value.astimezone(zone) if isinstance(value, dt.datetime) else value


def _localize(row: dict[str, Any], zone: dt.tzinfo) -> dict[str, Any]:
    return {key: _local(value, zone) for key, value in row.items()}


async def _context(request: web.Request) -> tuple[Any, ChatGuruSettings, zoneinfo.ZoneInfo]:
    ctx = await plugin_context(request)
    settings: ChatGuruSettings = ctx.settings
    return ctx, settings, zoneinfo.ZoneInfo(settings.time_zone)


async def _account(request: web.Request) -> tuple[Any, Any, ChatGuruSettings, zoneinfo.ZoneInfo]:
    """The caller's ChatGuru channel named in the path (404 for anyone else's)."""
    ctx, settings, zone = await _context(request)
    channel_id = _uuid(request.match_info["id"], "account")
    loaded = await load_channel(ctx.services, channel_id, tenant_id=ctx.tenant_id)
    if loaded is None or loaded.info.type != CHANNEL_TYPE:
        raise NotFound("ChatGuru account not found", code="account_not_found")
    await store.ensure_account(ctx.tenant_id, channel_id)
    return ctx, loaded, settings, zone


# --- connection ------------------------------------------------------------------------


@endpoint(
    PERMISSION_MANAGE,
    body=ChatGuruCredentials,
    summary="Test ChatGuru credentials without storing them: what the panel shows",
    tags=TAGS,
    errors=(422, 502),
)
async def test_credentials(request: web.Request, *, body: ChatGuruCredentials) -> dict[str, Any]:
    ctx, settings, _ = await _context(request)
    client = ChatGuruClient(
        body,
        services_of(request).http,
        limiter=ctx.services.limiter,
        rate_key=rate_key(ctx.tenant_id),
        requests_per_second=settings.requests_per_second,
    )
    try:
        report = await check_connection(client)
    except ChatGuruError as exc:
        raise upstream_error(exc) from None
    return report.as_dict()


@endpoint(
    PERMISSION_MANAGE,
    summary="Test a stored ChatGuru account's connection",
    tags=TAGS,
    errors=(422, 502),
)
async def test_account(request: web.Request) -> dict[str, Any]:
    _, loaded, settings, _ = await _account(request)
    adapter: ChatGuruAdapter = loaded.adapter
    try:
        report = await check_connection(adapter.client(settings.requests_per_second))
    except ChatGuruError as exc:
        raise upstream_error(exc) from None
    return report.as_dict()


# --- accounts and polling --------------------------------------------------------------

_STATUS = (
    "polling_enabled, last_poll_at, last_poll_ms, last_poll_messages, last_poll_error, "
    "last_lag_ms, polls, poll_errors, messages_polled"
)


async def _status(tenant_id: uuid.UUID, account_id: uuid.UUID, zone: dt.tzinfo) -> dict[str, Any]:
    rows = await store.raw(
        f"SELECT {_STATUS}, c.chats, c.chats_not_catalogued FROM chatguru_accounts a, "
        "LATERAL (SELECT count(*) AS chats, count(*) FILTER (WHERE NOT catalog_done) "
        "AS chats_not_catalogued FROM chatguru_chats WHERE account = a.id) c "
        "WHERE a.tenant = {} AND a.id = {}",
        tenant_id,
        account_id,
    )
    if not rows:
        raise NotFound("ChatGuru account not found", code="account_not_found")
    row = _localize(rows[0], zone)
    lag = None
    if row["last_poll_at"] is not None:
        lag = round((dt.datetime.now(dt.UTC) - rows[0]["last_poll_at"]).total_seconds(), 1)
    return {"channel_id": account_id, **row, "seconds_since_last_poll": lag}


@endpoint(PERMISSION_READ, summary="The company's ChatGuru accounts and their polling", tags=TAGS)
async def list_accounts(request: web.Request) -> dict[str, Any]:
    ctx, _, zone = await _context(request)
    rows = await store.raw("SELECT id FROM chatguru_accounts WHERE tenant = {}", ctx.tenant_id)
    return {"items": [await _status(ctx.tenant_id, row["id"], zone) for row in rows]}


@endpoint(PERMISSION_READ, summary="Polling status of a ChatGuru account", tags=TAGS)
async def polling_status(request: web.Request) -> dict[str, Any]:
    ctx, loaded, _, zone = await _account(request)
    return await _status(ctx.tenant_id, loaded.info.id, zone)


async def _set_polling(request: web.Request, enabled: bool) -> dict[str, Any]:
    ctx, loaded, _, zone = await _account(request)
    await store.raw(
        "UPDATE chatguru_accounts SET polling_enabled = {}, updated_at = now() "
        "WHERE tenant = {} AND id = {}",
        enabled,
        ctx.tenant_id,
        loaded.info.id,
    )
    return await _status(ctx.tenant_id, loaded.info.id, zone)


@endpoint(PERMISSION_MANAGE, summary="Turn live polling of a ChatGuru account on", tags=TAGS)
async def enable_polling(request: web.Request) -> dict[str, Any]:
    return await _set_polling(request, True)


@endpoint(PERMISSION_MANAGE, summary="Turn live polling of a ChatGuru account off", tags=TAGS)
async def disable_polling(request: web.Request) -> dict[str, Any]:
    return await _set_polling(request, False)


_PHONES = (
    "SELECT p.phone_id, p.first_seen, count(c.chat_id) AS chats, "
    "max(c.last_message_at) AS last_message_at FROM chatguru_phones p "
    "LEFT JOIN chatguru_chats c ON c.account = p.account AND c.phone_id = p.phone_id "
    "WHERE p.tenant = {} AND p.account = {} GROUP BY p.phone_id, p.first_seen "
    "ORDER BY p.phone_id"
)
_AGENTS = (
    "SELECT a.agent_id, a.first_seen, "
    "count(DISTINCT d.chat_id) FILTER (WHERE d.to_at IS NULL) AS chats, "
    "count(DISTINCT d.chat_id) AS chats_ever, max(d.from_at) AS last_delegated_at "
    "FROM chatguru_agents a LEFT JOIN chatguru_delegations d "
    "ON d.account = a.account AND d.agent_id = a.agent_id "
    "WHERE a.tenant = {} AND a.account = {} GROUP BY a.agent_id, a.first_seen "
    "ORDER BY a.agent_id"
)


async def _account_items(request: web.Request, sql: str) -> dict[str, Any]:
    """Rows about the caller's account in the path (`sql` takes tenant, then account)."""
    ctx, loaded, _, zone = await _account(request)
    rows = await store.raw(sql, ctx.tenant_id, loaded.info.id)
    return {"items": [_localize(row, zone) for row in rows]}


@endpoint(
    PERMISSION_READ,
    summary="The account's WhatsApp numbers (ChatGuru phone ids) and their chats",
    tags=TAGS,
)
async def phones(request: web.Request) -> dict[str, Any]:
    return await _account_items(request, _PHONES)


@endpoint(
    PERMISSION_READ,
    summary="The account's agents (ChatGuru user ids): chats they hold and ever held",
    tags=TAGS,
)
async def agents(request: web.Request) -> dict[str, Any]:
    return await _account_items(request, _AGENTS)


# --- catalog ---------------------------------------------------------------------------


@endpoint(
    PERMISSION_MANAGE,
    status=202,
    summary="Start the full-history catalog of a ChatGuru account",
    tags=TAGS,
    errors=(409,),
)
async def start_catalog(request: web.Request) -> dict[str, Any]:
    ctx, loaded, _, zone = await _account(request)
    job_id = await catalog.create_job(ctx.tenant_id, loaded.info.id)
    if ctx.services.tasks is not None:
        await ctx.services.tasks.kick(f"{catalog.PLUGIN}.{catalog.TASK}", str(job_id))
    row = await catalog.job_row(ctx.tenant_id, job_id)
    assert row is not None
    return _localize(catalog.job_view(row), zone)


@endpoint(PERMISSION_READ, summary="The latest catalog job of a ChatGuru account", tags=TAGS)
async def latest_catalog(request: web.Request) -> dict[str, Any]:
    ctx, loaded, _, zone = await _account(request)
    rows = await store.raw(
        "SELECT id FROM chatguru_catalog_jobs WHERE tenant = {} AND account = {} "
        "ORDER BY created_at DESC LIMIT 1",
        ctx.tenant_id,
        loaded.info.id,
    )
    if not rows:
        raise NotFound("This account was never catalogued", code="catalog_job_not_found")
    row = await catalog.job_row(ctx.tenant_id, rows[0]["id"])
    assert row is not None
    return _localize(catalog.job_view(row), zone)


@endpoint(PERMISSION_READ, summary="A catalog job's progress", tags=TAGS)
async def get_job(request: web.Request) -> dict[str, Any]:
    ctx, _, zone = await _context(request)
    row = await catalog.job_row(ctx.tenant_id, _uuid(request.match_info["job_id"], "catalog job"))
    if row is None:
        raise NotFound("No such catalog job", code="catalog_job_not_found")
    return _localize(catalog.job_view(row), zone)


@endpoint(PERMISSION_MANAGE, summary="Cancel a catalog job", tags=TAGS)
async def cancel_job(request: web.Request) -> dict[str, Any]:
    ctx, _, zone = await _context(request)
    job_id = _uuid(request.match_info["job_id"], "catalog job")
    return _localize(await catalog.cancel_job(ctx.tenant_id, job_id), zone)


# --- queries ---------------------------------------------------------------------------


class MessagesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=1, max_length=40)
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200)
    #: `chatguru` for ChatGuru's messages only; empty for every channel's.
    channel_type: str | None = Field(None, max_length=60)


@endpoint(
    PERMISSION_READ,
    query=MessagesQuery,
    summary="A phone's messages (E.164 or digits), newest first, every channel",
    tags=TAGS,
)
async def messages(request: web.Request, *, query: MessagesQuery) -> dict[str, Any]:
    ctx, _, zone = await _context(request)
    page = await messages_by_phone(
        ctx.tenant_id,
        query.phone,
        limit=query.limit,
        cursor=query.cursor,
        channel_type=query.channel_type,
    )
    page["items"] = [_localize(item, zone) for item in page["items"]]
    return page


class ChatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str | None = Field(None, max_length=120)
    funnel_step: str | None = Field(None, max_length=120)
    agent: str | None = Field(None, max_length=64)
    #: Chats whose last message is in [since, until): dates are read in the time zone.
    since: dt.date | dt.datetime | None = None
    until: dt.date | dt.datetime | None = None
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=100_000)


def _bound(value: dt.date | dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), zone)
    return value if value.tzinfo else value.replace(tzinfo=zone)


@endpoint(
    PERMISSION_READ,
    query=ChatsQuery,
    summary="Chats by tag, funnel step, agent and period (current values)",
    tags=TAGS,
)
async def chats(request: web.Request, *, query: ChatsQuery) -> dict[str, Any]:
    ctx, _, zone = await _context(request)
    since, until = _bound(query.since, zone), _bound(query.until, zone)
    if since and until and since >= until:
        raise ValidationFailed(
            "since must be before until", details=[{"field": "since", "message": "after until"}]
        )
    rows = await store.raw(
        """
        SELECT c.account AS channel_id, c.chat_id, c.wa_chat_id, c.number, c.name, c.kind,
               c.status, c.archived, c.phone_id, c.last_message_at, c.messages,
               c.conversation AS conversation_id,
               array(SELECT t.tag FROM chatguru_chat_tags t WHERE t.account = c.account
                   AND t.chat_id = c.chat_id AND t.to_at IS NULL ORDER BY t.tag) AS tags,
               array(SELECT f.step FROM chatguru_chat_funnel_steps f
                   WHERE f.account = c.account AND f.chat_id = c.chat_id AND f.to_at IS NULL
                   ORDER BY f.step) AS funnel_steps,
               array(SELECT d.agent_id FROM chatguru_delegations d
                   WHERE d.account = c.account AND d.chat_id = c.chat_id AND d.to_at IS NULL
                   ORDER BY d.agent_id) AS agents
        FROM chatguru_chats c
        WHERE c.tenant = {}
          AND ({}::varchar IS NULL OR EXISTS (SELECT 1 FROM chatguru_chat_tags t
              WHERE t.account = c.account AND t.chat_id = c.chat_id AND t.to_at IS NULL
              AND t.tag = {}))
          AND ({}::varchar IS NULL OR EXISTS (SELECT 1 FROM chatguru_chat_funnel_steps f
              WHERE f.account = c.account AND f.chat_id = c.chat_id AND f.to_at IS NULL
              AND f.step = {}))
          AND ({}::varchar IS NULL OR EXISTS (SELECT 1 FROM chatguru_delegations d
              WHERE d.account = c.account AND d.chat_id = c.chat_id AND d.to_at IS NULL
              AND d.agent_id = {}))
          AND ({}::timestamptz IS NULL OR c.last_message_at >= {})
          AND ({}::timestamptz IS NULL OR c.last_message_at < {})
        ORDER BY c.last_message_at DESC NULLS LAST, c.account, c.chat_id
        LIMIT {} OFFSET {}
        """,
        ctx.tenant_id,
        query.tag,
        query.tag,
        query.funnel_step,
        query.funnel_step,
        query.agent,
        query.agent,
        since,
        since,
        until,
        until,
        query.limit + 1,
        query.offset,
    )
    more = len(rows) > query.limit
    items = [_localize(row, zone) for row in rows[: query.limit]]
    return {"items": items, "next_offset": query.offset + query.limit if more else None}
