"""Adding people who already have an account: invitations, never a silent attach."""

from __future__ import annotations

import uuid

from guiche.auth.passwords import hash_password
from guiche.companies.accounts import add_member
from guiche.models import AuditLog, Membership, User
from tests.conftest import Company, Member, login


def _email() -> str:
    return f"person-{uuid.uuid4().hex[:10]}@example.test"


async def _add(client, headers, email: str, **extra):
    body = {"email": email, "role": "agent", **extra}
    return await client.post("/api/v1/users", json=body, headers=headers)


async def _error(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code, error
    return error


async def _seat_count(tenant_id: uuid.UUID, user_id: uuid.UUID) -> int:
    return await Membership.count().where(
        (Membership.tenant == tenant_id) & (Membership.user == user_id)
    )


async def _invitation_for(client, person: Member, company: Company) -> dict:
    """The pending invitation `person` sees from `company` (exactly one)."""
    resp = await client.get("/api/v1/auth/invitations", headers=await login(client, person))
    assert resp.status == 200, await resp.text()
    mine = [i for i in (await resp.json())["items"] if i["company"]["id"] == str(company.tenant_id)]
    assert len(mine) == 1, mine
    return mine[0]


async def _login_in(client, person: Member, tenant_id: uuid.UUID) -> dict[str, str]:
    resp = await client.post(
        "/api/v1/auth/login",
        json={"email": person.email, "password": person.password, "tenant_id": str(tenant_id)},
    )
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def test_the_answer_is_the_same_whether_or_not_the_email_has_an_account(client, make_company):
    caller, elsewhere = await make_company(), await make_company()
    person = elsewhere.owner
    headers = await login(client, caller.owner)
    extra = {"name": "Fulana", "password": "a-password-123"}
    existing = await _add(client, headers, person.email, **extra)
    fresh = await _add(client, headers, _email(), **extra)
    assert existing.status == fresh.status == 202
    existing_body, fresh_body = await existing.json(), await fresh.json()
    assert existing_body.keys() == fresh_body.keys()
    assert existing_body["name"] == fresh_body["name"] == "Fulana"  # the caller's own words
    account = await User.select(User.name).where(User.id == person.user_id).first()
    leaked = await existing.text()
    assert str(person.user_id) not in leaked and account["name"] not in leaked
    # without a password: no more "422 for new emails, 201 for existing ones"
    existing_bare = await _add(client, headers, (await make_company()).owner.email)
    fresh_bare = await _add(client, headers, _email())
    assert existing_bare.status == fresh_bare.status == 202
    assert (await existing_bare.json()).keys() == (await fresh_bare.json()).keys()


async def test_an_existing_account_is_not_attached_without_acceptance(client, make_company):
    caller, elsewhere = await make_company(), await make_company()
    person = elsewhere.owner
    headers = await login(client, caller.owner)
    resp = await _add(client, headers, person.email, password="attacker-chosen-pw")
    assert resp.status == 202
    assert await _seat_count(caller.tenant_id, person.user_id) == 0
    listed = await client.get("/api/v1/users", params={"q": person.email}, headers=headers)
    assert (await listed.json())["items"] == []
    resp = await client.get(f"/api/v1/users/{person.user_id}", headers=headers)
    assert resp.status == 404
    resp = await client.post(
        "/api/v1/auth/login",
        json={
            "email": person.email,
            "password": person.password,
            "tenant_id": str(caller.tenant_id),
        },
    )
    await _error(resp, 401, "invalid_credentials")  # no seat there to sign in to
    # the password the inviting company chose opens nothing; theirs still works
    resp = await client.post(
        "/api/v1/auth/login", json={"email": person.email, "password": "attacker-chosen-pw"}
    )
    await _error(resp, 401, "invalid_credentials")
    assert "Authorization" in await login(client, person)
    sent = await client.get("/api/v1/invitations", headers=headers)
    assert [(i["email"], i["status"]) for i in (await sent.json())["items"]] == [
        (person.email, "pending")
    ]


async def test_the_person_accepts_and_gets_the_offered_seat(client, make_company):
    caller, elsewhere = await make_company("Loja Convida"), await make_company()
    person = elsewhere.owner
    headers = await login(client, caller.owner)
    await _add(client, headers, person.email, name="Atendente Zé", role="supervisor")
    invitation = await _invitation_for(client, person, caller)
    assert invitation["company"]["name"] == "Loja Convida"
    assert (invitation["role"], invitation["name"]) == ("supervisor", "Atendente Zé")
    own = await login(client, person)
    resp = await client.post(f"/api/v1/auth/invitations/{invitation['id']}/accept", headers=own)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "accepted"
    companies = await client.get("/api/v1/auth/companies", headers=own)
    assert str(caller.tenant_id) in {c["id"] for c in (await companies.json())["items"]}
    seen = await client.get(f"/api/v1/users/{person.user_id}", headers=headers)
    assert seen.status == 200
    assert ((await seen.json())["name"], (await seen.json())["role"]) == (
        "Atendente Zé",
        "supervisor",
    )
    switched = await client.post(
        "/api/v1/auth/switch", json={"tenant_id": str(caller.tenant_id)}, headers=own
    )
    assert switched.status == 200
    audit = await AuditLog.select(AuditLog.action, AuditLog.actor).where(
        (AuditLog.tenant == caller.tenant_id) & (AuditLog.target_id == invitation["id"])
    )
    assert {"action": "invitation.accept", "actor": person.user_id} in audit
    # answered once: a second accept finds nothing pending
    resp = await client.post(f"/api/v1/auth/invitations/{invitation['id']}/accept", headers=own)
    await _error(resp, 404, "not_found")


async def test_declining_leaves_no_seat(client, make_company):
    caller, elsewhere = await make_company(), await make_company()
    person = elsewhere.owner
    headers = await login(client, caller.owner)
    await _add(client, headers, person.email)
    invitation = await _invitation_for(client, person, caller)
    own = await login(client, person)
    resp = await client.post(f"/api/v1/auth/invitations/{invitation['id']}/decline", headers=own)
    assert (await resp.json())["status"] == "declined"
    assert await _seat_count(caller.tenant_id, person.user_id) == 0
    sent = await client.get("/api/v1/invitations", params={"status": "declined"}, headers=headers)
    assert [i["id"] for i in (await sent.json())["items"]] == [invitation["id"]]


async def test_only_the_invited_person_or_a_platform_admin_can_accept(client, make_company):
    caller, elsewhere, third = await make_company(), await make_company(), await make_company()
    person = elsewhere.owner
    headers = await login(client, caller.owner)
    await _add(client, headers, person.email)
    invitation = await _invitation_for(client, person, caller)
    url = f"/api/v1/auth/invitations/{invitation['id']}/accept"
    # someone else (another company's owner) cannot accept it for themselves or for them
    resp = await client.post(url, headers=await login(client, third.owner))
    await _error(resp, 404, "not_found")
    resp = await client.post(
        f"/api/v1/platform/invitations/{invitation['id']}/accept", headers=headers
    )
    await _error(resp, 403, "permission_denied")
    assert await _seat_count(caller.tenant_id, person.user_id) == 0
    # the inviting company cannot answer its own invitation through the person's endpoint
    await _error(await client.post(url, headers=headers), 404, "not_found")
    # a platform admin can, for the account with that email
    await User.update({User.is_platform_admin: True}).where(User.id == third.owner.user_id)
    admin = await login(client, third.owner)
    resp = await client.get(
        "/api/v1/platform/invitations", params={"email": person.email}, headers=admin
    )
    assert [i["id"] for i in (await resp.json())["items"]] == [invitation["id"]]
    resp = await client.post(
        f"/api/v1/platform/invitations/{invitation['id']}/accept", headers=admin
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "accepted"
    assert await _seat_count(caller.tenant_id, person.user_id) == 1
    # an invitation to an email with no account yet has nobody to accept it for
    await _add(client, headers, _email())
    pending = await client.get("/api/v1/invitations", params={"status": "pending"}, headers=headers)
    (orphan,) = (await pending.json())["items"]
    resp = await client.post(f"/api/v1/platform/invitations/{orphan['id']}/accept", headers=admin)
    await _error(resp, 409, "no_account")


async def test_an_invitation_waits_for_the_account_to_exist(client, make_company):
    caller = await make_company()
    email = _email()
    headers = await login(client, caller.owner)
    await _add(client, headers, email)
    # the person gets an account later (another company, a platform admin, the CLI)
    later = await make_company()
    user = User(email=email, name="Later", password_hash=hash_password("later-password"))
    await user.save()
    await add_member(later.tenant_id, user.id, "agent")
    person = Member(user.id, email, "later-password", "agent", later.tenant_id)
    invitation = await _invitation_for(client, person, caller)
    resp = await client.post(
        f"/api/v1/auth/invitations/{invitation['id']}/accept", headers=await login(client, person)
    )
    assert resp.status == 200
    assert await _seat_count(caller.tenant_id, user.id) == 1


async def test_a_company_renames_only_its_own_seat(client, make_company):
    first, second = await make_company(), await make_company()
    person = await first.add("agent")
    second_headers = await login(client, second.owner)
    await _add(client, second_headers, person.email)
    invitation = await _invitation_for(client, person, second)
    own = await login(client, person)
    await client.post(f"/api/v1/auth/invitations/{invitation['id']}/accept", headers=own)
    url = f"/api/v1/users/{person.user_id}"
    resp = await client.patch(url, json={"name": "Apelido na Segunda"}, headers=second_headers)
    assert (await resp.json())["name"] == "Apelido na Segunda"
    first_headers = await login(client, first.owner)
    assert (await (await client.get(url, headers=first_headers)).json())["name"] == "Agent"
    me = await client.get("/api/v1/auth/me", headers=own)
    assert (await me.json())["user"]["name"] == "Agent"  # the account's name is untouched
    # only the person changes their own name; companies without a name of their own follow
    resp = await client.patch("/api/v1/auth/me", json={"name": "Maria Silva"}, headers=own)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["user"]["name"] == "Maria Silva"
    assert (await (await client.get(url, headers=first_headers)).json())["name"] == "Maria Silva"
    resp = await client.get(url, headers=second_headers)
    assert (await resp.json())["name"] == "Apelido na Segunda"
    # what they write is signed with each company's own name for them
    for company, headers, name in (
        (second, second_headers, "Apelido na Segunda"),
        (first, first_headers, "Maria Silva"),
    ):
        contact = await client.post("/api/v1/contacts", json={"name": "Cliente"}, headers=headers)
        contact_id = (await contact.json())["id"]
        as_person = await _login_in(client, person, company.tenant_id)
        note = await client.post(
            "/api/v1/notes", json={"contact_id": contact_id, "body": "oi"}, headers=as_person
        )
        assert note.status == 201, await note.text()
        assert (await note.json())["author"]["name"] == name
        listed = await client.get(
            "/api/v1/notes", params={"contact_id": contact_id}, headers=headers
        )
        assert [n["author"]["name"] for n in (await listed.json())["items"]] == [name]


async def test_invitations_stay_inside_their_company(client, make_company):
    first, second = await make_company(), await make_company()
    person = (await make_company()).owner
    await _add(client, await login(client, first.owner), person.email)
    second_headers = await login(client, second.owner)
    sent = await client.get("/api/v1/invitations", headers=second_headers)
    assert (await sent.json())["items"] == []
    invitation = await _invitation_for(client, person, first)
    resp = await client.delete(f"/api/v1/invitations/{invitation['id']}", headers=second_headers)
    await _error(resp, 404, "not_found")
    resp = await client.delete(
        f"/api/v1/invitations/{invitation['id']}", headers=await login(client, first.owner)
    )
    assert resp.status == 204
    resp = await client.post(
        f"/api/v1/auth/invitations/{invitation['id']}/accept", headers=await login(client, person)
    )
    await _error(resp, 404, "not_found")  # withdrawn: nothing left to accept
    assert await _seat_count(first.tenant_id, person.user_id) == 0
