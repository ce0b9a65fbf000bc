"""The per-process cache of loaded channels, tenants' plugin settings and companies' own
settings (`guiche.runtime.cache`): hits run no query, changes made through the API take effect at
once in the same process and, over Redis, in the others; the TTL is the safety net and 0
turns the cache off."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest

from guiche.channel_host.runtime import channel_changed, load_channel_adapter
from guiche.companies.enablement import enabled_settings, plugins_changed
from guiche.contacts.locale import CompanyLocale, company_locale
from guiche.contacts.phones import tenant_region
from guiche.models import Channel, Department, Tenant, TenantPlugin
from guiche.realtime.bus import RECONNECTED
from guiche.runtime.cache import CHANNEL, RuntimeCache
from guiche.runtime.services import SERVICES, Services
from guiche.testing import FAKE_SIGNATURE_HEADER, FakeChannelPlugin, fake_webhook_body, sign_fake
from tests.conftest import Company, login

from .conversations.conftest import text_message

PLUGIN = FakeChannelPlugin.name


def services_of(client: Any) -> Services:
    return client.app[SERVICES]


@pytest.fixture
def fake_plugin() -> FakeChannelPlugin:
    return FakeChannelPlugin()


@pytest.fixture
async def client(make_client: Any, fake_plugin: FakeChannelPlugin) -> Any:
    return await make_client(extra_plugins=((fake_plugin.name, fake_plugin),))


async def enable_over_api(client: Any, headers: dict[str, str], enabled: bool = True) -> None:
    resp = await client.put(f"/api/v1/plugins/{PLUGIN}", json={"enabled": enabled}, headers=headers)
    assert resp.status == 200, await resp.text()


async def create_channel(client: Any, headers: dict[str, str], secret: str = "first-secret") -> str:
    resp = await client.post(
        "/api/v1/channels",
        json={"type": "fake", "name": "Cached", "credentials": {"webhook_secret": secret}},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def post_webhook(client: Any, channel_id: str, secret: str) -> Any:
    body = fake_webhook_body([text_message(phone=f"55119{uuid.uuid4().int % 10**8:08d}")])
    return await client.post(
        f"/webhooks/fake/{channel_id}",
        data=body,
        headers={
            FAKE_SIGNATURE_HEADER: sign_fake(body, secret),
            "Content-Type": "application/json",
        },
    )


async def new_department(tenant_id: uuid.UUID) -> uuid.UUID:
    department = Department(tenant=tenant_id, name=f"Dept {uuid.uuid4().hex[:6]}")
    await department.save()
    return department.id


async def and_notice_delivered(services: Services, change: Awaitable[Any]) -> None:
    """Run `change` (in another process) and wait until `services`' bus has delivered the
    cache notice it publishes: pub/sub is asynchronous, and the cache, listening first,
    has acted on it by then."""
    arrived = asyncio.Event()
    stop = services.bus.on_notice(lambda notice: arrived.set())
    try:
        await change
        async with asyncio.timeout(10):
            await arrived.wait()
    finally:
        stop()


@pytest.fixture
async def ready(client: Any, make_company: Any) -> tuple[Company, dict[str, str], str]:
    """A company with the fake plugin enabled and one channel, all through the API."""
    company = await make_company()
    headers = await login(client, company.owner)
    await enable_over_api(client, headers)
    return company, headers, await create_channel(client, headers)


# --- hits run no query -----------------------------------------------------------------------


async def test_a_hit_reuses_the_adapter_and_runs_no_query(
    client: Any, ready: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    company, _, channel_id = ready
    services = services_of(client)
    first = await load_channel_adapter(services, uuid.UUID(channel_id))
    assert first is not None

    queries: list[str] = []
    for table in (Channel, TenantPlugin):
        original = table.select

        def counting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            queries.append("select")
            return _original(*args, **kwargs)

        monkeypatch.setattr(table, "select", counting)
    # The row changes behind the cache's back: a hit does not see it.
    await Channel.update({Channel.name: "Renamed by hand"}).where(
        Channel.id == uuid.UUID(channel_id)
    )
    again = await load_channel_adapter(services, uuid.UUID(channel_id), channel_type="fake")
    assert again is first and again.adapter is first.adapter
    assert again.info.name == "Cached"
    assert await enabled_settings(services, company.tenant_id) == {PLUGIN: {}}
    assert queries == []

    await channel_changed(services, uuid.UUID(channel_id))
    rebuilt = await load_channel_adapter(services, uuid.UUID(channel_id))
    assert rebuilt is not None and rebuilt is not first
    assert rebuilt.info.name == "Renamed by hand"
    assert queries == ["select"]  # the channel row; the plugin settings are still cached


async def test_a_wrong_type_in_the_url_is_still_none_when_cached(client: Any, ready: Any) -> None:
    _, _, channel_id = ready
    services = services_of(client)
    assert await load_channel_adapter(services, uuid.UUID(channel_id)) is not None
    assert await load_channel_adapter(services, uuid.UUID(channel_id), channel_type="x") is None


# --- changes through the API take effect at once in the same process ---------------------------


async def test_patched_default_department_applies_to_the_next_webhook(
    client: Any, ready: Any
) -> None:
    company, headers, channel_id = ready
    assert (await post_webhook(client, channel_id, "first-secret")).status == 200  # cached now
    department = await new_department(company.tenant_id)
    resp = await client.patch(
        f"/api/v1/channels/{channel_id}",
        json={"default_department_id": str(department)},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()

    assert (await post_webhook(client, channel_id, "first-secret")).status == 200
    rows = await Channel.raw(
        "SELECT department FROM conversations WHERE channel = {} ORDER BY created_at",
        uuid.UUID(channel_id),
    )
    assert [row["department"] for row in rows] == [None, department]


async def test_patched_credentials_apply_to_the_next_webhook(client: Any, ready: Any) -> None:
    _, headers, channel_id = ready
    assert (await post_webhook(client, channel_id, "first-secret")).status == 200
    resp = await client.patch(
        f"/api/v1/channels/{channel_id}",
        json={"credentials": {"webhook_secret": "second-secret"}},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()

    assert (await post_webhook(client, channel_id, "first-secret")).status == 401
    assert (await post_webhook(client, channel_id, "second-secret")).status == 200


@pytest.mark.parametrize("how", ["delete", "patch"])
async def test_a_deactivated_channel_is_404_right_away(client: Any, ready: Any, how: str) -> None:
    _, headers, channel_id = ready
    assert (await post_webhook(client, channel_id, "first-secret")).status == 200
    if how == "delete":
        resp = await client.delete(f"/api/v1/channels/{channel_id}", headers=headers)
        assert resp.status == 204
    else:
        resp = await client.patch(
            f"/api/v1/channels/{channel_id}", json={"is_active": False}, headers=headers
        )
        assert resp.status == 200

    resp = await post_webhook(client, channel_id, "first-secret")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "channel_not_found"

    resp = await client.patch(
        f"/api/v1/channels/{channel_id}", json={"is_active": True}, headers=headers
    )
    assert resp.status == 200
    assert (await post_webhook(client, channel_id, "first-secret")).status == 200


async def test_a_disabled_plugin_is_404_right_away(client: Any, ready: Any) -> None:
    company, headers, channel_id = ready
    assert (await post_webhook(client, channel_id, "first-secret")).status == 200
    await enable_over_api(client, headers, enabled=False)

    assert (await post_webhook(client, channel_id, "first-secret")).status == 404
    assert await enabled_settings(services_of(client), company.tenant_id) == {}

    await enable_over_api(client, headers, enabled=True)
    assert (await post_webhook(client, channel_id, "first-secret")).status == 200


async def test_entries_are_per_tenant(client: Any, ready: Any, make_company: Any) -> None:
    company, _, channel_id = ready
    other = await make_company()
    services = services_of(client)
    assert await enabled_settings(services, company.tenant_id) == {PLUGIN: {}}
    assert await enabled_settings(services, other.tenant_id) == {}
    loaded = await load_channel_adapter(services, uuid.UUID(channel_id))
    assert loaded is not None and loaded.row.tenant_id == company.tenant_id
    await plugins_changed(services, other.tenant_id)  # another tenant's change keeps ours
    assert await load_channel_adapter(services, uuid.UUID(channel_id)) is loaded


# --- TTL ---------------------------------------------------------------------------------------


async def test_ttl_zero_disables_the_cache(
    make_client: Any, fake_plugin: FakeChannelPlugin, make_company: Any
) -> None:
    client = await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), channel_cache_ttl_seconds=0
    )
    company = await make_company()
    headers = await login(client, company.owner)
    await enable_over_api(client, headers)
    channel_id = uuid.UUID(await create_channel(client, headers))
    services = services_of(client)
    first = await load_channel_adapter(services, channel_id)
    assert first is not None

    await Channel.update({Channel.name: "Renamed by hand"}).where(Channel.id == channel_id)
    await TenantPlugin.update({TenantPlugin.settings: {"seen": True}}).where(
        TenantPlugin.tenant == company.tenant_id
    )
    again = await load_channel_adapter(services, channel_id)
    assert again is not None and again is not first
    assert again.info.name == "Renamed by hand"
    assert await enabled_settings(services, company.tenant_id) == {PLUGIN: {"seen": True}}


def test_entries_expire_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("guiche.runtime.cache.time.monotonic", lambda: now[0])
    cache = RuntimeCache(ttl=60)
    key = uuid.uuid4()
    cache.put(CHANNEL, key, "loaded", cache.generation)
    now[0] += 59
    assert cache.get(CHANNEL, key) == "loaded"
    now[0] += 1
    assert cache.get(CHANNEL, key) is None


def test_a_load_older_than_an_invalidation_is_not_stored() -> None:
    cache = RuntimeCache(ttl=60)
    key = uuid.uuid4()
    generation = cache.generation  # a load starts and reads the row...
    cache.drop(CHANNEL, key)  # ...the row changes and the entry is dropped meanwhile
    cache.put(CHANNEL, key, "stale", generation)
    assert cache.get(CHANNEL, key) is None


def test_notices_drop_one_entry_or_everything_after_a_reconnection() -> None:
    cache = RuntimeCache(ttl=60)
    first, second = uuid.uuid4(), uuid.uuid4()
    cache.put(CHANNEL, first, "a", cache.generation)
    cache.put(CHANNEL, second, "b", cache.generation)
    cache.on_notice({"cache": CHANNEL, "id": str(first)})
    assert cache.get(CHANNEL, first) is None and cache.get(CHANNEL, second) == "b"
    cache.on_notice({"cache": CHANNEL, "id": "not-a-uuid"})  # ignored, logged
    assert cache.get(CHANNEL, second) == "b"
    cache.on_notice(RECONNECTED)
    assert cache.get(CHANNEL, second) is None


# --- across processes, over Redis --------------------------------------------------------------


async def two_processes(
    make_client: Any, fake_plugin: FakeChannelPlugin, redis_url: str
) -> tuple[Any, Any]:
    """Two apps on one database and one Redis, as two `guiche web` processes would be; a
    long TTL so only a notice can drop an entry."""
    plugins = ((fake_plugin.name, fake_plugin),)
    made = [
        await make_client(
            extra_plugins=plugins, redis_url=redis_url, channel_cache_ttl_seconds=3600
        )
        for _ in range(2)
    ]
    return made[0], made[1]


async def test_another_process_drops_its_entries_without_waiting_for_the_ttl(
    make_client: Any, fake_plugin: FakeChannelPlugin, make_company: Any, require_redis: str
) -> None:
    """Two apps on one database and one Redis, as two `guiche web` processes would be."""
    one, two = await two_processes(make_client, fake_plugin, require_redis)
    company = await make_company()
    headers = await login(one, company.owner)
    await enable_over_api(one, headers)
    channel_id = uuid.UUID(await create_channel(one, headers))
    other = services_of(two)

    cached = await load_channel_adapter(other, channel_id)
    assert cached is not None and cached.row.default_department is None
    await Channel.update({Channel.name: "Renamed by hand"}).where(Channel.id == channel_id)
    assert await load_channel_adapter(other, channel_id) is cached  # it does cache

    department = await new_department(company.tenant_id)
    patch = one.patch(
        f"/api/v1/channels/{channel_id}",
        json={"default_department_id": str(department)},
        headers=headers,
    )
    await and_notice_delivered(other, patch)
    loaded = await load_channel_adapter(other, channel_id)
    assert loaded is not None and loaded is not cached
    assert loaded.row.default_department == department
    assert loaded.info.name == "Renamed by hand"

    await and_notice_delivered(other, enable_over_api(one, headers, enabled=False))
    assert await load_channel_adapter(other, channel_id) is None
    assert await enabled_settings(other, company.tenant_id) == {}


# --- companies' own settings (the region every send to a phone number reads) -----------------


async def test_company_settings_are_cached_and_a_patch_drops_them(client: Any, ready: Any) -> None:
    company, headers, _ = ready
    services = services_of(client)
    assert await tenant_region(company.tenant_id, services) == "BR"
    # Changed behind the cache's back: a hit does not see it (no query per send).
    await Tenant.update({Tenant.settings: {"default_region": "US"}}).where(
        Tenant.id == company.tenant_id
    )
    assert await tenant_region(company.tenant_id, services) == "BR"

    resp = await client.patch(
        "/api/v1/tenant",
        json={"settings": {"default_region": "PT", "timezone": "Europe/Lisbon"}},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    assert await tenant_region(company.tenant_id, services) == "PT"
    assert await company_locale(services, company.tenant_id) == CompanyLocale("PT", "Europe/Lisbon")


async def test_company_settings_are_per_tenant(client: Any, ready: Any, make_company: Any) -> None:
    company, headers, _ = ready
    other = await make_company()
    services = services_of(client)
    assert await tenant_region(other.tenant_id, services) == "BR"
    resp = await client.patch(
        "/api/v1/tenant", json={"settings": {"default_region": "AR"}}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    assert await tenant_region(company.tenant_id, services) == "AR"
    assert await tenant_region(other.tenant_id, services) == "BR"


async def test_a_settings_patch_reaches_another_process(
    make_client: Any, fake_plugin: FakeChannelPlugin, make_company: Any, require_redis: str
) -> None:
    one, two = await two_processes(make_client, fake_plugin, require_redis)
    company = await make_company()
    headers = await login(one, company.owner)
    other = services_of(two)
    assert await tenant_region(company.tenant_id, other) == "BR"  # now cached in `two`

    patch = one.patch(
        "/api/v1/tenant", json={"settings": {"default_region": "MX"}}, headers=headers
    )
    await and_notice_delivered(other, patch)
    assert await tenant_region(company.tenant_id, other) == "MX"
