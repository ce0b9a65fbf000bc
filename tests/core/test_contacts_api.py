"""Contacts over HTTP: E.164 phones, duplicates, validation, search, opt-out and pagination."""

from __future__ import annotations

import datetime as dt

import pytest

from guiche.contacts.phones import InvalidPhone, normalize_phone, phone_digits, whatsapp_phone
from guiche.models import AuditLog, Contact
from tests.conftest import login

# --- phone numbers (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["(31) 98888-7777", "31 98888 7777", "+55 31 98888-7777", "5531988887777", "031988887777"],
)
def test_brazilian_numbers_normalise_to_e164(raw):
    assert normalize_phone(raw, "BR") == "+5531988887777"


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+55 31 8888-7777", "BR"),
        ("+55 31 8888-7777", "US"),
        ("(31) 8888-7777", "BR"),
        ("031 8888-7777", "BR"),
        ("553188887777", "BR"),
    ],
)
def test_old_form_brazilian_mobiles_get_their_ninth_digit(raw, region):
    """Spreadsheets still carry 8-digit mobiles: the same line as the 9-digit one, the
    rule webhooks apply (`whatsapp_phone`)."""
    assert normalize_phone(raw, region) == "+5531988887777"
    assert whatsapp_phone("553188887777") == "+5531988887777"


def test_brazilian_landlines_keep_eight_digits():
    assert normalize_phone("(31) 3333-4444", "BR") == "+553133334444"
    assert normalize_phone("+55 31 3333-4444", "BR") == "+553133334444"


def test_region_and_international_numbers():
    assert normalize_phone("(415) 555-2671", "US") == "+14155552671"
    assert normalize_phone("+1 415 555 2671", "BR") == "+14155552671"
    # a country code without "+" (as providers send it) is still understood
    assert normalize_phone("14155552671", "BR") == "+14155552671"


@pytest.mark.parametrize("raw", ["", "   ", "12345", "abc", "+999 1234"])
def test_invalid_numbers_raise(raw):
    with pytest.raises(InvalidPhone):
        normalize_phone(raw, "BR")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("12345", "not a valid phone number for region BR"),  # local: the company's region
        ("+44 20 7183", "not a valid phone number for region GB"),  # its own country
        ("+1 555 168 2817", "not a valid phone number for region US"),
        ("+999 1234", "not a valid phone number: no country has the code of '+999 1234'"),
    ],
)
def test_errors_name_the_region_actually_used(raw, message):
    with pytest.raises(InvalidPhone) as caught:
        normalize_phone(raw, "BR")
    assert str(caught.value) == message


def test_foreign_numbers_are_read_in_their_own_region():
    assert normalize_phone("+44 20 7183 8750", "BR") == "+442071838750"
    assert normalize_phone("+351 912 345 678", "US") == "+351912345678"


def test_meta_test_numbers_only_where_asked():
    """Channels accept Meta's +1 555 test numbers; contacts (real people) do not."""
    for raw in ("+1 555 168 2817", "15551682817"):
        assert normalize_phone(raw, "BR", meta_test_numbers=True) == "+15551682817"
    with pytest.raises(InvalidPhone):
        normalize_phone("+1 555 168 2817", "BR")


def test_phone_digits():
    assert phone_digits("(31) 9888-7") == "3198887"
    assert phone_digits("+55 (31)") == "5531"


# --- HTTP -----------------------------------------------------------------------------------


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


