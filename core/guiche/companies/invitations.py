"""Invitations: how a company gains a person, without ever attaching an account by force.

An account belongs to a person and may sit in many companies. Adding an email that
already has an account therefore creates a *pending invitation*: the person accepts
(or declines) it after signing in, or a platform admin accepts it for them. Only an
email with no account yet, given a first password, becomes an account and a seat at
once (the company creates that account, nobody else's is touched).

The company's answer is the same whatever the email is: an invitation id and what it
sent, never the account's id or name, so `POST /api/v1/users` is no oracle of which
emails have accounts. The password is hashed even when it will not be used, so the
time taken tells nothing either. The name a company gives is its own display name for
the person (`memberships.display_name`), never the account's name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from guiche.auth.passwords import hash_password
from guiche.companies.accounts import add_member
from guiche.foundation.errors import Conflict, NotFound
from guiche.models import Invitation, Membership, User

PENDING, ACCEPTED, DECLINED, REVOKED = "pending", "accepted", "declined", "revoked"


@dataclass(frozen=True)
class Offer:
    """What a company offers: the seat the person gets on accepting."""

    tenant_id: uuid.UUID
    email: str
    display_name: str
    role: str
    max_concurrent_chats: int
    invited_by: uuid.UUID | None


async def _account_id(email: str) -> uuid.UUID | None:
    rows = await User.raw("SELECT id FROM users WHERE lower(email) = {}", email.strip().lower())
    return rows[0]["id"] if rows else None


async def _is_member(tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return await Membership.exists().where(
        (Membership.tenant == tenant_id) & (Membership.user == user_id)
    )


async def invite(offer: Offer, password: str | None) -> dict[str, Any]:
    """Record the offer; returns the invitation row. Call inside the caller's transaction.

    A new email with a password becomes an account and a seat now (the invitation is
    stored as accepted); any other email waits as a pending invitation. 409 when the
    person is already a member or already invited.
    """
    email = offer.email.strip().lower()
    # paid whether or not it is used: the response time must not tell the two cases apart
    password_hash = await asyncio.to_thread(hash_password, password) if password else None
    pending = await Invitation.exists().where(
        (Invitation.tenant == offer.tenant_id)
        & (Invitation.status == PENDING)
        & (Invitation.email == email)
    )
    if pending:
        raise Conflict("This email already has a pending invitation", code="already_invited")
    user_id = await _account_id(email)
    if user_id is not None and await _is_member(offer.tenant_id, user_id):
        raise Conflict("User is already a member of this company", code="already_member")
    status, responded_by, responded_at = PENDING, None, None
    if user_id is None and password_hash is not None:
        user = User(
            email=email,
            name=offer.display_name or email.split("@")[0],
            password_hash=password_hash,
        )
        await user.save()
        await add_member(
            offer.tenant_id, user.id, offer.role, max_concurrent_chats=offer.max_concurrent_chats
        )
        status, responded_by, responded_at = ACCEPTED, user.id, dt.datetime.now(dt.UTC)
    invitation = Invitation(
        tenant=offer.tenant_id,
        email=email,
        display_name=offer.display_name,
        role=offer.role,
        max_concurrent_chats=offer.max_concurrent_chats,
        status=status,
        invited_by=offer.invited_by,
        responded_by=responded_by,
        responded_at=responded_at,
    )
    try:
        await invitation.save()
    except asyncpg.UniqueViolationError:  # a concurrent invitation of the same email
        raise Conflict(
            "This email already has a pending invitation", code="already_invited"
        ) from None
    return invitation.to_dict()


async def _pending_for_update(invitation_id: uuid.UUID, email: str | None) -> dict[str, Any]:
    """The pending invitation, locked; with `email`, only if it is addressed to it (else 404)."""
    sql = "SELECT * FROM invitations WHERE id = {} AND status = 'pending'"
    args: list[Any] = [invitation_id]
    if email is not None:
        sql += " AND lower(email) = {}"
        args.append(email.strip().lower())
    rows = await Invitation.raw(sql + " FOR UPDATE", *args)
    if not rows:
        raise NotFound("invitation not found")
    return rows[0]


async def respond(
    invitation_id: uuid.UUID, user_id: uuid.UUID, email: str | None, *, accept: bool
) -> dict[str, Any]:
    """Accept (a seat with the offered role and display name) or decline an invitation.

    `email` is the signed-in person's: another person's invitation is 404. A platform
    admin passes None and acts for the account that owns the invitation's email.
    Call inside a transaction; returns the updated invitation row.
    """
    row = await _pending_for_update(invitation_id, email)
    if accept and not await _is_member(row["tenant"], user_id):
        await add_member(
            row["tenant"],
            user_id,
            row["role"],
            max_concurrent_chats=row["max_concurrent_chats"],
            display_name=row["display_name"] or None,
        )
    now = dt.datetime.now(dt.UTC)
    status = ACCEPTED if accept else DECLINED
    await Invitation.update(
        {Invitation.status: status, Invitation.responded_by: user_id, Invitation.responded_at: now}
    ).where(Invitation.id == invitation_id)
    return {**row, "status": status, "responded_by": user_id, "responded_at": now}


async def account_for(invitation_id: uuid.UUID) -> uuid.UUID:
    """The account a platform admin accepts for: the one with the invitation's email."""
    row = await Invitation.select(Invitation.email).where(Invitation.id == invitation_id).first()
    if row is None:
        raise NotFound("invitation not found")
    user_id = await _account_id(row["email"])
    if user_id is None:
        raise Conflict("No account has this invitation's email yet", code="no_account")
    return user_id


async def revoke(tenant_id: uuid.UUID, invitation_id: uuid.UUID) -> None:
    """Withdraw a company's pending invitation (404 unless it is this company's, pending)."""
    updated = (
        await Invitation.update(
            {Invitation.status: REVOKED, Invitation.responded_at: dt.datetime.now(dt.UTC)}
        )
        .where(
            (Invitation.id == invitation_id)
            & (Invitation.tenant == tenant_id)
            & (Invitation.status == PENDING)
        )
        .returning(Invitation.id)
    )
    if not updated:
        raise NotFound("invitation not found")
