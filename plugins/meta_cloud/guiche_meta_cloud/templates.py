"""Syncing a WABA's message templates into core's `templates` (on demand and daily).

`GET /{waba-id}/message_templates` is paginated with cursors; we follow
`paging.cursors.after` on our own base URL rather than the absolute `paging.next`
(which names graph.facebook.com even when the channel points at a proxy or a fake).
Every template is stored with its status (only APPROVED ones can be sent), and the
channel's templates Meta no longer lists become DELETED.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from guiche.channels import ChannelError
from guiche.plugin import (
    ApiError,
    active_channels,
    upsert_templates,
)
from guiche_meta_cloud.adapter import MetaCloudAdapter
from guiche_meta_cloud.client import GraphClient

log = logging.getLogger("guiche.plugin.meta_cloud")

CHANNEL_TYPE = "meta_cloud"
SYNC_PERMISSION = "meta_cloud.templates.sync"
FIELDS = "id,name,language,status,category,components"
PAGE_LIMIT = 100
MAX_PAGES = 200  # 20 000 templates: far above Meta's per-WABA limit; stops a cursor loop


class GraphUnavailable(ApiError):
    status, code = 502, "meta_graph_error"


class SyncResult(BaseModel):
    fetched: int
    approved: int
    upserted: int
    retired: int


async def fetch_templates(graph: GraphClient, waba_id: str) -> list[dict[str, Any]]:
    """Every template of the WABA, following cursors until the last page."""
    params: dict[str, Any] = {"fields": FIELDS, "limit": PAGE_LIMIT}
    seen: set[str] = set()
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = await graph.call("GET", f"{waba_id}/message_templates", params=params)
        found.extend(item for item in page.get("data") or [] if isinstance(item, dict))
        paging = page.get("paging") if isinstance(page.get("paging"), dict) else {}
        cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
        after = cursors.get("after")
        if not paging.get("next") or not after or after in seen:
            return found
        seen.add(after)
        params = {**params, "after": after}
    log.warning("template sync stopped after %s pages", MAX_PAGES, extra={"waba_id": waba_id})
    return found


def core_template(template: dict[str, Any]) -> dict[str, Any]:
    """A Graph template as `upsert_templates` takes it (body = the BODY component's text)."""
    components = [c for c in template.get("components") or [] if isinstance(c, dict)]
    body = next(
        (str(c.get("text") or "") for c in components if str(c.get("type")).upper() == "BODY"),
        "",
    )
    return {
        "name": template["name"],
        "language": template.get("language") or "pt_BR",
        "category": template.get("category") or "UTILITY",
        "status": template.get("status") or "PENDING",
        "external_id": template.get("id"),
        "components": components,
        "body": body,
    }


async def sync_channel(services: Any, channel: Any) -> SyncResult:
    """Fetch and store one loaded meta_cloud channel's templates (ChannelError on Graph failure)."""
    adapter: MetaCloudAdapter = channel.adapter
    templates = [
        core_template(t)
        for t in await fetch_templates(adapter.graph, adapter.config.waba_id)
        if t.get("name")
    ]
    written = await upsert_templates(
        services, channel.info.tenant_id, channel.info.id, templates, retire_missing=True
    )
    approved = sum(1 for t in templates if str(t["status"]).upper() == "APPROVED")
    return SyncResult(fetched=len(templates), approved=approved, **written)


async def sync_all(*, services: Any) -> dict[str, int]:
    """The daily task: every active meta_cloud channel of tenants with the plugin enabled."""
    synced = failed = 0
    for channel in await active_channels(services, CHANNEL_TYPE):
        try:
            await sync_channel(services, channel)
            synced += 1
        except (ChannelError, ApiError) as exc:
            failed += 1
            log.warning(
                "template sync failed",
                extra={"channel": str(channel.info.id), "error": str(exc)},
            )
    return {"synced": synced, "failed": failed}
