"""Opt-out per contact and channel: keywords in inbound messages, and the API's list.

An inbound message that is, as a whole, one of the company's keywords (`SAIR`, `PARAR`,
`STOP`, `CANCELAR` by default; any case, accents and surrounding punctuation ignored)
opts its phone out on that channel, is answered with the configured confirmation, and
marks the ledger: pending targets become `opted_out` (never sent), sent ones keep their
state and get `opted_out_at` (counted in the opt-out rate).
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from guiche.plugin import (
    ApiError,
    InvalidPhone,
    ValidationFailed,
    channel_facts,
    company_locale,
    find_contacts,
    normalize_phone,
    send_message,
)

from . import metrics, store


def fold(text: str) -> str:
    """Upper case, no accents, no surrounding spaces or punctuation."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return plain.strip().strip(".!?,;:-_*\"'()[]").strip().upper()


def is_opt_out(body: str, keywords: list[str]) -> bool:
    return fold(body) in {fold(keyword) for keyword in keywords}


async def add_opt_outs(
    ctx: Any, channel_id: uuid.UUID, raw_phones: list[str], source: str
) -> dict[str, Any]:
    pool = ctx.services.db.pool
    if await channel_facts(ctx.services, ctx.tenant_id, channel_id) is None:
        raise ValidationFailed(
            "channel not found", details=[{"field": "channel_id", "message": "channel not found"}]
        )
    region = (await company_locale(ctx.services, ctx.tenant_id)).region
    phones, errors = [], []
    for index, raw in enumerate(raw_phones):
        try:
            phones.append(normalize_phone(raw, region))
        except InvalidPhone as exc:
            errors.append({"index": index, "phone": raw, "error": str(exc)})
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.execute(store.INSERT_OPT_OUTS, ctx.tenant_id, channel_id, phones, source)
        await conn.execute(store.MARK_OPTED_OUT, ctx.tenant_id, channel_id, phones)
    metrics.OPT_OUTS.labels(source).inc(int(done.split()[-1]))
    return {"added": int(done.split()[-1]), "invalid": len(errors), "errors": errors[:1000]}


async def remove_opt_out(ctx: Any, channel_id: uuid.UUID, raw_phone: str) -> None:
    region = (await company_locale(ctx.services, ctx.tenant_id)).region
    try:
        phone = normalize_phone(raw_phone, region)
    except InvalidPhone as exc:
        detail = {"field": "phone", "message": str(exc)}
        raise ValidationFailed(str(exc), details=[detail]) from None
    await ctx.services.db.pool.execute(
        "DELETE FROM campaign_opt_outs WHERE tenant = $1 AND channel = $2 AND phone = $3",
        ctx.tenant_id,
        channel_id,
        phone,
    )


async def on_inbound(ctx: Any, message: Any, settings: Any) -> bool:
    """Handle an inbound message: `replied` in the ledger; an opt-out keyword opts out."""
    if message.contact_id is None or message.channel_id is None:
        return False
    pool = ctx.services.db.pool
    await pool.execute(store.REPLIED, ctx.tenant_id, message.contact_id, message.channel_id)
    if message.type != "text" or not is_opt_out(message.body or "", settings.opt_out_keywords):
        return False
    found = await find_contacts(ctx.services, ctx.tenant_id, ids=[message.contact_id])
    phone = found[0].phone if found else None
    if not phone:
        return False
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            store.INSERT_OPT_OUTS, ctx.tenant_id, message.channel_id, [phone], "keyword"
        )
        await conn.execute(store.MARK_OPTED_OUT, ctx.tenant_id, message.channel_id, [phone])
    metrics.OPT_OUTS.labels("keyword").inc()
    if settings.opt_out_reply:
        try:
            await send_message(
                ctx.services,
                ctx.tenant_id,
                channel_id=message.channel_id,
                contact_id=message.contact_id,
                message={"type": "text", "text": settings.opt_out_reply},
                idempotency_key=f"campaigns-opt-out:{message.id}",
            )
        except ApiError:
            ctx.logger.warning("could not confirm an opt-out", exc_info=True)
    return True
