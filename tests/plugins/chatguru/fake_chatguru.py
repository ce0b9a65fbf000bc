"""A fake ChatGuru panel + API v1 (aiohttp) built from the fixtures' shapes.

- `POST /login` (form email/password) sets the `session` cookie; a panel call without a
  live session is redirected to `/login` (how an expired session looks).
- `POST /chatlist/store` pages chats (`chat_page_size` per page, most recently updated
  first, 0-based `page_num`, `filter_archived == "True"` for archived ones only) and
  answers as text/html, as the panel may.
- `GET /messages2/{chat}/page/{n}`: page 1 is the newest `page_size` items, chronological
  inside the page; every older page repeats the newest item of the page before it (the
  overlap the fixtures show); past the end, an empty page.
- `POST /api/v1`: `message_send`, `message_status`, `chat_add` with the key.
- `fail_next(path_part, status, headers)` scripts failures (429 with Retry-After, 500).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.conftest import FIXTURES_DIR

FIXTURES = Path(FIXTURES_DIR) / "chatguru"
EMAIL = "ops@loja.example"
PASSWORD = "s3nha-do-painel"
API_KEY = "CG-KEY-0123456789"
ACCOUNT_ID = "7b2a88a519c5cda48c727eec"
PHONE_ID = "e48624590c8e11c46bb0fb57"
ANA_CHAT = "b7437d92e881a1814149a47e"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class FakeChatGuru:
    email: str = EMAIL
    password: str = PASSWORD
    api_key: str = API_KEY
    page_size: int = 4
    chat_page_size: int = 2
    chats: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    failures: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    logins: int = 0
    sent: list[dict[str, str]] = field(default_factory=list)
    message_delay: float = 0.0

    @classmethod
    def from_fixtures(cls, **kwargs: Any) -> FakeChatGuru:
        """The fixtures' three chats; Ana's history is exactly pages 1 and 2 of the
        fixtures (6 messages and a note), the others get generated messages."""
        fake = cls(**kwargs)
        for chat in load("chatlist_page1.json")["chats"]:
            fake.chats[chat["id"]] = copy.deepcopy(chat)
        page1 = load("messages_page1.json")["messages_and_notes"]
        page2 = load("messages_page2.json")["messages_and_notes"]
        history: list[dict[str, Any]] = []
        seen: set[str] = set()
        for item in page2 + page1:
            key = (item.get("m") or item.get("n"))["_id"]["$oid"]
            if key not in seen:
                seen.add(key)
                history.append(item)
        fake.items[ANA_CHAT] = history
        base = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
        for n, chat_id in enumerate(("c1ef367622b640f500637aab", "1282877ba1399138c8b0865c")):
            fake.items[chat_id] = []
            for i in range(5 + n * 4):
                at = base + dt.timedelta(minutes=i)
                fake.add_message(chat_id, f"mensagem {i}", at=at, is_out=i % 2 == 1, touch=False)
        return fake

    # --- scripting --------------------------------------------------------------------

    def add_chat(self, wa_chat_id: str, name: str, *, at: dt.datetime) -> str:
        chat_id = uuid.uuid4().hex[:24]
        self.chats[chat_id] = {
            "id": chat_id,
            "name": name,
            "wa_chat_id": wa_chat_id,
            "kind": "chat",
            "phone_id": PHONE_ID,
            "status": "ABERTO",
            "archived": False,
            "tags": [],
            "users_delegated_ids": [],
            "updated": {"$date": ms(at)},
            "last_message": {"text": "", "date": {"$date": ms(at)}},
        }
        self.items[chat_id] = []
        return chat_id

    def add_message(
        self,
        chat_id: str,
        text: str,
        *,
        at: dt.datetime | None = None,
        is_out: bool = False,
        touch: bool = True,
    ) -> str:
        """A new message upstream (the chat's `updated` moves, as the panel's does)."""
        at = at or dt.datetime.now(dt.UTC)
        oid = uuid.uuid4().hex[:24]
        number = self.chats[chat_id]["wa_chat_id"]
        self.items[chat_id].append(
            {
                "type": "message",
                "date": {"$date": ms(at)},
                "m": {
                    "_id": {"$oid": oid},
                    "wa_message_id": f"{str(is_out).lower()}_{number}_{oid.upper()}",
                    "text": text,
                    "type": "chat",
                    "is_out": is_out,
                    "status": "read",
                    "timestamp": {"$date": ms(at)},
                },
            }
        )
        if touch:
            self.chats[chat_id]["updated"] = {"$date": ms(at)}
            self.chats[chat_id]["last_message"] = {"text": text, "date": {"$date": ms(at)}}
        return oid

    def add_odd(self, chat_id: str) -> None:
        """An item the parser cannot use (no id, no date)."""
        self.items[chat_id].append({"type": "message", "m": {"text": "sem id"}})

    def fail_next(self, path_part: str, status: int, headers: dict[str, str] | None = None) -> None:
        self.failures.append((path_part, status, headers or {}))

    def expire_sessions(self) -> None:
        self.sessions.clear()

    def calls_to(self, path_part: str) -> list[tuple[str, str]]:
        return [call for call in self.calls if path_part in call[1]]

    def message_count(self) -> int:
        """Messages with an id upstream (notes and odd items excluded)."""
        items = [item for chat in self.items.values() for item in chat]
        return sum(1 for item in items if "_id" in item.get("m", {}))

    # --- the server -------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/login", self._login)
        app.router.add_post("/chatlist/store", self._chatlist)
        app.router.add_get("/messages2/{chat_id}/page/{page}", self._messages)
        app.router.add_post("/api/v1", self._api)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        for index, (part, status, headers) in enumerate(self.failures):
            if part in request.path:
                del self.failures[index]
                return web.json_response({"error": "scripted"}, status=status, headers=headers)
        return await handler(request)

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("email") != self.email or form.get("password") != self.password:
            return web.Response(text="<html><form action='/login'>", content_type="text/html")
        token = uuid.uuid4().hex
        self.sessions.add(token)
        self.logins += 1
        response = web.HTTPFound("/")
        response.set_cookie("session", token, httponly=True)
        raise response

    def _authorised(self, request: web.Request) -> bool:
        return request.cookies.get("session") in self.sessions

    async def _chatlist(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            raise web.HTTPFound("/login?next=/chatlist")
        body = await request.json()
        page = int(body.get("page_num", 0))
        chats = list(self.chats.values())
        if body.get("filter_archived") == "True":
            chats = [chat for chat in chats if chat.get("archived")]
        chats.sort(key=lambda chat: chat["updated"]["$date"], reverse=True)
        size = self.chat_page_size
        part = chats[page * size : (page + 1) * size]
        answer = {
            "total_chats": len(chats),
            "total_returned": len(part),
            "page_num": page,
            "chats": part,
        }
        return web.Response(text=json.dumps(answer), content_type="text/html")

    async def on_messages(self, chat_id: str, page: int) -> None:
        """Awaited before a message page is answered (tests slow or stop it here): waits
        `message_delay` seconds."""
        if self.message_delay:
            await asyncio.sleep(self.message_delay)

    async def _messages(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            raise web.HTTPFound("/login")
        await self.on_messages(request.match_info["chat_id"], int(request.match_info["page"]))
        items = self.items.get(request.match_info["chat_id"], [])
        page = int(request.match_info["page"])
        end = len(items) - (page - 1) * self.page_size
        start = max(0, end - self.page_size)
        if end <= 0 or page < 1:
            part: list[dict[str, Any]] = []
        else:
            part = items[start : end + (1 if page > 1 else 0)]  # overlap with the newer page
        sent = sum(1 for item in items if "m" in item)
        return web.json_response(
            {
                "cst": "EM ATENDIMENTO",
                "count_msg_sent": sent,
                "count_msg_sent_paginated": 2,
                "messages_and_notes": part,
            }
        )

    async def _api(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("key") != self.api_key:
            return web.json_response(load("api_error.json"), status=400)
        action = form.get("action")
        if action == "message_send":
            self.sent.append({k: str(v) for k, v in form.items()})
            return web.json_response(load("api_message_send_ok.json"), status=201)
        if action == "message_status":
            return web.json_response(load("api_message_status_ok.json"))
        if action == "chat_add":
            return web.json_response({"result": "success", "code": 201}, status=201)
        return web.json_response(load("api_error.json"), status=400)
