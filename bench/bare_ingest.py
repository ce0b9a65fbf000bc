"""The ingest ceiling: a bare aiohttp app that stores each webhook with one asyncpg INSERT.

No middlewares, no signature check, no contacts or conversations: read the body, pull
out the messages, insert equivalent rows (the columns of `messages`) in one statement,
answer 200. What Guichê does per webhook is a superset of this, so the ratio of the two
says how much the framework and the domain work cost on this machine. It listens on the
same path shape as Guichê's webhook so the load generator needs no changes.

    python -m bench.bare_ingest --port 8766 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import uuid

import asyncpg
import orjson
from aiohttp import web

TABLE = "bench_ceiling_messages"

CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    tenant uuid NOT NULL,
    channel uuid NOT NULL,
    direction varchar(3) NOT NULL DEFAULT 'in',
    type varchar(20) NOT NULL DEFAULT 'text',
    body text NOT NULL DEFAULT '',
    payload jsonb NOT NULL DEFAULT '{{}}',
    provider_message_id varchar(200) NOT NULL,
    sender_phone varchar(40) NOT NULL,
    status varchar(10) NOT NULL DEFAULT 'received',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at),
    UNIQUE (channel, provider_message_id)
)
"""

INSERT = f"""
INSERT INTO {TABLE} (tenant, channel, type, body, payload, provider_message_id, sender_phone)
SELECT $1, $2, m.type, m.body, m.payload, m.wamid, m.phone
FROM unnest($3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[])
    AS m(type, body, payload, wamid, phone)
ON CONFLICT (channel, provider_message_id) DO NOTHING
"""

_POOL = web.AppKey("pool", asyncpg.Pool)
_TENANT = uuid.UUID(int=1)


async def receive(request: web.Request) -> web.Response:
    channel = uuid.UUID(request.match_info["channel_id"])
    payload = orjson.loads(await request.read())
    types, bodies, raws, wamids, phones = [], [], [], [], []
    for entry in payload.get("entry", []):
        for change in entry.get("changes", []):
            for message in change.get("value", {}).get("messages", []):
                types.append(message.get("type", "text"))
                bodies.append(message.get("text", {}).get("body", ""))
                raws.append(orjson.dumps(message).decode())
                wamids.append(message["id"])
                phones.append(message["from"])
    async with request.app[_POOL].acquire() as conn:
        await conn.execute(INSERT, _TENANT, channel, types, bodies, raws, wamids, phones)
    return web.json_response({"status": "ok", "messages": len(wamids)})


def make_app(database_url: str, pool_max: int) -> web.Application:
    app = web.Application()

    async def pool(app: web.Application):  # type: ignore[no-untyped-def]
        app[_POOL] = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_max)
        async with app[_POOL].acquire() as conn:
            await conn.execute(CREATE)
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
