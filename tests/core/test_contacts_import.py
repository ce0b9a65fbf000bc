"""CSV contact import: parsing rules, the per-row report, upserts, and the upload size limit."""

from __future__ import annotations

import aiohttp
import pytest

from guiche.api.contacts_import import (
    ContactRow,
    decode_csv,
    detect_delimiter,
    merge_duplicates,
    parse_csv,
)
from guiche.foundation.errors import ValidationFailed
from guiche.models import AuditLog, Contact
from tests.conftest import login

# --- parsing (pure) ------------------------------------------------------------------------


def test_detects_semicolon_and_comma_delimiters():
    assert detect_delimiter("name;phone;email\nAna;31988887777;a@x.io\n") == ";"
    assert detect_delimiter("name,phone,email\nAna,31988887777,a@x.io\n") == ","
    # a quoted comma inside a ';' file does not fool it
    assert detect_delimiter('name;phone\n"Silva, Ana";31988887777\n') == ";"


def test_bom_is_accepted_and_bad_utf8_is_a_file_error():
    assert decode_csv("\ufeffname,phone\n".encode()) == "name,phone\n"
    with pytest.raises(ValidationFailed) as caught:
        decode_csv(b"name,phone\n\xff\xfe,1\n")
    assert caught.value.details[0]["field"] == "file"


def test_parse_rows_normalises_and_reports_each_bad_cell():
    text = (
        "Name;Phone;Email;Document;Plano;Cidade\n"
        "Ana;(31) 98888-7777;ANA@X.IO;123;gold;BH\n"
        "\n"
        "Bruno;12;not-an-email;;;\n"
        ";;;;;\n"
        "Carla;;c@x.io;;;\n"
    )
    rows, errors, failed = parse_csv(text, "BR")
    assert rows == [
        ContactRow(
            row=2,
            phone="+5531988887777",
            name="Ana",
            email="ana@x.io",
            document="123",
            custom_fields={"plano": "gold", "cidade": "BH"},
        )
    ]
    assert failed == 2
    assert [(e.row, e.field) for e in errors] == [(4, "phone"), (4, "email"), (6, "phone")]
    assert errors[2].message == "required"


def test_header_needs_phone_and_unique_columns():
    with pytest.raises(ValidationFailed, match="phone"):
        parse_csv("name,email\nAna,a@x.io\n", "BR")
    with pytest.raises(ValidationFailed, match="duplicate columns: name"):
        parse_csv("name,phone,Name\nA,31988887777,B\n", "BR")
    with pytest.raises(ValidationFailed, match="empty"):
        parse_csv("  \n", "BR")


def test_unclosed_quote_is_a_file_error():
    text = 'name,phone\n"Ana,31988887777\n' + "x" * 140_000 + "\n"
    with pytest.raises(ValidationFailed, match="unreadable CSV"):
        parse_csv(text, "BR")


def test_row_with_more_values_than_columns_fails():
    rows, errors, failed = parse_csv("name,phone\nAna,31988887777,extra\n", "BR")
    assert rows == [] and failed == 1
    assert errors[0].field == "row"


def test_duplicates_in_one_file_merge_later_values_over_earlier():
    rows = [
        ContactRow(2, "+5531988887777", "Ana", None, "1", {"a": "1"}),
        ContactRow(3, "+5531988887777", "", "ana@x.io", None, {"b": "2"}),
        ContactRow(4, "+5531977776666", "Bia"),
    ]
    merged, seen = merge_duplicates(rows)
    assert seen == {"+5531988887777": 2, "+5531977776666": 1}
    first = merged[0]
    assert (first.name, first.email, first.document) == ("Ana", "ana@x.io", "1")
    assert first.custom_fields == {"a": "1", "b": "2"}


# --- over HTTP ------------------------------------------------------------------------------


def _form(content: bytes, filename: str = "contacts.csv") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", content, filename=filename, content_type="text/csv")
    return form


async def _contact(tenant_id, phone):
    return (
        await Contact.select()
        .where((Contact.tenant == tenant_id) & (Contact.phone == phone))
        .output(load_json=True)
        .first()
    )


