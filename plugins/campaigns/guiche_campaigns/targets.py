"""Adding targets: from contacts (ids, a search, a department) or a streamed CSV upload.

CSV: a header row; one column named `phone` (or `telefone`, `celular`, `whatsapp`),
optional `name` (`nome`); every other column becomes a variable for `{{column}}`.
Phones are normalised to E.164 with the company's default region; invalid rows are
reported (line and reason) and skipped; a phone already targeted in this run collapses.
An opted-out phone is stored as `opted_out`, counted and never sent.
"""

from __future__ import annotations

import codecs
import csv
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from guiche.plugin import (
    ContactRef,
    InvalidPhone,
    normalize_phone,
)

from . import store

PHONE_COLUMNS = ("phone", "telefone", "celular", "whatsapp", "numero", "número")
NAME_COLUMNS = ("name", "nome")
MAX_CSV_BYTES = 50 * 1024 * 1024
BATCH = 5000
MAX_ERRORS_SHOWN = 1000


@dataclass
class Added:
    rows: int = 0
    added: int = 0
    duplicates: int = 0
    opted_out: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def out(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "duplicates": self.duplicates,
            "opted_out": self.opted_out,
            "invalid": self.invalid,
            "errors": self.errors,
        }


@dataclass
class Batch:
    contacts: list[uuid.UUID | None] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)

    def add(self, contact: uuid.UUID | None, phone: str, name: str, values: dict) -> None:
        self.contacts.append(contact)
        self.phones.append(phone)
        self.names.append(name[:200])
        self.variables.append(orjson.dumps(values).decode())


async def store_batch(conn: Any, campaign: Any, batch: Batch, added: Added) -> None:
    """Insert one batch (duplicates collapse, opted-out phones are stored as such)."""
    if not batch.phones:
        return
    rows = await conn.fetch(
        store.INSERT_TARGETS,
        campaign["tenant"],
        campaign["id"],
        campaign["run"],
        batch.contacts,
        batch.phones,
        batch.names,
        batch.variables,
        campaign["channel"],
    )
    inserted = len(rows)
    opted = sum(1 for row in rows if row["state"] == "opted_out")
    added.added += inserted - opted
    added.opted_out += opted
    added.duplicates += len(batch.phones) - inserted


def _error(added: Added, line: int, reason: str) -> None:
    added.invalid += 1
    if len(added.errors) < MAX_ERRORS_SHOWN:
        added.errors.append({"line": line, "error": reason})


async def lines(content: Any, limit: int | None = None) -> AsyncIterator[str]:
    """Decoded text lines of a streamed body (UTF-8, BOM dropped), refusing past `limit`
    bytes (`MAX_CSV_BYTES`): OverflowError, before the rest is read."""
    limit = limit or MAX_CSV_BYTES
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    seen = 0
    pending = ""
    async for chunk in content.iter_chunked(65536):
        seen += len(chunk)
        if seen > limit:
            raise OverflowError(limit)
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


async def import_csv(conn: Any, campaign: Any, content: Any, region: str) -> Added:
    """Stream a CSV body into the campaign's targets (see the module docstring)."""
    added = Added()
    reader: Any = None
    header: list[str] = []
    phone_at = name_at = -1
    batch = Batch()
    line_no = 0
    async for text in lines(content):
        line_no += 1
        if reader is None:
            header = [name.strip().lower() for name in next(csv.reader([text]), [])]
            phone_at = next((i for i, n in enumerate(header) if n in PHONE_COLUMNS), -1)
            name_at = next((i for i, n in enumerate(header) if n in NAME_COLUMNS), -1)
            if phone_at < 0:
                raise ValueError(f"no phone column; name one of {list(PHONE_COLUMNS)}")
            reader = True
            continue
        if not text.strip():
            continue
        row = next(csv.reader([text]), [])
        added.rows += 1
        if len(row) <= phone_at:
            _error(added, line_no, "missing phone")
            continue
        try:
            phone = normalize_phone(row[phone_at], region)
        except InvalidPhone as exc:
            _error(added, line_no, str(exc))
            continue
        name = row[name_at].strip() if 0 <= name_at < len(row) else ""
        values = {
            header[i]: value.strip()
            for i, value in enumerate(row)
            if i < len(header) and i not in (phone_at, name_at) and header[i]
        }
        batch.add(None, phone, name, values)
        if len(batch.phones) >= BATCH:
            await store_batch(conn, campaign, batch, added)
            batch = Batch()
    await store_batch(conn, campaign, batch, added)
    if reader is None:
        raise ValueError("the CSV is empty: it needs a header row with a phone column")
    return added


async def from_contacts(conn: Any, campaign: Any, rows: list[ContactRef]) -> Added:
    """Targets from core contacts (a contact without a phone is reported, not added)."""
    added = Added(rows=len(rows))
    batch = Batch()
    for contact in rows:
        if not contact.phone:
            _error(added, 0, f"contact {contact.id} has no phone")
            continue
        batch.add(contact.id, contact.phone, contact.name, {})
    await store_batch(conn, campaign, batch, added)
    return added
