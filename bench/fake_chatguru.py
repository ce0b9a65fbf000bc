"""A synthetic ChatGuru panel for `bench.chatguru`, in its own process.

    python -m bench.fake_chatguru --port P --chats N --per-chat M
        [--page-size 100] [--chat-page-size 100]

The shapes are those of `tests/fixtures/chatguru` (and the tests' fake): `POST /login`
sets the `session` cookie, `POST /chatlist/store` pages chats most recently updated first
(answered as text/html, as the panel may), `GET /messages2/{chat}/page/{n}` answers page 1
as the newest items, chronological inside the page, each older page repeating the newest
item of the page before it. Nothing is held per message: chat i's message j is a pure
function of (i, j), so a million messages cost no memory; only the messages added live
(`POST /_add`) are kept.

Control routes for the benchmark: `POST /_add {"count": K}` adds one message to K
random chats now (their `updated` moves, as the panel's does) and answers the ids with
the epoch time they were added; `POST /_visible {"chats": N}` lists only chats 0 .. N-1
(null: all of them); `GET /_stats` counts the panel calls.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

SESSION = "bench-session-token"
BASE_MS = 1_735_700_000_000  # 2025-01-01: the catalogued history lies in the past
STEP_MS = 60_000


def chat_id(i: int) -> str:
    return f"c{i:023x}"


def _chat_index(value: str) -> int | None:
    if len(value) != 24 or not value.startswith("c"):
        return None
    try:
        return int(value[1:], 16)
    except ValueError:
        return None


def _item(oid: str, at_ms: int, text: str, is_out: bool, number: str) -> dict[str, Any]:
    """One `messages_and_notes` entry in the fixtures' shape."""
    return {
        "type": "message",
        "date": {"$date": at_ms},
        "m": {
            "_id": {"$oid": oid},
            "wa_message_id": f"{str(is_out).lower()}_{number}@c.us_{oid.upper()}",
            "text": text,
            "type": "chat",
            "is_out": is_out,
            "status": "read",
            "timestamp": {"$date": at_ms},
        },
    }


@dataclass
class Panel:
    """N chats of M generated messages each, plus whatever was added live."""

    chats: int
    per_chat: int
    page_size: int = 100
    chat_page_size: int = 100
    seed: int = 16
    updated: list[int] = field(default_factory=list)
    added: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    live_counter: int = 0
    #: The chat list shows chats 0 .. visible - 1 (all when None): the benchmark catalogs
    #: the account in rounds, each one a larger part of it.
    visible: int | None = None

    def __post_init__(self) -> None:
        self.updated = [self._base_ms(i, self.per_chat - 1) for i in range(self.chats)]
        self.random = random.Random(self.seed)

    @staticmethod
    def _base_ms(i: int, j: int) -> int:
        return BASE_MS + (i % 1000) * 1000 + j * STEP_MS

    def number(self, i: int) -> str:
        return f"55119{i:08d}"

    def message(self, i: int, j: int) -> dict[str, Any]:
        """Chat i's j-th message (0 = oldest): generated, or one added live."""
        number = self.number(i)
        if j < self.per_chat:
            oid = f"{i:010x}{j:014x}"
            text = f"Oi, boa tarde! Pedido #{i}-{j} ainda não chegou. Podem verificar?"
            return _item(oid, self._base_ms(i, j), text, j % 3 == 2, number)
        oid, at_ms = self.added[i][j - self.per_chat]
        return _item(oid, at_ms, f"Mensagem nova {oid[-6:]}", False, number)

    def chat(self, i: int) -> dict[str, Any]:
        at = self.updated[i]
        return {
            "id": chat_id(i),
            "name": f"Cliente {i}",
            "wa_chat_id": f"{self.number(i)}@c.us",
            "kind": "chat",
            "phone_id": "e48624590c8e11c46bb0fb57",
            "status": "ABERTO",
            "archived": False,
            "tags": [],
            "users_delegated_ids": [],
            "updated": {"$date": at},
            "last_message": {"text": "", "date": {"$date": at}},
        }

    @property
    def shown(self) -> int:
        return self.chats if self.visible is None else min(self.visible, self.chats)

    def count(self, i: int) -> int:
        return self.per_chat + len(self.added.get(i, ()))

    def add(self, count: int) -> list[tuple[str, float]]:
        """One new message in each of `count` distinct random chats, stamped now."""
        out: list[tuple[str, float]] = []
        for i in self.random.sample(range(self.chats), min(count, self.chats)):
            now = time.time()
            self.live_counter += 1
            oid = f"f{i:09x}{self.live_counter:014x}"
            at_ms = int(now * 1000)
            self.added.setdefault(i, []).append((oid, at_ms))
            self.updated[i] = at_ms
            out.append((oid, now))
        return out

    # --- routes -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/login", self._login)
        app.router.add_post("/chatlist/store", self._chatlist)
        app.router.add_get("/messages2/{chat_id}/page/{page}", self._messages)
        app.router.add_post("/_add", self._add)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/_visible", self._visible)
        return app

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def _login(self, request: web.Request) -> web.Response:
        self._count("login")
        await request.post()
        response = web.HTTPFound("/")
        response.set_cookie("session", SESSION, httponly=True)
        raise response

    async def _chatlist(self, request: web.Request) -> web.Response:
        self._count("chatlist")
        if request.cookies.get("session") != SESSION:
            raise web.HTTPFound("/login?next=/chatlist")
        body = orjson.loads(await request.read())
        page = int(body.get("page_num", 0))
        archived = body.get("filter_archived") == "True"
        order = (
            []
            if archived
            else sorted(range(self.shown), key=self.updated.__getitem__, reverse=True)
        )
        size = self.chat_page_size
        part = [self.chat(i) for i in order[page * size : (page + 1) * size]]
        answer = {
            "total_chats": len(order),
            "total_returned": len(part),
            "page_num": page,
            "chats": part,
        }
        return web.Response(body=orjson.dumps(answer), content_type="text/html")

    async def _messages(self, request: web.Request) -> web.Response:
        self._count("messages")
        if request.cookies.get("session") != SESSION:
            raise web.HTTPFound("/login")
        i = _chat_index(request.match_info["chat_id"])
        page = int(request.match_info["page"])
        part: list[dict[str, Any]] = []
        if i is not None and 0 <= i < self.chats and page >= 1:
            total = self.count(i)
            end = total - (page - 1) * self.page_size
            if end > 0:
                start = max(0, end - self.page_size)
                stop = min(total, end + (1 if page > 1 else 0))  # overlap with the newer page
                part = [self.message(i, j) for j in range(start, stop)]
        answer = {
            "cst": "EM ATENDIMENTO",
            "count_msg_sent": 0,
            "count_msg_sent_paginated": 2,
            "messages_and_notes": part,
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _add(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        added = self.add(int(body.get("count", 1)))
        return web.Response(body=orjson.dumps({"added": added}), content_type="application/json")

    async def _visible(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.visible = body.get("chats")
        return web.Response(body=orjson.dumps({"shown": self.shown}))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps({"calls": self.calls}), content_type="application/json"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chats", type=int, required=True)
    parser.add_argument("--per-chat", type=int, required=True)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--chat-page-size", type=int, default=100)
    args = parser.parse_args()
    panel = Panel(args.chats, args.per_chat, args.page_size, args.chat_page_size)
    web.run_app(panel.app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
