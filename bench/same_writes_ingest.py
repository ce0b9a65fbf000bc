"""The same-writes ceiling: a bare aiohttp app writing exactly the rows Guichê writes.

`bench.bare_ingest` inserts one row per message into a table of its own: it prices the
HTTP server and one INSERT, not the data model. This app writes, per new-contact
message, what Guichê's webhook ingest writes — the dedup key (`message_keys`), the
contact, the conversation, the message and its two events (`conversation.updated`
opened, `message.new`) — into Guichê's own tables, with their indexes and constraints,
by one hand-written statement per request and nothing else: no signature check, no
parsing into models, no middleware, no routing, no bus. Guichê's share of this ceiling
is its own overhead; this ceiling's share of the bare one is the data model's cost.

    python -m bench.same_writes_ingest --port 8767 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import uuid

import asyncpg
import orjson
from aiohttp import web

WRITE = """
WITH input AS (
    SELECT * FROM unnest($3::varchar[], $4::varchar[], $5::varchar[], $6::text[], $7::text[])
        WITH ORDINALITY AS i(pid, phone, type, body, payload, ord)
),
claimed AS (
    INSERT INTO message_keys (channel, provider_message_id, tenant, message_id,
                              message_created_at)
    SELECT $2, i.pid, $1, gen_random_uuid(), now() FROM input i ORDER BY i.pid
    ON CONFLICT (channel, provider_message_id) DO NOTHING
    RETURNING provider_message_id, message_id, message_created_at
),
fresh AS (
    SELECT i.*, k.message_id, k.message_created_at AS at
    FROM input i JOIN claimed k ON k.provider_message_id = i.pid
),
people AS (
    INSERT INTO contacts AS c (tenant, phone, name)
    SELECT DISTINCT ON (f.phone) $1, f.phone, '' FROM fresh f ORDER BY f.phone
    ON CONFLICT (tenant, phone) WHERE phone IS NOT NULL DO UPDATE SET name = c.name
    RETURNING c.id, c.phone
),
opened AS (
    INSERT INTO conversations AS c (tenant, contact, channel, status, opened_at, queued_at,
                                    last_message_at, last_inbound_at)
    SELECT $1, p.id, $2, 'PENDING', now(), now(), now(), now() FROM people p ORDER BY p.id
    ON CONFLICT (contact, channel) WHERE status <> 'CLOSED'
    DO UPDATE SET last_message_at = EXCLUDED.last_message_at
    RETURNING c.id, c.contact, xmax = 0 AS new
),
placed AS (
    SELECT f.*, p.id AS contact, o.id AS conversation, o.new
    FROM fresh f JOIN people p ON p.phone = f.phone JOIN opened o ON o.contact = p.id
),
stored AS (
    INSERT INTO messages (id, created_at, tenant, conversation, contact, channel, direction,
                          type, body, payload, provider_message_id, status)
    SELECT p.message_id, p.at, $1, p.conversation, p.contact, $2, 'in', p.type, p.body,
           p.payload::jsonb, p.pid, 'received'
    FROM placed p
)
INSERT INTO events (seq, tenant, type, conversation, data)
SELECT nextval('events_seq_seq'), $1, e.type, e.conversation, e.data FROM (
    SELECT p.ord, 0 AS kind, 'conversation.updated' AS type, p.conversation,
           jsonb_build_object('action', 'opened', 'conversation_id', p.conversation) AS data
    FROM placed p WHERE p.new
    UNION ALL
    SELECT p.ord, 1, 'message.new', p.conversation,
           jsonb_build_object('id', p.message_id, 'conversation_id', p.conversation,
                              'body', p.body)
    FROM placed p
    ORDER BY 1, 2
) e
"""

_POOL = web.AppKey("pool", asyncpg.Pool)
_TENANTS = web.AppKey("tenants", dict)


async def receive(request: web.Request) -> web.Response:
    channel = uuid.UUID(request.match_info["channel_id"])
    payload = orjson.loads(await request.read())
    pids, phones, types, bodies, raws = [], [], [], [], []
    for entry in payload.get("entry", []):
        for change in entry.get("changes", []):
            for message in change.get("value", {}).get("messages", []):
                pids.append(message["id"])
                phones.append("+" + message["from"])
                types.append(message.get("type", "text"))
                bodies.append(message.get("text", {}).get("body", ""))
                raws.append(orjson.dumps(message).decode())
    tenants = request.app[_TENANTS]
    async with request.app[_POOL].acquire() as conn:
        tenant = tenants.get(channel)
        if tenant is None:
            tenant = tenants[channel] = await conn.fetchval(
                "SELECT tenant FROM channels WHERE id = $1", channel
            )
        await conn.execute(WRITE, tenant, channel, pids, phones, types, bodies, raws)
    return web.json_response({"status": "ok", "messages": len(pids)})


def make_app(database_url: str, pool_max: int) -> web.Application:
    app = web.Application()
    app[_TENANTS] = {}

    async def pool(app: web.Application):  # type: ignore[no-untyped-def]
        app[_POOL] = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_max)
        yield
        await app[_POOL].close()

    app.cleanup_ctx.append(pool)
    app.router.add_get("/health", lambda _: web.json_response({"status": "ok"}))
    app.router.add_post("/webhooks/{channel_type}/{channel_id}", receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--pool-max", type=int, default=10, help="as GUICHE_DB_POOL_MAX")
    args = parser.parse_args()
    web.run_app(
        make_app(args.database_url, args.pool_max),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
