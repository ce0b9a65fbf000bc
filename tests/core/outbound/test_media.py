"""Media upload (types, size, storage), tenant-scoped download, sending, and retention."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData

from guiche.channels import RetryableSendError
from guiche.outbound.sender import send_message
from guiche.outbound.sweeper import media_retention
from tests.conftest import login

from .conftest import Chat, fetch, message_row, services_of_client, settle

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + b"0" * 500 + b"\n%%EOF\n"
OGG = b"OggS\x00\x02" + b"\x01" * 300


def _form(data: bytes, filename: str | None, content_type: str | None) -> FormData:
    form = FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    return form


async def upload(
    client: Any,
    headers: dict[str, str],
    data: bytes = PNG,
    filename: str | None = "foto.png",
    content_type: str | None = "image/png",
) -> Any:
    return await client.post(
        "/api/v1/media", data=_form(data, filename, content_type), headers=headers
    )


async def test_upload_stores_the_file_under_the_tenant_and_downloads_it(
    client, make_company, tmp_path: Path
):
    company = await make_company()
    headers = await login(client, company.owner)

    resp = await upload(client, headers, filename="../../etc/passwd.png")

    assert resp.status == 201, await resp.text()
    media = await resp.json()
    assert media["mime_type"] == "image/png"
    assert media["size"] == len(PNG)
    assert media["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert media["filename"] == "passwd.png"
    stored = tmp_path / "media" / str(company.tenant_id) / uuid.UUID(media["id"]).hex
    assert stored.read_bytes() == PNG
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no partial files

    download = await client.get(f"/api/v1/media/{media['id']}", headers=headers)
    assert download.status == 200
    assert await download.read() == PNG
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["X-Content-Type-Options"] == "nosniff"


async def test_download_is_only_for_the_owning_company(client, make_company):
    owner, stranger = await make_company(), await make_company()
    media = await (await upload(client, await login(client, owner.owner))).json()
    agent = await owner.add("agent")

    assert (
        await client.get(f"/api/v1/media/{media['id']}", headers=await login(client, agent))
    ).status == 200
    strange = await client.get(
        f"/api/v1/media/{media['id']}", headers=await login(client, stranger.owner)
    )
    assert strange.status == 404
    assert (await strange.json())["error"]["code"] == "not_found"
    headers = await login(client, owner.owner)
    assert (await client.get(f"/api/v1/media/{uuid.uuid4()}", headers=headers)).status == 404
    assert (await client.get("/api/v1/media/not-an-id", headers=headers)).status == 404


async def test_type_is_taken_from_the_name_when_the_client_does_not_say(client, make_company):
    headers = await login(client, (await make_company()).owner)
    resp = await upload(
        client, headers, PDF, filename="boleto.pdf", content_type="application/octet-stream"
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["mime_type"] == "application/pdf"
    voice = await upload(client, headers, OGG, filename="audio.ogg", content_type="audio/ogg")
    assert voice.status == 201


async def test_refused_types_and_disguised_content_are_415(client, make_company, tmp_path):
    company = await make_company()
    headers = await login(client, company.owner)
    cases = [
        (b"<html><script>alert(1)</script></html>", "page.html", "text/html", "type_not_allowed"),
        (
            b"MZ\x90\x00" + b"\x00" * 100,
            "setup.exe",
            "application/octet-stream",
            "type_not_allowed",
        ),
        (b"<svg onload=alert(1)>" + b" " * 40, "foto.png", "image/png", "content_mismatch"),
        (b"\x89PNG", "tiny.png", "image/png", "content_mismatch"),
        (b"", "empty.png", "image/png", "empty"),
    ]
    for data, filename, content_type, code in cases:
        resp = await upload(client, headers, data, filename, content_type)
        assert resp.status == 415, (filename, await resp.text())
        assert (await resp.json())["error"]["code"] == f"media_{code}"
    tenant_dir = tmp_path / "media" / str(company.tenant_id)
    assert not tenant_dir.exists() or not any(tenant_dir.iterdir())

    not_multipart = await client.post("/api/v1/media", json={}, headers=headers)
    assert not_multipart.status == 415
    no_file = FormData()
    no_file.add_field("attachment", PNG, filename="foto.png", content_type="image/png")
    missing = await client.post("/api/v1/media", data=no_file, headers=headers)
    assert missing.status == 422


@pytest.mark.parametrize("client_overrides", [{"max_media_bytes": 4096}], indirect=True)
async def test_files_over_the_limit_are_413_and_leave_nothing(client, make_company, tmp_path):
    company = await make_company()
    headers = await login(client, company.owner)

    resp = await upload(client, headers, PNG + b"\x00" * 4096)

    assert resp.status == 413
    error = (await resp.json())["error"]
    assert (error["code"], error["details"]["max_bytes"]) == ("media_too_large", 4096)
    tenant_dir = tmp_path / "media" / str(company.tenant_id)
    assert not tenant_dir.exists() or not any(tenant_dir.iterdir())
    rows = await fetch("SELECT 1 FROM media_files WHERE tenant = {}", company.tenant_id)
    assert rows == []
    assert (await upload(client, headers, PNG)).status == 201


async def test_viewer_cannot_upload(client, make_company):
    company = await make_company()
    viewer = await company.add("viewer")
    resp = await upload(client, await login(client, viewer))
    assert resp.status == 403


async def test_media_message_sends_the_bytes_inline(client, start_chat, fake_plugin):
    chat: Chat = await start_chat()
    media = await (await upload(client, chat.headers)).json()

    resp = await client.post(
        chat.url,
        json={"type": "media", "media_id": media["id"], "caption": "Segue a foto"},
        headers=chat.headers,
    )

    assert resp.status == 202, await resp.text()
    created = await resp.json()
    assert (created["type"], created["body"], created["media_id"]) == (
        "image",
        "Segue a foto",
        media["id"],
    )
    await settle(client)
    [sent] = fake_plugin.provider.sent
    assert sent.kind == "media" and sent.media is not None
    assert (sent.media.kind, sent.media.mime_type, sent.media.caption) == (
        "image",
        "image/png",
        "Segue a foto",
    )
    assert base64.b64decode(sent.media.data_base64 or "") == PNG
    stored = await message_row(created["id"])
    assert stored["status"] == "sent"
    assert "data_base64" not in stored["payload"]["normalised"]["media"]


async def test_media_of_another_company_is_422(client, start_chat, make_company):
    chat = await start_chat()
    stranger = await make_company()
    foreign = await (await upload(client, await login(client, stranger.owner))).json()

    resp = await client.post(
        chat.url, json={"type": "media", "media_id": foreign["id"]}, headers=chat.headers
    )

    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "media_id"


@pytest.mark.parametrize("client_overrides", [{"media_inline_max_bytes": 1024}], indirect=True)
async def test_media_too_big_to_send_inline_is_422(client, start_chat):
    chat = await start_chat()
    big = await (await upload(client, chat.headers)).json()  # PNG is just over 1 KiB

    resp = await client.post(
        chat.url, json={"type": "media", "media_id": big["id"]}, headers=chat.headers
    )

    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "media_too_large_to_send"


async def test_media_deleted_before_the_send_fails_the_message(client, start_chat, fake_plugin):
    """Retention (or a lost disk) between creation and a retry: the send fails cleanly."""
    chat = await start_chat()
    media = await (await upload(client, chat.headers)).json()
    fake_plugin.provider.fail_next(RetryableSendError("busy", retry_after=3600))
    created = await (
        await client.post(
            chat.url, json={"type": "media", "media_id": media["id"]}, headers=chat.headers
        )
    ).json()
    await settle(client)
    await fetch("DELETE FROM media_files WHERE id = {}", uuid.UUID(media["id"]))
    await fetch(
        "UPDATE message_outbox SET next_attempt_at = now() WHERE message_id = {}",
        uuid.UUID(created["id"]),
    )

    outcome = await send_message(created["id"], services=services_of_client(client))

    assert outcome == "failed"
    stored = await message_row(created["id"])
    assert (stored["status"], stored["error"]["code"]) == ("failed", "media_unavailable")
    assert fake_plugin.provider.sent == []


async def test_retention_deletes_old_files_and_keeps_recent_ones(
    client, make_company, tmp_path: Path
):
    company = await make_company()
    headers = await login(client, company.owner)
    old = await (await upload(client, headers)).json()
    recent = await (await upload(client, headers)).json()
    await fetch(
        "UPDATE media_files SET created_at = {} WHERE id = {}",
        dt.datetime.now(dt.UTC) - dt.timedelta(days=91),
        uuid.UUID(old["id"]),
    )

    assert await media_retention(services=services_of_client(client)) >= 1

    folder = tmp_path / "media" / str(company.tenant_id)
    assert not (folder / uuid.UUID(old["id"]).hex).exists()
    assert (folder / uuid.UUID(recent["id"]).hex).exists()
    assert (await client.get(f"/api/v1/media/{old['id']}", headers=headers)).status == 404
    assert (await client.get(f"/api/v1/media/{recent['id']}", headers=headers)).status == 200