async def test_import_mixed_file_creates_updates_and_reports(client, company):
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/contacts",
        json={"name": "Old Name", "phone": "+55 31 97777-0000", "custom_fields": {"vip": "yes"}},
        headers=headers,
    )
    assert resp.status == 201
    existing_id = (await resp.json())["id"]
    csv_text = (
        "name,phone,email,document,plano\n"
        'João,"(31) 98888-7777",joao@x.io,111,gold\n'  # new, BR local format
        "Maria,31977770000,,,silver\n"  # existing contact: updated
        "Zé,abc,ze@x.io,,\n"  # invalid phone
        "Lia,31966665555,lia@,,\n"  # invalid email
        "João Pedro,+55 31 98888-7777,,,platinum\n"  # same phone again in the file
        "Rita,31955554444,,,\n"  # new
    )
    resp = await client.post(
        "/api/v1/contacts/import", data=_form(csv_text.encode()), headers=headers
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["created"] == 2
    assert report["updated"] == 2
    assert report["failed"] == 2
    assert {(e["row"], e["field"]) for e in report["errors"]} == {(4, "phone"), (5, "email")}

    joao = await _contact(company.tenant_id, "+5531988887777")
    assert joao["name"] == "João Pedro"
    assert joao["email"] == "joao@x.io" and joao["document"] == "111"
    assert joao["custom_fields"] == {"plano": "platinum"}
    maria = await _contact(company.tenant_id, "+5531977770000")
    assert str(maria["id"]) == existing_id
    assert maria["name"] == "Maria"
    assert maria["custom_fields"] == {"vip": "yes", "plano": "silver"}
    assert await Contact.count().where(Contact.tenant == company.tenant_id) == 3
    audit = (
        await AuditLog.select()
        .where((AuditLog.tenant == company.tenant_id) & (AuditLog.action == "contact.import"))
        .output(load_json=True)
        .first()
    )
    assert audit["data"] == {"created": 2, "updated": 2, "failed": 2}


async def test_import_raw_csv_body_with_bom_and_semicolons(client, company):
    headers = await login(client, company.owner)
    body = "\ufeffnome;phone;email\nAna;(11) 91234-5678;ana@x.io\n".encode()
    resp = await client.post(
        "/api/v1/contacts/import", data=body, headers={**headers, "Content-Type": "text/csv"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["created"] == 1
    ana = await _contact(company.tenant_id, "+5511912345678")
    assert ana["custom_fields"] == {"nome": "Ana"}
    assert ana["email"] == "ana@x.io"


async def test_import_restores_the_ninth_digit_of_old_form_mobiles(client, company):
    headers = await login(client, company.owner)
    body = b"name,phone\nAna,31 8888-7777\n"
    resp = await client.post(
        "/api/v1/contacts/import", data=body, headers={**headers, "Content-Type": "text/csv"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["created"] == 1
    assert (await _contact(company.tenant_id, "+5531988887777"))["custom_fields"] == {}


async def test_import_is_idempotent(client, company):
    headers = await login(client, company.owner)
    data = b"name,phone\nAna,31988887777\nBia,31977776666\n"
    first = await (
        await client.post("/api/v1/contacts/import", data=_form(data), headers=headers)
    ).json()
    again = await (
        await client.post("/api/v1/contacts/import", data=_form(data), headers=headers)
    ).json()
    assert (first["created"], first["updated"]) == (2, 0)
    assert (again["created"], again["updated"]) == (0, 2)
    assert await Contact.count().where(Contact.tenant == company.tenant_id) == 2


async def test_import_larger_than_body_limit_but_within_import_limit(client, company):
    """client_max_size (1 MiB) must not apply: the import streams up to 10 MB itself."""
    headers = await login(client, company.owner)
    notes = "x" * 100_000
    lines = [f"C{i},319888{i:05d},{notes}" for i in range(12)]
    data = ("name,phone,notes\n" + "\n".join(lines)).encode()
    assert len(data) > 1_048_576
    resp = await client.post("/api/v1/contacts/import", data=_form(data), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["created"] == 12


async def test_import_over_10_mb_is_413(client, company):
    headers = await login(client, company.owner)
    data = b"name,phone\n" + b"a" * (10_485_760)
    resp = await client.post("/api/v1/contacts/import", data=_form(data), headers=headers)
    assert resp.status == 413
    error = (await resp.json())["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit_bytes": 10_485_760}
    resp = await client.post(
        "/api/v1/contacts/import", data=data, headers={**headers, "Content-Type": "text/csv"}
    )
    assert resp.status == 413


async def test_import_limit_enforced_while_streaming_without_content_length(
    make_client, make_company
):
    client = await make_client(max_import_bytes=4096)
    company = await make_company()
    headers = await login(client, company.owner)

    async def chunks():
        yield b"name,phone\n"
        for _ in range(10):
            yield b"Ana,31988887777\n" * 64

    resp = await client.post(
        "/api/v1/contacts/import",
        data=chunks(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["details"] == {"limit_bytes": 4096}
    assert await Contact.count().where(Contact.tenant == company.tenant_id) == 0


async def test_import_errors(client, company):
    owner = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/contacts/import",
        data=b"name,phone\n",
        headers={**owner, "Content-Type": "application/xml"},
    )
    assert resp.status == 415
    form = aiohttp.FormData()
    form.add_field("other", b"name,phone\n", filename="x.csv")
    resp = await client.post("/api/v1/contacts/import", data=form, headers=owner)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "file"
    resp = await client.post(
        "/api/v1/contacts/import", data=_form(b"name,email\nA,a@x.io\n"), headers=owner
    )
    assert resp.status == 422
    agent = await login(client, await company.add("agent"))
    resp = await client.post("/api/v1/contacts/import", data=_form(b"name,phone\n"), headers=agent)
    assert resp.status == 403


async def test_error_report_is_capped_but_failures_are_all_counted(client, company):
    headers = await login(client, company.owner)
    data = "name,phone\n" + "".join(f"Bad{i},123\n" for i in range(1001)) + "Ok,31988887777\n"
    resp = await client.post("/api/v1/contacts/import", data=_form(data.encode()), headers=headers)
    report = await resp.json()
    assert (report["created"], report["failed"]) == (1, 1001)
    assert len(report["errors"]) == 1000 and report["errors_truncated"] is True
    assert report["errors"][-1]["row"] == 1001