async def _create(client, headers, **fields):
    resp = await client.post("/api/v1/contacts", json=fields, headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_create_normalises_phone_and_audits(client, company):
    headers = await login(client, company.owner)
    contact = await _create(
        client,
        headers,
        name="Ana Souza",
        phone="(31) 98888-7777",
        email="Ana@Example.COM",
        document="123.456.789-00",
        custom_fields={"plano": "ouro", "pontos": 10},
    )
    assert contact["phone"] == "+5531988887777"
    assert contact["email"] == "ana@example.com"
    assert contact["custom_fields"] == {"plano": "ouro", "pontos": 10}
    assert contact["opted_out"] is False and contact["opted_out_at"] is None
    resp = await client.get(f"/api/v1/contacts/{contact['id']}", headers=headers)
    assert (await resp.json()) == contact
    actions = await AuditLog.select(AuditLog.action, AuditLog.actor).where(
        (AuditLog.tenant == company.tenant_id) & (AuditLog.target_id == contact["id"])
    )
    assert actions == [{"action": "contact.create", "actor": company.owner.user_id}]


async def test_tenant_default_region_reads_local_numbers(make_client, make_company):
    client = await make_client(default_region="PT")
    company = await make_company()
    headers = await login(client, company.owner)
    contact = await _create(client, headers, name="Rui", phone="912 345 678")
    assert contact["phone"] == "+351912345678"
    resp = await client.patch(
        "/api/v1/tenant", json={"settings": {"default_region": "US"}}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    contact = await _create(client, headers, name="Joe", phone="(415) 555-2671")
    assert contact["phone"] == "+14155552671"


async def test_validation_errors_name_each_field(client, company):
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/contacts",
        json={"name": "x" * 201, "email": "nope", "custom_fields": [], "opted_out": "maybe"},
        headers=headers,
    )
    assert resp.status == 422
    fields = {d["field"] for d in (await resp.json())["error"]["details"]}
    assert fields == {"name", "email", "custom_fields", "opted_out"}
    resp = await client.post(
        "/api/v1/contacts", json={"name": "Ana", "phone": "12345"}, headers=headers
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "phone"


async def test_duplicate_phone_is_409_with_existing_id(client, company):
    headers = await login(client, company.owner)
    first = await _create(client, headers, name="Ana", phone="31988887777")
    resp = await client.post(
        "/api/v1/contacts", json={"name": "Other", "phone": "+55 (31) 98888-7777"}, headers=headers
    )
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "duplicate_phone"
    assert error["details"]["existing_id"] == first["id"]
    second = await _create(client, headers, name="Bia", phone="31977776666")
    resp = await client.patch(
        f"/api/v1/contacts/{second['id']}", json={"phone": "31988887777"}, headers=headers
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["details"]["existing_id"] == first["id"]


async def test_patch_opt_out_and_delete(client, company):
    headers = await login(client, company.owner)
    contact = await _create(client, headers, name="Ana", phone="31988887777", email="a@x.io")
    url = f"/api/v1/contacts/{contact['id']}"
    resp = await client.patch(
        url,
        json={"name": "Ana Maria", "opted_out": True, "email": None, "custom_fields": {"k": "v"}},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["name"] == "Ana Maria"
    assert patched["email"] is None
    assert patched["custom_fields"] == {"k": "v"}
    assert patched["opted_out"] is True and patched["opted_out_at"] is not None
    assert patched["phone"] == "+5531988887777"
    assert _when(patched["updated_at"]) > _when(contact["updated_at"])
    resp = await client.patch(url, json={"opted_out": False}, headers=headers)
    assert (await resp.json())["opted_out_at"] is None
    resp = await client.patch(url, json={"phone": "bad"}, headers=headers)
    assert resp.status == 422
    resp = await client.delete(url, headers=headers)
    assert resp.status == 204
    assert (await client.get(url, headers=headers)).status == 404
    assert (await client.delete(url, headers=headers)).status == 404
    assert (await client.get("/api/v1/contacts/not-a-uuid", headers=headers)).status == 404


async def _search(client, headers, query: str) -> set[str]:
    resp = await client.get(f"/api/v1/contacts?{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    return {item["name"] for item in (await resp.json())["items"]}


async def test_search_by_name_phone_document_and_email(client, company):
    headers = await login(client, company.owner)
    await _create(client, headers, name="Mariana Lima", phone="31988887777", document="111.222")
    await _create(client, headers, name="Marcos", phone="11912345678", email="marcos@loja.com")
    await _create(client, headers, name="Desconto 50%", phone="21987654321")
    await _create(client, headers, name="Desconto 500", email="d@x.io", document="999")
    await _create(client, headers, name="Optado", phone="21955554444", opted_out=True)
    assert await _search(client, headers, "q=mar") == {"Mariana Lima", "Marcos"}
    assert await _search(client, headers, "q=LIMA") == {"Mariana Lima"}
    assert await _search(client, headers, "q=(31) 98888") == {"Mariana Lima"}
    assert await _search(client, headers, "q=%2B5511912") == {"Marcos"}
    assert await _search(client, headers, "q=7654") == {"Desconto 50%"}
    assert await _search(client, headers, "q=111.222") == {"Mariana Lima"}
    assert await _search(client, headers, "q=loja.com") == {"Marcos"}
    assert await _search(client, headers, "q=50%25") == {"Desconto 50%"}
    assert await _search(client, headers, "opted_out=true") == {"Optado"}
    assert "Optado" not in await _search(client, headers, "opted_out=false")
    assert await _search(client, headers, "q=nobody-here") == set()


async def _walk_contacts(client, headers, *, limit: int) -> tuple[list[str], int]:
    """Every contact id from the first page to the last, and how many pages that took."""
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = f"/api/v1/contacts?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        data = await (await client.get(url, headers=headers)).json()
        seen += [item["id"] for item in data["items"]]
        pages += 1
        cursor = data["next_cursor"]
        if cursor is None:
            return seen, pages


async def test_pagination_walks_every_contact_once(client, company):
    headers = await login(client, company.owner)
    created = [
        (await _create(client, headers, name=f"C{i}", phone=f"3198888{i:04d}"))["id"]
        for i in range(5)
    ]
    seen, pages = await _walk_contacts(client, headers, limit=2)
    assert pages == 3
    assert seen == list(reversed(created))  # newest first, no repeats
    resp = await client.get("/api/v1/contacts?cursor=garbage", headers=headers)
    assert resp.status == 400
    resp = await client.get("/api/v1/contacts?limit=0", headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "limit"


async def test_roles(client, company):
    viewer = await login(client, await company.add("viewer"))
    agent = await login(client, await company.add("agent"))
    assert (await client.get("/api/v1/contacts", headers=viewer)).status == 200
    resp = await client.post("/api/v1/contacts", json={"name": "A"}, headers=viewer)
    assert resp.status == 403
    await _create(client, agent, name="By agent", phone="31988887777")
    assert (await client.get("/api/v1/contacts")).status == 401
    assert await Contact.count().where(Contact.tenant == company.tenant_id) == 1


async def test_pagination_breaks_created_at_ties_by_id(client, company):
    """Rows sharing one created_at (a bulk import does that) are neither skipped nor
    repeated: the cursor is the row (created_at, id), not created_at alone."""
    headers = await login(client, company.owner)
    ids = [
        (await _create(client, headers, name=f"T{i}", phone=f"3197777{i:04d}"))["id"]
        for i in range(7)
    ]
    same = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    await Contact.update({Contact.created_at: same}).where(Contact.id.is_in(ids))
    seen, _ = await _walk_contacts(client, headers, limit=3)
    assert seen == sorted(ids, reverse=True)  # ties ordered by id, descending, once each
