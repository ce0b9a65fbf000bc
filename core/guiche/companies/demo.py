"""The demo company `guiche run` seeds, so a fresh install has someone to log in as.

Idempotent: the company and its owner are created once. The password is
`GUICHE_DEMO_PASSWORD` when set, else a fresh one per start; either way it is
(re)applied to the owner, so the login printed at start-up always works.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from guiche.auth.passwords import hash_password
from guiche.companies.accounts import add_member, create_tenant, find_or_create_user
from guiche.models import Membership, Tenant, User

DEMO_NAME = "Demo"
DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo.guiche.local"
DEMO_OWNER_NAME = "Demo Admin"


@dataclass(frozen=True)
class DemoLogin:
    tenant_id: uuid.UUID
    email: str
    password: str
    created: bool


async def seed_demo(password: str | None) -> DemoLogin:
    """Ensure the demo company and its owner exist; set the owner's password."""
    password = password or secrets.token_urlsafe(12)
    tenant = await Tenant.select(Tenant.id).where(Tenant.slug == DEMO_SLUG).first()
    created = tenant is None
    if tenant is None:
        made = await create_tenant(
            DEMO_NAME, DEMO_EMAIL, password, owner_name=DEMO_OWNER_NAME, slug=DEMO_SLUG
        )
        tenant_id, user_id = made.tenant_id, made.owner_id
    else:
        tenant_id = tenant["id"]
        user_id = await find_or_create_user(DEMO_EMAIL, DEMO_OWNER_NAME, password)
        is_member = await Membership.exists().where(
            (Membership.tenant == tenant_id) & (Membership.user == user_id)
        )
        if not is_member:
            await add_member(tenant_id, user_id, "owner")
    await User.update({User.password_hash: hash_password(password), User.is_active: True}).where(
        User.id == user_id
    )
    return DemoLogin(tenant_id=tenant_id, email=DEMO_EMAIL, password=password, created=created)
