"""Writing the audit trail: who (user or API key) did what to which row of their company.

Call it inside the transaction that makes the change, so the trail and the data agree.
"""

from __future__ import annotations

import uuid
from typing import Any

from guiche.auth.principal import Principal
from guiche.models import AuditLog


async def record_audit(
    principal: Principal,
    action: str,
    target_type: str,
    target_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append one row; an API key's id goes into `data` since `actor` names users only."""
    payload = dict(data or {})
    if principal.kind == "api_key" and principal.api_key_id is not None:
        payload.setdefault("api_key_id", str(principal.api_key_id))
    await AuditLog.insert(
        AuditLog(
            tenant=principal.tenant_id,
            actor=principal.user_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            data=payload,
        )
    )
