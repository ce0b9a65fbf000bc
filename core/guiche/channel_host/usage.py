"""What providers billed a company for (`provider_usage`), totalled for cost reports.

Channel plugins record one usage row per priced message (Meta's pricing blocks:
category, billable, a cost when a price table gave one). Reports need totals per hour,
channel, category and recipient country — the country so a company's own per-country
rates can price what the provider left unpriced — and per origin (the tag a plugin gave
the message when sending it: cost per campaign). One grouped query per call, always
within one tenant; never writes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guiche.runtime.services import Services


@dataclass(frozen=True)
class UsageTotal:
    """Usage rows sharing an hour, channel, category, billability, currency and the first
    digits of the recipient's number (`phone_prefix`: up to 3 digits after `+`, "" when
    unknown) and origin (the sender's tag, `campaign:<id>`; "" for messages sent without
    one). `cost` sums the rows that carry one (`priced` of the `count`)."""

    hour: dt.datetime
    channel_id: uuid.UUID | None
    channel_type: str
    category: str
    billable: bool
    currency: str
    phone_prefix: str
    count: int
    priced: int
    cost: float
    origin: str = ""


_TOTALS = """
SELECT date_trunc('hour', u.created_at) AS hour, u.channel, coalesce(ch.type, '') AS channel_type,
       lower(u.category) AS category, u.billable, u.currency,
       coalesce(substring(regexp_replace(ct.phone, '[^0-9]', '', 'g') from 1 for 3), '') AS prefix,
       coalesce(u.origin, '') AS origin,
       count(*) AS n, count(u.cost) AS priced, coalesce(sum(u.cost), 0)::float8 AS cost
FROM provider_usage u
LEFT JOIN channels ch ON ch.id = u.channel
LEFT JOIN messages m ON m.id = u.message_id AND m.tenant = u.tenant
LEFT JOIN contacts ct ON ct.id = m.contact
WHERE u.tenant = $1 AND u.created_at >= $2 AND u.created_at < $3{origin}
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY 1
"""
_ANY = _TOTALS.format(origin="")
_ORIGIN = _TOTALS.format(origin=" AND u.origin = $4")
_ORIGIN_PREFIX = _TOTALS.format(origin=" AND u.origin IS NOT NULL AND starts_with(u.origin, $4)")


async def usage_totals(
    services: Services,
    tenant_id: uuid.UUID,
    since: dt.datetime,
    until: dt.datetime,
    *,
    origin: str | None = None,
    origin_prefix: str | None = None,
) -> list[UsageTotal]:
    """The tenant's provider usage in `[since, until)`, grouped as `UsageTotal`s; only
    that of messages tagged `origin`, or with an origin starting with `origin_prefix`
    (`"campaign:"`: every campaign's), when given."""
    if origin is not None and origin_prefix is not None:
        raise ValueError("give origin or origin_prefix, not both")
    query, args = _ANY, [tenant_id, since, until]
    if origin is not None:
        query, args = _ORIGIN, [*args, origin]
    elif origin_prefix is not None:
        query, args = _ORIGIN_PREFIX, [*args, origin_prefix]
    async with services.db.transaction() as transaction:
        rows = await transaction.connection.fetch(query, *args)
    return [
        UsageTotal(
            hour=r["hour"],
            channel_id=r["channel"],
            channel_type=r["channel_type"],
            category=r["category"] or "",
            billable=bool(r["billable"]),
            currency=r["currency"],
            phone_prefix=r["prefix"],
            count=r["n"],
            priced=r["priced"],
            cost=r["cost"],
            origin=r["origin"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class MessageUsage:
    """What the provider reported billing for one of the company's messages."""

    message_id: uuid.UUID
    category: str
    billable: bool
    currency: str
    cost: float | None


_BY_MESSAGE = """
SELECT message_id, lower(category) AS category, billable, currency, cost::float8 AS cost
FROM provider_usage WHERE tenant = $1 AND message_id = ANY($2::uuid[])
"""


async def message_usage(
    services: Services, tenant_id: uuid.UUID, message_ids: list[uuid.UUID]
) -> list[MessageUsage]:
    """The usage rows of these messages (those the provider priced or counted)."""
    async with services.db.transaction() as transaction:
        rows = await transaction.connection.fetch(_BY_MESSAGE, tenant_id, message_ids)
    return [
        MessageUsage(
            message_id=r["message_id"],
            category=r["category"] or "",
            billable=bool(r["billable"]),
            currency=r["currency"] or "",
            cost=r["cost"],
        )
        for r in rows
    ]
