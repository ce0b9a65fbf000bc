"""Importing contacts from a CSV file: read the upload within a size limit, parse, upsert.

Spreadsheets come from Excel and Google Sheets in Brazil and elsewhere, so the reader
accepts a UTF-8 BOM and either `;` or `,` as delimiter. Each data row is checked on its
own and reported by its spreadsheet row number (the header is row 1), so one bad line
never sinks the file. A phone already in the company updates that contact instead of
creating a second one.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from guiche.contacts.phones import InvalidPhone, normalize_phone
from guiche.foundation.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from guiche.foundation.pgtext import has_unstorable
from guiche.http.multipart import file_part, read_chunk
from guiche.models import Contact

KNOWN_COLUMNS = ("name", "phone", "email", "document")
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})
CHUNK = 64 * 1024
BATCH = 500
#: Room for multipart boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LIMITS = {"name": 200, "email": 320, "document": 40}
#: A file of garbage must not produce a response larger than the file: errors are capped.
MAX_ERRORS = 1000


class RowError(BaseModel):
    row: int
    field: str
    message: str


class ImportReport(BaseModel):
    created: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[RowError] = []
    errors_truncated: bool = False


@dataclass
class ContactRow:
    """One valid data row, already normalised."""

    row: int
    phone: str
    name: str = ""
    email: str | None = None
    document: str | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)


# --- reading the upload -----------------------------------------------------------------


async def read_upload(request: web.Request, limit: int) -> bytes:
    """The CSV bytes from a multipart field `file` or a raw `text/csv` body, at most `limit`.

    The app's `client_max_size` only guards `request.read()`/`post()`, so the body is
    streamed here and cut off with a 413 as soon as it passes the import limit.
    """
    declared = request.content_length
    if request.content_type == "multipart/form-data":
        if declared is not None and declared > limit + MULTIPART_OVERHEAD:
            raise _too_large(limit)
        part = await file_part(request)
        if part is not None:
            return await _read_limited(lambda size: read_chunk(part, size), limit)
        raise ValidationFailed(
            "Upload the CSV in a multipart field named 'file'",
            details=[{"field": "file", "message": "required"}],
        )
    if request.content_type in CSV_MEDIA_TYPES:
        if declared is not None and declared > limit:
            raise _too_large(limit)
        return await _read_limited(lambda size: request.content.read(size), limit)
    raise UnsupportedMediaType("Send the CSV as multipart/form-data (field 'file') or text/csv")


async def _read_limited(read: Callable[[int], Awaitable[bytes]], limit: int) -> bytes:
    buffer = bytearray()
    while chunk := await read(CHUNK):
        buffer.extend(chunk)
        if len(buffer) > limit:
            raise _too_large(limit)
    return bytes(buffer)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The import file is larger than {limit} bytes", details={"limit_bytes": limit}
    )


# --- parsing ------------------------------------------------------------------------------


def decode_csv(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            "The file is not UTF-8 text",
            details=[{"field": "file", "message": f"invalid UTF-8 at byte {exc.start}"}],
        ) from None


def detect_delimiter(text: str) -> str:
    """`;` or `,`: the sniffer's guess when the header agrees with it, else the header's count."""
    header = text.split("\n", 1)[0]
    try:
        guess = csv.Sniffer().sniff(text[:CHUNK], delimiters=";,").delimiter
    except csv.Error:
        guess = ""
    if guess and guess in header:
        return guess
    return ";" if header.count(";") > header.count(",") else ","


def parse_csv(text: str, region: str) -> tuple[list[ContactRow], list[RowError], int]:
    """(valid rows, errors, number of failed rows). Blank lines are skipped, not failed."""
    if not text.strip():
        raise _file_error("the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=detect_delimiter(text))
    rows: list[ContactRow] = []
    errors: list[RowError] = []
    failed = 0
    try:
        header = [name.strip().lower() for name in next(reader)]
        _check_header(header)
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            parsed, row_errors = parse_row(number, header, cells, region)
            if row_errors:
                failed += 1
                errors.extend(row_errors)
            elif parsed is not None:
                rows.append(parsed)
    except csv.Error as exc:
        # Unrecoverable for the rest of the file (e.g. a quote never closed).
        raise _file_error(f"unreadable CSV near line {reader.line_num}: {exc}") from None
    return rows, errors, failed


def _check_header(header: list[str]) -> None:
    named = [name for name in header if name]
    duplicates = sorted({name for name in named if named.count(name) > 1})
    if duplicates:
        raise _file_error(f"duplicate columns: {', '.join(duplicates)}")
    if "phone" not in named:
        raise _file_error("the header row needs a 'phone' column")
    unstorable = [name for name in named if has_unstorable(name)]
    if unstorable:
        raise _file_error("a column name contains text that cannot be stored (U+0000)")


def _file_error(message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid CSV: {message}", details=[{"field": "file", "message": message}]
    )


def parse_row(
    number: int, header: list[str], cells: list[str], region: str
) -> tuple[ContactRow | None, list[RowError]]:
    """Validate one data row; every bad cell is reported, not only the first."""
    extra = [cell for cell in cells[len(header) :] if cell.strip()]
    if extra:
        message = f"{len(cells)} values for {len(header)} columns"
        return None, [RowError(row=number, field="row", message=message)]
    values = {name: cells[i].strip() for i, name in enumerate(header) if name and i < len(cells)}
    errors = [
        RowError(row=number, field=name, message="contains text that cannot be stored (U+0000)")
        for name, value in values.items()
        if has_unstorable(value)
    ]
    if errors:  # one bad row fails alone, as any other invalid row does
        return None, errors
    phone = ""
    raw_phone = values.get("phone", "")
    if not raw_phone:
        errors.append(RowError(row=number, field="phone", message="required"))
    else:
        try:
            phone = normalize_phone(raw_phone, region)
        except InvalidPhone as exc:
            errors.append(RowError(row=number, field="phone", message=str(exc)))
    for column, limit in LIMITS.items():
        if len(values.get(column, "")) > limit:
            errors.append(RowError(row=number, field=column, message=f"over {limit} characters"))
    email = values.get("email", "").lower()
    if email and not EMAIL.match(email):
        errors.append(RowError(row=number, field="email", message="not a valid email address"))
    if errors:
        return None, errors
    custom = {name: value for name, value in values.items() if name not in KNOWN_COLUMNS and value}
    return (
        ContactRow(
            row=number,
            phone=phone,
            name=values.get("name", ""),
            email=email or None,
            document=values.get("document") or None,
            custom_fields=custom,
        ),
        [],
    )


# --- storing ------------------------------------------------------------------------------


def merge_duplicates(rows: list[ContactRow]) -> tuple[list[ContactRow], dict[str, int]]:
    """One row per phone (later non-empty values win) and how often each phone appeared.

    Postgres refuses to upsert the same row twice in one statement, and a phone listed
    twice is one contact updated, not two.
    """
    merged: dict[str, ContactRow] = {}
    seen: dict[str, int] = {}
    for row in rows:
        seen[row.phone] = seen.get(row.phone, 0) + 1
        first = merged.get(row.phone)
        if first is None:
            merged[row.phone] = ContactRow(
                row.row, row.phone, row.name, row.email, row.document, dict(row.custom_fields)
            )
            continue
        first.name = row.name or first.name
        first.email = row.email or first.email
        first.document = row.document or first.document
        first.custom_fields.update(row.custom_fields)
    return list(merged.values()), seen


UPSERT = """
INSERT INTO contacts (tenant, name, phone, email, document, custom_fields)
SELECT {}::uuid, coalesce(r.name, ''), r.phone, r.email, r.document, r.custom::jsonb
FROM unnest({}::text[], {}::text[], {}::text[], {}::text[], {}::text[])
    AS r(name, phone, email, document, custom)
