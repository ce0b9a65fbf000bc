"""The app starts against a migrated database and answers health checks."""

from guiche.companies.accounts import create_tenant
from guiche.models import Membership, Tenant


async def test_health(client):
    resp = await client.get("/health")
    assert resp.status == 200


async def test_create_tenant_makes_owner(client):
    created = await create_tenant("Padaria São João", "Dona@Example.test", "secret-pass")
    tenant = await Tenant.select().where(Tenant.id == created.tenant_id).first()
    assert tenant["slug"].startswith("padaria-sao-joao")
    member = await Membership.select().where(Membership.tenant == created.tenant_id).first()
    assert member["role"] == "owner"
    assert created.owner_email == "dona@example.test"
