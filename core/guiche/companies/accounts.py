"""Creating companies and their people: shared by the CLI, the platform API and tests."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass

from guiche.auth.passwords import hash_password
from guiche.foundation.errors import Conflict, ValidationFailed
from guiche.models import Membership, Tenant, User
from guiche.tenancy.rbac import ROLES


@dataclass(frozen=True)
class CreatedTenant:
    tenant_id: uuid.UUID
    slug: str
    owner_id: uuid.UUID
    owner_email: str


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:60] or "company"


async def _unique_slug(base: str) -> str:
    slug = base
    while await Tenant.exists().where(Tenant.slug == slug):
        slug = f"{base}-{secrets.token_hex(2)}"
    return slug


async def find_or_create_user(email: str, name: str, password: str | None) -> uuid.UUID:
    """The user with this email (case-insensitive), created with `password` when new."""
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationFailed("Invalid email", details=[{"field": "email", "message": "invalid"}])
    rows = await User.raw("SELECT id FROM users WHERE lower(email) = {}", email)
    if rows:
        return rows[0]["id"]
    if not password:
        raise ValidationFailed(
            "A password is required for a new user",
            details=[{"field": "password", "message": "required"}],
        )
    user = User(
        email=email, name=name or email.split("@")[0], password_hash=hash_password(password)
    )
    await user.save()
    return user.id


async def add_member(
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str,
    *,
    max_concurrent_chats: int = 5,
    display_name: str | None = None,
) -> uuid.UUID:
    if role not in ROLES:
        raise ValidationFailed(
            f"Unknown role {role!r}", details=[{"field": "role", "message": role}]
        )
    exists = await Membership.exists().where(
        (Membership.tenant == tenant_id) & (Membership.user == user_id)
    )
    if exists:
        raise Conflict("User is already a member of this company", code="already_member")
    membership = Membership(
        tenant=tenant_id,
        user=user_id,
        role=role,
        max_concurrent_chats=max_concurrent_chats,
        display_name=display_name,
    )
    await membership.save()
    return membership.id


async def create_tenant(
    name: str,
    owner_email: str,
    owner_password: str | None,
    *,
    owner_name: str = "",
    slug: str | None = None,
) -> CreatedTenant:
    """A company with its owner, in one transaction (an existing user may own it)."""
    name = name.strip()
    if not name:
        raise ValidationFailed(
            "Company name is required", details=[{"field": "name", "message": "required"}]
        )
    async with Tenant._meta.db.transaction():
        final_slug = await _unique_slug(slugify(slug or name))
        tenant = Tenant(name=name, slug=final_slug)
        await tenant.save()
        owner_id = await find_or_create_user(owner_email, owner_name, owner_password)
        await add_member(tenant.id, owner_id, "owner")
    return CreatedTenant(tenant.id, final_slug, owner_id, owner_email.strip().lower())


async def display_names(tenant_id: uuid.UUID, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """How one company names these people: its own display name, else their account's."""
    if not user_ids:
        return {}
    rows = await Membership.raw(
        'SELECT m."user" AS id, coalesce(m.display_name, u.name) AS name FROM memberships m '
        'JOIN users u ON u.id = m."user" WHERE m.tenant = {} AND m."user" = ANY({})',
        tenant_id,
        list(set(user_ids)),
    )
    return {row["id"]: row["name"] for row in rows}