ON CONFLICT (tenant, phone) WHERE phone IS NOT NULL DO UPDATE SET
    name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE contacts.name END,
    email = coalesce(EXCLUDED.email, contacts.email),
    document = coalesce(EXCLUDED.document, contacts.document),
    custom_fields = contacts.custom_fields || EXCLUDED.custom_fields,
    updated_at = now()
RETURNING phone, (xmax = 0) AS inserted
"""


async def upsert_contacts(tenant_id: uuid.UUID, rows: list[ContactRow]) -> tuple[int, int]:
    """(created, updated) after writing `rows` into the company's contacts, in batches."""
    unique, seen = merge_duplicates(rows)
    created = updated = 0
    for start in range(0, len(unique), BATCH):
        batch = unique[start : start + BATCH]
        result: list[dict[str, Any]] = await Contact.raw(
            UPSERT,
            tenant_id,
            [r.name for r in batch],
            [r.phone for r in batch],
            [r.email for r in batch],
            [r.document for r in batch],
            [orjson.dumps(r.custom_fields).decode() for r in batch],
        )
        for item in result:
            times = seen[item["phone"]]
            if item["inserted"]:
                created += 1
                updated += times - 1
            else:
                updated += times
    return created, updated


async def import_csv(tenant_id: uuid.UUID, data: bytes, region: str) -> ImportReport:
    """Parse and store one uploaded file; the caller wraps it in a transaction."""
    rows, errors, failed = parse_csv(decode_csv(data), region)
    created, updated = await upsert_contacts(tenant_id, rows)
    return ImportReport(
        created=created,
        updated=updated,
        failed=failed,
        errors=errors[:MAX_ERRORS],
        errors_truncated=len(errors) > MAX_ERRORS,
    )
