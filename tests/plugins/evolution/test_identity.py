"""An Evolution instance (server + instance name) belongs to one active channel
platform-wide: another company needs a key the server accepts for it (core's claims)."""

from __future__ import annotations

from guiche_evolution.adapter import EvolutionAdapter

from tests.conftest import login
from tests.core.conversations.conftest import fetch

from .conftest import INSTANCE, make_config
from .test_flow import client, create_channel, enable, setup  # noqa: F401  (fixtures)


def test_identity_is_the_server_and_the_instance() -> None:
    first = make_config(server_url="https://EVO.example.com/", instance_name="loja")
    second = make_config(server_url="https://evo.example.com", instance_name="loja")
    assert EvolutionAdapter.provider_identity(first) == "https://evo.example.com#loja"
    assert EvolutionAdapter.provider_identity(second) == EvolutionAdapter.provider_identity(first)
    other = make_config(server_url="https://evo.example.com", instance_name="outra")
    assert EvolutionAdapter.provider_identity(other) != EvolutionAdapter.provider_identity(first)


async def test_another_company_needs_a_key_the_server_accepts(
    client,  # noqa: F811
    setup,  # noqa: F811
    make_company,
    fake_evolution,
):
    fake, server_url = fake_evolution
    webhook_before = fake.instances[INSTANCE]["webhook"]["url"]
    intruder = await make_company()
    headers = await login(client, intruder.owner)
    await enable(client, headers)
    resp = await create_channel(client, headers, server_url, api_key="not-the-servers-key")
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["error"]["code"] == "provider_identity_claimed"
    assert await fetch("SELECT id FROM channels WHERE tenant = {}", intruder.tenant_id) == []
    assert fake.instances[INSTANCE]["webhook"]["url"] == webhook_before  # still ours

    # The same instance name on another server is another account: no conflict.
    resp = await create_channel(
        client, headers, server_url.replace("127.0.0.1", "localhost"), api_key="whatever-key-123"
    )
    assert resp.status == 201, await resp.text()
