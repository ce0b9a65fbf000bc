"""A webhook batch's messages stored set-based, in one statement.

`guiche_ingest_messages()` (a SQL function, see its migration) claims the keys, upserts
the contacts, links identities, finds or opens the conversations, inserts the messages
and records their events for the whole batch in one round trip. Python's part: order
and de-duplicate the batch, normalise phones, build each message's columns, and turn
the rows it returns into the events to publish.

Senders without a valid phone (username-only providers, malformed numbers) are matched
by (channel type, provider user id) first, with `resolve_contact`, a few statements
each: rare, and never racing the phone path (a phone is the key there).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from guiche.channels import DeliveryStatus, InboundMessage
from guiche.foundation.jsonio import dumps, dumps_text
from guiche.inbound.identity import resolve_contact, sender_keys
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent

if TYPE_CHECKING:
    from guiche.channel_host.runtime import ChannelRow

_INGEST = (
    "SELECT * FROM guiche_ingest_messages("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
)

_STORED_KEYS = """
SELECT provider_message_id FROM message_keys
WHERE channel = $1 AND provider_message_id = ANY($2::varchar[])
"""


class Incoming(NamedTuple):
    """A message and who sent it: a valid E.164 `phone` (and the provider user id to
    link to it), or else the `user` id that identifies the sender on its own."""

    message: InboundMessage
    phone: str | None
    user: str | None


@dataclass
class Stored:
    """What the statement did: new message ids, conversations it opened, their events."""

    created: list[uuid.UUID] = field(default_factory=list)
    opened: list[uuid.UUID] = field(default_factory=list)
    events: list[BusEvent] = field(default_factory=list)


def incoming(messages: Iterable[InboundMessage]) -> tuple[list[Incoming], int]:
    """The batch in storing order (by timestamp) with each provider id once, and how
    many repeats were dropped (duplicates, as a second claim of the key would be)."""
    seen: set[str] = set()
    rows: list[Incoming] = []
    repeats = 0
    for message in sorted(messages, key=lambda m: m.timestamp):
        if message.provider_message_id in seen:
            repeats += 1
            continue
        seen.add(message.provider_message_id)
        rows.append(Incoming(message, *sender_keys(message.party)))
    return rows, repeats


def needs_identities(rows: Sequence[Incoming]) -> bool:
    """True when some sender has no valid phone (matched before the statement runs)."""
    return any(row.phone is None for row in rows)


@dataclass
class Identities:
    """Where the batch's phone-less messages go, by provider user id: an existing or new
    contact (`contacts`), or the contact of the phone the same user id came with earlier
    in this batch (`phones`), which the statement creates and links."""

    contacts: dict[str, uuid.UUID] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)


_FIND_IDENTITIES = """
SELECT provider_user_id FROM contact_identities
WHERE tenant = $1 AND channel_type = $2 AND provider_user_id = ANY($3::varchar[])
"""


async def resolve_identities(
    conn: Any, channel: ChannelRow, rows: Sequence[Incoming]
) -> Identities:
    """Contacts of the senders without a valid phone, by provider user id, as messages
    stored one at a time would find them; messages already stored are skipped (a
    redelivery creates or renames nothing). Call inside the transaction that stores
    the batch."""
    by_user: dict[str, list[InboundMessage]] = {}
    first_phone: dict[str, str | None] = {}  # each user id's first message's phone
    for row in rows:
        if row.user is None:
            continue
        first_phone.setdefault(row.user, row.phone)
        if row.phone is None:
            by_user.setdefault(row.user, []).append(row.message)
    found = Identities()
    if not by_user:
        return found
    pending = [m.provider_message_id for messages in by_user.values() for m in messages]
    stored = {r["provider_message_id"] for r in await conn.fetch(_STORED_KEYS, channel.id, pending)}
    # A user id that came with a phone first: linked to that phone's contact by the
    # statement, unless it already names a contact.
    with_phone = [user for user in by_user if first_phone[user] is not None]
    linked = (
        {
            r["provider_user_id"]
            for r in await conn.fetch(_FIND_IDENTITIES, channel.tenant_id, channel.type, with_phone)
        }
        if with_phone
        else set()
    )
    for user in sorted(by_user):  # a global order: concurrent batches wait, never deadlock
        fresh = [m for m in by_user[user] if m.provider_message_id not in stored]
        if not fresh:
            continue
        phone = first_phone[user]
        if phone is not None and user not in linked:
            found.phones[user] = phone
            continue
        # The first message creates the contact; a later one fills an empty name.
        name = next((m.party.name for m in fresh if m.party.name), None)
        party = fresh[0].party.model_copy(update={"name": name, "provider_user_id": user})
        found.contacts[user] = await resolve_contact(
            conn, channel.tenant_id, channel.type, party, chat_kind=fresh[0].chat_kind
        )
    return found


#: As a dict, not a set: pydantic-core reads a dict `exclude` as is, where a set or frozenset
#: is converted on every call (about 2.4 of the serializer's 5.3 µs per message).
_NOT_NORMALISED: dict[str, bool] = {"raw": True}


def payload_document(message: InboundMessage) -> str:
    """The `payload` document of a stored message, as JSON text: the normalised message
    (JSON mode, no nulls) and the provider's raw one. Webhook ingest and the bulk import
    store the same document, so readers need not care which path wrote a row."""
    # The model's serializer itself: `model_dump_json` wraps the same call in ~3 µs of
    # argument handling, and this runs for every message stored (the same JSON).
    normalised = type(message).__pydantic_serializer__.to_json(
        message, exclude=_NOT_NORMALISED, exclude_none=True
    )
    return b"".join(
        (b'{"normalised":', normalised, b',"raw":', _raw_json(message.raw), b"}")
    ).decode()


def _raw_json(raw: dict[str, Any]) -> bytes:
    """A provider's raw message: parsed JSON nearly always (plain `orjson.dumps`), else
    whatever an adapter put there, through `jsonio.dumps` (non-text keys, other types)."""
    try:
        return orjson.dumps(raw)
    except orjson.JSONEncodeError:
        return dumps(raw)


async def store_messages(
    conn: Any,
    channel: ChannelRow,
    rows: Sequence[Incoming],
    identities: Identities | None = None,
) -> Stored:
    """Store `rows` (from `incoming`) with one statement on `conn`.

    Outside a transaction the statement is its own, committed when this returns; inside
    one it joins it. `identities` place the phone-less senders (`resolve_identities`); a
    phone-less message they do not place was already stored and is left out.
    """
    return (await store_parts(conn, channel, [rows], identities))[0]


async def store_parts(
    conn: Any,
    channel: ChannelRow,
    parts: Sequence[Sequence[Incoming]],
    identities: Identities | None = None,
) -> list[Stored]:
    """Several webhooks' rows of one channel in the same one statement, each part's
    outcome apart (`guiche.inbound.coalesce`). The parts must not share a provider id:
    the statement claims each key once."""
    identities = identities or Identities()
    columns: list[list[Any]] = [[] for _ in range(12)]
    (pids, ats, phones, contact_ids, names, links, inbound, types, bodies, payloads,
     replies, partial) = columns  # fmt: skip
    kept: list[dict[str, Any]] = []  # message.new's data but for the ids the statement adds
    owner: list[int] = []  # the part each kept row came from
    for index, rows in enumerate(parts):
        for message, phone, user in rows:
            contact = None
            if phone is None and user is not None:
                phone = identities.phones.get(user)
                contact = identities.contacts.get(user) if phone is None else None
            if phone is None and contact is None:
                continue
            sender, party = message.sender, message.party
            body = message.preview()
            direction, status = (
                ("out", DeliveryStatus.SENT.value) if message.from_me else ("in", "received")
            )
            pids.append(message.provider_message_id)
            ats.append(message.timestamp)
            phones.append(phone)
            contact_ids.append(contact)
            names.append(party.name or "")
            links.append(user if phone is not None else None)
            inbound.append(not message.from_me)
            types.append(message.type.value)
            bodies.append(body)
            payloads.append(payload_document(message))
            replies.append(message.reply_to_provider_message_id)
            data = {
                "channel_id": channel.id,
                "direction": direction,
                "type": message.type.value,
                "body": body,
                "status": status,
                "provider_message_id": message.provider_message_id,
                "created_at": message.timestamp,
                "sender_name": sender.name,
            }
            kept.append(data)
            owner.append(index)
            partial.append(dumps_text(data))
    stored = [Stored() for _ in parts]
    if not kept:
        return stored
    records = await conn.fetch(
        _INGEST,
        channel.id,
        channel.tenant_id,
        channel.type,
        channel.default_department,
        *columns,
    )
    for record in records:
        ordinal = record["ord"] - 1
        into = stored[owner[ordinal]]
        into.events.append(_event(channel, record, kept[ordinal]))
        if record["opened"]:
            into.opened.append(record["conversation"])
        else:
            into.created.append(record["message_id"])
    return stored


def _event(channel: ChannelRow, record: Any, partial: dict[str, Any]) -> BusEvent:
    """The event the statement recorded, as the bus publishes it (data as stored)."""
    conversation = record["conversation"]
    if record["opened"]:
        kind = ev.CONVERSATION_UPDATED
        data: dict[str, Any] = {
            "action": "opened",
            "conversation_id": conversation,
            "status": record["status"],
            "contact_id": record["contact"],
            "channel_id": channel.id,
            "department_id": record["department"],
        }
    else:
        kind = ev.MESSAGE_NEW
        data = {
            "id": record["message_id"],
            "conversation_id": conversation,
            "contact_id": record["contact"],
            **partial,
        }
    # Built from typed values we hold: no validation pass needed.
    return BusEvent.model_construct(
        tenant_id=channel.tenant_id,
        type=kind,
        data=data,
        conversation_id=conversation,
        department_id=record["department"],
        assignee_id=record["assignee"],
        seq=record["seq"],
        created_at=record["created_at"],
    )
