"""Provider cost: what the provider priced, plus the company's own per-country rates for
billable usage it left unpriced, totalled by hour, day, channel, channel type, category or
campaign.

Free (not billable) usage costs 0. Billable usage without a price and without a matching
rate stays `unpriced` (counted, never guessed). Totals are per currency.

A campaign's cost is that of the messages core tagged with the origin `campaign:<id>`
(the campaigns plugin gives it to `send_message`; core copies it onto the usage rows):
messages sent any other way belong to no campaign.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

from guiche.plugin import UsageTotal, usage_totals
from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings

CLOUD_API = "meta_cloud"
"""The channel type of Meta's WhatsApp Cloud API (the dashboard's cost indicator)."""
CAMPAIGN = "campaign:"
"""The origin prefix of campaigns' messages (a convention shared through core, not an
import of the campaigns plugin)."""


def _key(total: UsageTotal, by: str, cal: Calendar) -> str:
    if by == "hour":
        return total.hour.isoformat()
    if by == "day":
        return cal.local(total.hour).date().isoformat()
    if by == "channel":
        return str(total.channel_id) if total.channel_id else ""
    if by == "channel_type":
        return total.channel_type
    if by == "campaign":
        return total.origin.removeprefix(CAMPAIGN)
    return total.category


def price(total: UsageTotal, settings: ReportsSettings) -> tuple[float, str, int]:
    """(cost, currency, unpriced messages) of one usage total."""
    if not total.billable:
        return 0.0, total.currency, 0
    missing = total.count - total.priced
    cost, currency = total.cost, total.currency
    if missing:
        rate = settings.rate(total.phone_prefix, total.category)
        if rate is not None and (total.priced == 0 or settings.rates_currency == currency):
            cost += missing * rate
            currency = settings.rates_currency if total.priced == 0 else currency
            missing = 0
    return cost, currency, missing


async def costs(
    services: Any,
    tenant_id: Any,
    settings: ReportsSettings,
    since: dt.datetime,
    until: dt.datetime,
    by: str,
    *,
    channel_type: str | None = None,
    campaign_id: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """Cost in `[since, until)` grouped `by` one of `_key`'s keys, per currency; only one
    campaign's with `campaign_id`. `by="campaign"` leaves out what no campaign sent."""
    cal = Calendar.of(settings)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    if campaign_id is not None:
        totals = await usage_totals(
            services, tenant_id, since, until, origin=f"{CAMPAIGN}{campaign_id}"
        )
    elif by == "campaign":
        totals = await usage_totals(services, tenant_id, since, until, origin_prefix=CAMPAIGN)
    else:
        totals = await usage_totals(services, tenant_id, since, until)
    for total in totals:
        if channel_type is not None and total.channel_type != channel_type:
            continue
        cost, currency, unpriced = price(total, settings)
        key = (_key(total, by, cal), currency)
        g = groups.setdefault(
            key,
            {
                "key": key[0],
                "currency": currency,
                "messages": 0,
                "billable": 0,
                "cost": 0.0,
                "unpriced": 0,
            },
        )
        g["messages"] += total.count
        g["billable"] += total.count if total.billable else 0
        g["cost"] += cost
        g["unpriced"] += unpriced
    return [groups[k] for k in sorted(groups)]


COLUMNS = ("currency", "messages", "billable", "cost", "unpriced")


def csv_bytes(
    items: list[dict[str, Any]], by: str, *, delimiter: str = ",", bom: bool = False
) -> bytes:
    """`costs` as a CSV: one line per group and currency, the group in a column named
    after `by` (`campaign_id` for campaigns). With `;` (pt-BR spreadsheets) amounts take a
    decimal comma."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(("campaign_id" if by == "campaign" else by, *COLUMNS))
    for item in items:
        cost = f"{item['cost']:.6f}"
        writer.writerow(
            (
                item["key"],
                item["currency"],
                item["messages"],
                item["billable"],
                cost.replace(".", ",") if delimiter == ";" else cost,
                item["unpriced"],
            )
        )
    return (("\ufeff" if bom else "") + buffer.getvalue()).encode()
