"""A routing plugin decides on the message that opened the conversation: what it sees
for conversations a webhook opened, and what its decision does."""

from __future__ import annotations

from typing import Any

import pytest

from guiche.channels import StoredMessage
from guiche.models import Department, TenantPlugin
from guiche.plugin import PluginContext, PluginInfo, RoutingDecision, hookimpl
from tests.core.conversations.conftest import fetch, text_message


class KeywordRouter:
    """Sends conversations whose first message mentions buying to the sales department."""

    name = "keyword_router"

    def __init__(self) -> None:
        self.seen: list[StoredMessage | None] = []
        self.sales: Any = None

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0.0")

    @hookimpl
    async def guiche_route_inbound(
        self, ctx: PluginContext, message: StoredMessage | None
    ) -> RoutingDecision | None:
        self.seen.append(message)
        if message is not None and "comprar" in message.body:
            return RoutingDecision(department_id=self.sales)
        return None


@pytest.fixture
def router() -> KeywordRouter:
    return KeywordRouter()


@pytest.fixture
async def client(make_client: Any, fake_plugin: Any, router: KeywordRouter) -> Any:
    return await make_client(extra_plugins=((fake_plugin.name, fake_plugin), (router.name, router)))


async def test_the_router_sees_each_opening_message_and_routes_on_it(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any, router: KeywordRouter
) -> None:
    company = await make_company()
    sales = Department(tenant=company.tenant_id, name="Vendas")
    await sales.save()
    router.sales = sales.id
    await TenantPlugin.insert(
        TenantPlugin(tenant=company.tenant_id, plugin=router.name, enabled=True, settings={})
    )
    channel = await make_channel(company.tenant_id)

    resp = await post_webhook(
        channel,
        [
            text_message("quero comprar um sofá", phone="5511911110001"),
            text_message("meu pedido atrasou", phone="5511911110002"),
        ],
    )
    assert resp.status == 200, await resp.text()

    assert sorted(m.body for m in router.seen if m is not None) == [
        "meu pedido atrasou",
        "quero comprar um sofá",
    ]
    rows = await fetch(
        "SELECT c.department, m.body FROM conversations c JOIN messages m"
        " ON m.conversation = c.id WHERE c.tenant = {}",
        company.tenant_id,
    )
    departments = {row["body"]: row["department"] for row in rows}
    assert departments["quero comprar um sofá"] == sales.id
    assert departments["meu pedido atrasou"] != sales.id
