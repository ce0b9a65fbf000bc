"""Channels over HTTP: plugin-provided types, validated and encrypted credentials, masking,
merging on PATCH, key rotation and soft delete. Also the cipher itself."""

from __future__ import annotations

import uuid

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel, Field, SecretStr

from guiche.channels import (
    ChannelAdapter,
    OutboundMessage,
    PermanentSendError,
    SendResult,
    WebhookBatch,
    WebhookRequest,
)
from guiche.foundation.config import ConfigError
from guiche.foundation.crypto import CredentialCipher, CredentialsUnreadable, mask_credentials
from guiche.models import AuditLog, Channel, TenantPlugin
from guiche.plugin import ChannelSpec, PluginInfo, hookimpl
from tests.conftest import login

SECRET = "EAAG-access-token-0b7e1d"


# --- the cipher and masking (pure) ----------------------------------------------------------


def test_cipher_round_trip_and_rotation():
    # Long enough that random base64 never contains it ("abc" did, 1 run in ~2,500).
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = CredentialCipher([old]).encrypt({"token": SECRET, "n": 1})
    assert SECRET not in token
    rotated_cipher = CredentialCipher([new, old])
    assert rotated_cipher.decrypt(token) == {"token": SECRET, "n": 1}
    rotated = rotated_cipher.rotate(token)
    assert CredentialCipher([new]).decrypt(rotated) == {"token": SECRET, "n": 1}
    with pytest.raises(CredentialsUnreadable):
        CredentialCipher([new]).decrypt(token)
    assert CredentialCipher([new]).decrypt("") == {}


def test_cipher_needs_valid_keys():
    with pytest.raises(ConfigError, match="GUICHE_ENCRYPTION_KEYS: required"):
        CredentialCipher([])
    with pytest.raises(ConfigError, match="key #2 is not a valid Fernet key"):
        CredentialCipher([Fernet.generate_key().decode(), "short"])


def test_masking_shows_only_the_last_four_of_long_strings():
    masked = mask_credentials(
        {"token": "EAAB-secret-1234", "pin": "1234", "port": 8080, "nested": {"key": "abcdefgh"}}
    )
    assert masked == {
        "token": "****1234",
        "pin": "****",
        "port": "****",
        "nested": {"key": "****efgh"},
    }


# --- a fake channel plugin ---------------------------------------------------------------------


class FakeCredentials(BaseModel):
    token: SecretStr = Field(min_length=8)
    account_id: str = Field(min_length=1)
    sandbox: bool = False


class FakeAdapter(ChannelAdapter):
    """Channel CRUD only stores configuration; lifecycle hooks are no-ops."""

    config_model = FakeCredentials

    async def send(self, message: OutboundMessage) -> SendResult:
        raise PermanentSendError("not used in these tests")

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        return WebhookBatch()


class FakeChannelPlugin:
    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="fakechan", version="1.0", description="test channel")

    @hookimpl
    def guiche_channel_types(self) -> list[ChannelSpec]:
        return [
            ChannelSpec(type="fakechan", adapter=FakeAdapter, credentials_model=FakeCredentials)
        ]


PLUGINS = (("fakechan", FakeChannelPlugin()),)
CREDENTIALS = {"token": "EAAB-very-secret-9876", "account_id": "acct-42"}


@pytest.fixture
async def chan_client(make_client):
    return await make_client(extra_plugins=PLUGINS)


async def enable_fakechan(tenant_id: uuid.UUID) -> None:
    await TenantPlugin.insert(TenantPlugin(tenant=tenant_id, plugin="fakechan", enabled=True))


