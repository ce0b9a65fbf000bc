"""Provider templates (e.g. Meta's approved message templates) kept in core's
`templates` table, synced by channel plugins through `guiche.plugin.upsert_templates`."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from guiche.foundation.errors import NotFound
from guiche.models import Channel, Template

_UPSERT_TEMPLATE = """
INSERT INTO templates (tenant, channel, name, language, category, body, components, status,
                       external_id)
VALUES ({}, {}, {}, {}, {}, {}, {}::jsonb, {}, {})
ON CONFLICT (tenant, coalesce(channel, '00000000-0000-0000-0000-000000000000'), name, language)
DO UPDATE SET category = EXCLUDED.category, body = EXCLUDED.body,
              components = EXCLUDED.components, status = EXCLUDED.status,
              external_id = EXCLUDED.external_id, updated_at = now()
"""

_RETIRE_TEMPLATES = """
UPDATE templates SET status = 'DELETED', updated_at = now()
WHERE tenant = {} AND channel = {} AND status <> 'DELETED'
  AND NOT ((name || '/' || language) = ANY({}::text[]))
RETURNING id
"""


async def store_provider_templates(
    tenant_id: uuid.UUID,
    channel_id: uuid.UUID,
    templates: list[dict[str, Any]],
    *,
    retire_missing: bool = False,
) -> dict[str, int]:
    """Write a provider's templates for one of the tenant's channels into core's `templates`.

    Each item: `name`, `language`, optional `category`, `body`, `components` (list),
    `status` (e.g. APPROVED, PAUSED; only APPROVED ones can be sent) and `external_id`.
    A (name, language) already stored for the channel is updated. With `retire_missing`,
    the channel's templates absent from `templates` become status DELETED (a full sync).
    Returns `{"upserted": n, "retired": m}`. One transaction; the channel must be the
    tenant's (else `NotFound`).
    """
    owned = await Channel.exists().where((Channel.tenant == tenant_id) & (Channel.id == channel_id))
    if not owned:
        raise NotFound("channel not found")
    retired: list[Any] = []
    async with Template._meta.db.transaction():
        for item in templates:
            await Template.raw(
                _UPSERT_TEMPLATE,
                tenant_id,
                channel_id,
                str(item["name"])[:200],
                str(item.get("language") or "pt_BR")[:20],
                str(item.get("category") or "UTILITY").upper()[:40],
                str(item.get("body") or ""),
                orjson.dumps(item.get("components") or []).decode(),
                str(item.get("status") or "APPROVED").upper()[:30],
                (str(item["external_id"])[:200] if item.get("external_id") else None),
            )
        if retire_missing:
            keep = [f"{item['name']}/{item.get('language') or 'pt_BR'}" for item in templates]
            retired = await Template.raw(_RETIRE_TEMPLATES, tenant_id, channel_id, keep)
    return {"upserted": len(templates), "retired": len(retired)}
