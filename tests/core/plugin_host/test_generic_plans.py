"""`guiche.plugin.use_generic_plans`: a plugin's bulk write keeps Postgres's cached plans
for its foreign-key checks, for its own transaction only."""

from __future__ import annotations

from typing import Any

import pytest

from guiche.plugin import use_generic_plans
from guiche.runtime.services import SERVICES


async def test_generic_plans_hold_for_the_transaction_and_leave_the_pool_as_it_was(
    client: Any,
) -> None:
    pool = client.app[SERVICES].db.pool
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        async with conn.transaction():
            await use_generic_plans(conn)
            assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"


async def test_generic_plans_outside_a_transaction_are_refused(client: Any) -> None:
    """Postgres would only warn about `SET LOCAL` there and change nothing."""
    pool = client.app[SERVICES].db.pool
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="open transaction"):
            await use_generic_plans(conn)
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