async def _create(client, headers, **extra) -> dict:
    body = {"type": "fakechan", "name": "WhatsApp Loja", "credentials": CREDENTIALS, **extra}
    resp = await client.post("/api/v1/channels", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _stored(channel_id: str, key: str) -> dict:
    row = (
        await Channel.select(Channel.credentials_encrypted).where(Channel.id == channel_id).first()
    )
    assert "very-secret" not in row["credentials_encrypted"]
    return CredentialCipher([key]).decrypt(row["credentials_encrypted"])


# --- HTTP ---------------------------------------------------------------------------------------


async def test_create_encrypts_and_masks(chan_client, make_company, encryption_key):
    client = chan_client
    company = await make_company()
    await enable_fakechan(company.tenant_id)
    headers = await login(client, company.owner)
    resp = await client.post("/api/v1/departments", json={"name": "Vendas"}, headers=headers)
    department_id = (await resp.json())["id"]
    channel = await _create(
        client, headers, phone="(31) 98888-7777", default_department_id=department_id
    )
    assert channel["credentials"] == {"token": "****9876", "account_id": "****", "sandbox": "****"}
    assert (channel["type"], channel["phone"], channel["state"]) == (
        "fakechan",
        "+5531988887777",
        "provisioned",
    )
    assert channel["default_department_id"] == department_id
    assert channel["is_active"] is True
    assert await _stored(channel["id"], encryption_key) == {**CREDENTIALS, "sandbox": False}
    resp = await client.get(f"/api/v1/channels/{channel['id']}", headers=headers)
    assert await resp.json() == channel
    listed = await (await client.get("/api/v1/channels", headers=headers)).json()
    assert [c["id"] for c in listed["items"]] == [channel["id"]]
    assert "very-secret" not in str(listed)
    audit = (
        await AuditLog.select(AuditLog.action, AuditLog.data)
        .where(AuditLog.target_id == channel["id"])
        .output(load_json=True)
    )
    assert audit == [
        {"action": "channel.create", "data": {"type": "fakechan", "name": "WhatsApp Loja"}}
    ]


async def test_type_must_come_from_an_enabled_plugin(chan_client, make_company):
    client = chan_client
    company = await make_company()
    headers = await login(client, company.owner)
    body = {"type": "fakechan", "name": "X", "credentials": CREDENTIALS}
    resp = await client.post("/api/v1/channels", json=body, headers=headers)
    assert resp.status == 404  # as the plugin's own routes answer a company without it
    error = (await resp.json())["error"]
    assert error["code"] == "plugin_not_enabled"
    assert error["details"] == {"plugin": "fakechan", "field": "type"}
    await enable_fakechan(company.tenant_id)
    resp = await client.post(
        "/api/v1/channels", json={**body, "type": "telepathy"}, headers=headers
    )
    assert resp.status == 422
    assert "unknown channel type" in (await resp.json())["error"]["details"][0]["message"]
    assert await Channel.count().where(Channel.tenant == company.tenant_id) == 0


async def test_validation_lists_credential_fields(chan_client, make_company):
    client = chan_client
    company = await make_company()
    await enable_fakechan(company.tenant_id)
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/channels",
        json={"type": "fakechan", "name": "X", "credentials": {"token": "short", "sandbox": "x"}},
        headers=headers,
    )
    assert resp.status == 422
    fields = {d["field"] for d in (await resp.json())["error"]["details"]}
    assert fields == {"credentials.token", "credentials.account_id", "credentials.sandbox"}
    resp = await client.post(
        "/api/v1/channels", json={"type": "", "credentials": "nope"}, headers=headers
    )
    fields = {d["field"] for d in (await resp.json())["error"]["details"]}
    assert fields == {"type", "name", "credentials"}
    base = {"type": "fakechan", "name": "X", "credentials": CREDENTIALS}
    resp = await client.post("/api/v1/channels", json={**base, "phone": "123"}, headers=headers)
    assert (await resp.json())["error"]["details"][0]["field"] == "phone"
    # A foreign number is checked in its own country, and the error says which.
    resp = await client.post(
        "/api/v1/channels", json={**base, "phone": "+44 20 7183"}, headers=headers
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["details"] == [
        {"field": "phone", "message": "not a valid phone number for region GB"}
    ]
    # Meta's test numbers (+1 555 ...) belong to no numbering plan, but channels use them.
    resp = await client.post(
        "/api/v1/channels", json={**base, "phone": "+1 555-168-2817"}, headers=headers
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["phone"] == "+15551682817"
    resp = await client.post(
        "/api/v1/channels",
        json={**base, "default_department_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert (await resp.json())["error"]["details"][0]["field"] == "default_department_id"


async def test_patch_merges_and_revalidates_credentials(chan_client, make_company, encryption_key):
    client = chan_client
    company = await make_company()
    await enable_fakechan(company.tenant_id)
    headers = await login(client, company.owner)
    channel = await _create(client, headers)
    url = f"/api/v1/channels/{channel['id']}"
    resp = await client.patch(
        url, json={"name": "Renamed", "credentials": {"account_id": "acct-43"}}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["name"] == "Renamed"
    stored = await _stored(channel["id"], encryption_key)
    assert stored == {"token": CREDENTIALS["token"], "account_id": "acct-43", "sandbox": False}
    # the masked form sent back unchanged keeps the real secret
    masked = (await (await client.get(url, headers=headers)).json())["credentials"]
    resp = await client.patch(
        url,
        json={"credentials": {**masked, "account_id": "acct-44", "sandbox": True}},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    stored = await _stored(channel["id"], encryption_key)
    assert stored == {"token": CREDENTIALS["token"], "account_id": "acct-44", "sandbox": True}
    # invalid merged credentials are refused and nothing changes
    resp = await client.patch(url, json={"credentials": {"token": "tiny"}}, headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "credentials.token"
    assert await _stored(channel["id"], encryption_key) == stored
    resp = await client.patch(url, json={"credentials": {"account_id": None}}, headers=headers)
    assert (await resp.json())["error"]["details"][0]["field"] == "credentials.account_id"
    resp = await client.patch(
        url, json={"credentials": {"token": "new-token-5555"}, "phone": None}, headers=headers
    )
    data = await resp.json()
    assert data["credentials"]["token"] == "****5555" and data["phone"] is None


async def test_delete_is_soft(chan_client, make_company):
    client = chan_client
    company = await make_company()
    await enable_fakechan(company.tenant_id)
    headers = await login(client, company.owner)
    channel = await _create(client, headers)
    url = f"/api/v1/channels/{channel['id']}"
    assert (await client.delete(url, headers=headers)).status == 204
    row = await Channel.select(Channel.is_active).where(Channel.id == channel["id"]).first()
    assert row == {"is_active": False}
    assert (await (await client.get("/api/v1/channels", headers=headers)).json())["items"] == []
    listed = await (
        await client.get("/api/v1/channels?include_inactive=true", headers=headers)
    ).json()
    assert [c["id"] for c in listed["items"]] == [channel["id"]]
    assert (await (await client.get(url, headers=headers)).json())["is_active"] is False


async def test_reactivation_provisions_again_and_shows_it(chan_client, make_company):
    client = chan_client
    company = await make_company()
    await enable_fakechan(company.tenant_id)
    headers = await login(client, company.owner)
    channel = await _create(client, headers)
    url = f"/api/v1/channels/{channel['id']}"
    assert (await client.delete(url, headers=headers)).status == 204
    shown = await (await client.get(url, headers=headers)).json()
    assert (shown["state"], shown["state_detail"]) == ("disconnected", "deactivated")
    resp = await client.patch(url, json={"is_active": True}, headers=headers)
    assert resp.status == 200, await resp.text()
    shown = await resp.json()
    assert (shown["is_active"], shown["state"], shown["state_detail"]) == (
        True,
        "provisioned",
        "",
    )


async def test_key_rotation_and_missing_key(make_client, make_company, encryption_key):
    client = await make_client(extra_plugins=PLUGINS)
    company = await make_company()
    await enable_fakechan(company.tenant_id)
    channel = await _create(client, await login(client, company.owner))
    new_key = Fernet.generate_key().decode()
    rotated = await make_client(extra_plugins=PLUGINS, encryption_keys=[new_key, encryption_key])
    headers = await login(rotated, company.owner)
    url = f"/api/v1/channels/{channel['id']}"
    assert (await (await rotated.get(url, headers=headers)).json())["credentials"] == channel[
        "credentials"
    ]
    resp = await rotated.patch(url, json={"credentials": {"sandbox": True}}, headers=headers)
    assert resp.status == 200
    assert (await _stored(channel["id"], new_key))["sandbox"] is True

    keyless = await make_client(extra_plugins=PLUGINS, encryption_keys=[])
    headers = await login(keyless, company.owner)
    resp = await keyless.post(
        "/api/v1/channels",
        json={"type": "fakechan", "name": "Y", "credentials": CREDENTIALS},
        headers=headers,
    )
    assert resp.status == 503
    error = (await resp.json())["error"]
    assert error["code"] == "encryption_not_configured"
    assert "GUICHE_ENCRYPTION_KEYS" in error["message"]
    assert (await (await keyless.get(url, headers=headers)).json())["credentials"] is None


async def test_roles(chan_client, make_company):
    client = chan_client
    company = await make_company()
    await enable_fakechan(company.tenant_id)
    supervisor = await login(client, await company.add("supervisor"))
    agent = await login(client, await company.add("agent"))
    assert (await client.get("/api/v1/channels", headers=supervisor)).status == 200
    assert (await client.get("/api/v1/channels", headers=agent)).status == 403
    resp = await client.post(
        "/api/v1/channels",
        json={"type": "fakechan", "name": "X", "credentials": CREDENTIALS},
        headers=supervisor,
    )
    assert resp.status == 403
