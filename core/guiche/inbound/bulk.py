"""`import_history()`: the bulk path for history imports (a cataloger, a migration from
another system), set-based where `ingest()` is per message.

Per batch (default 5,000 messages): the senders' contacts (by E.164 phone, or channel
type + provider user id: the rules of `resolve_contact`) and their conversations are
found or created in one short transaction, a statement per step, for the senders this
import has not met yet. Then the batch's transaction copies its provider ids (binary `COPY`) into a
session-local temporary table and claims them in `message_keys` with one
`INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`, and
only the messages whose key it claimed go in, with one binary `COPY`; keys and messages
commit together. Whatever was already stored — by an earlier import, a live webhook or
this import twice — is skipped, so an interrupted import is simply run again.

Batches overlap: up to `WRITES_IN_FLIGHT` of them COPY at once on their own connections
(one COPY keeps one Postgres backend busy) while the next one builds its rows, resolves
its senders and claims its keys (a `HistoryImport` session: up to
`SESSION_WRITES_IN_FLIGHT` batches claim or COPY at once, senders still resolved one call
at a time). A claim inserts its keys in key (byte) order: a batch may wait for another one to
commit (a provider id in both), but never while that one waits for it, so claims
cannot deadlock. Every transaction here that fails for a retryable reason
(deadlock, serialization failure) is run again (`guiche.database.engine.retrying`); a batch whose
COPY failed claims its keys again first.

Where imported messages land: in the contact's most recent conversation on the
channel, open or closed, so the history sits in the thread agents already work in and a
second import finds the conversation the first created. A contact without one gets a
new CLOSED conversation, opened at its first imported message and closed at its last
(whatever order they come in): history never opens, routes or assigns anything, never
enters a queue and never starts an auto-close timer. (Contacts and conversations commit
just before their messages; if a batch then fails they stay, and running the import
again fills them.) Conversations' `last_message_at` / `last_inbound_at` only move
forward, and are written once per conversation at the end (every
`TOUCH_FLUSH_CONVERSATIONS` conversations on long imports), not once per batch.

Nothing per message goes out: no `message.new` events, no plugin hooks, no routing.
When an import inserted something, one `history.imported` event (recorded and
published, visible to the whole company) says how much, so open screens can reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from guiche.channels import ChatKind, DeliveryStatus, InboundMessage
from guiche.database.engine import GENERIC_PLANS, retrying
from guiche.foundation.message_ids import new_message_id_texts
from guiche.inbound.identity import mark_chat_kinds, sender_keys
from guiche.inbound.storable import storable_document
from guiche.realtime.events import PendingEvent, record_events

if TYPE_CHECKING:
    from guiche.channel_host.runtime import ChannelRow
    from guiche.runtime.services import Services

HISTORY_IMPORTED = "history.imported"
DEFAULT_BATCH_SIZE = 5000
#: Conversations' last-message times are written once per this many conversations (and
#: at the end), not per batch: a history spread over many batches would otherwise
#: rewrite the same conversation rows (and their indexes) once per batch.
TOUCH_FLUSH_CONVERSATIONS = 20_000
#: Contacts and conversations already resolved are remembered up to this many.
CACHE_LIMIT = 200_000
#: Batches whose messages are being written at once (each on its own connection): one
#: COPY keeps one Postgres backend busy, two use a second CPU where there is one.
WRITES_IN_FLIGHT = 2
#: A `HistoryImport` session's batches claiming keys or writing at once, each in its own
#: transaction: claims insert their keys in key order, so two that share a key wait for
#: each other (the later one sees it taken) and never deadlock, and a session's claims
#: need not wait for each other's turn.
SESSION_WRITES_IN_FLIGHT = 3
#: Batches of at least this many messages build their rows off the event loop.
OFF_LOOP_ROWS = 500

#: The columns `COPY` fills; the rest (error, sender, updated_at) keep their defaults.
MESSAGE_COLUMNS = (
    "id",
    "created_at",
    "tenant",
    "conversation",
    "contact",
    "channel",
    "direction",
    "type",
    "body",
    "payload",
    "provider_message_id",
    "status",
    "reply_to",
)


Identity = tuple[str, str]
"""("phone", E.164) or ("user", provider user id)."""


@dataclass
class BulkResult:
    """What an import did: messages written, messages skipped as already stored (from
    any source, or repeated within the import), conversations it had to create, and
    the conversation each imported provider id's sender's history is in."""

    inserted: int = 0
    duplicates: int = 0
    conversations_created: int = 0
    conversations: dict[str, uuid.UUID] = field(default_factory=dict)


class _Row(NamedTuple):
    """A message as far as it can be turned into a row without the database."""

    created_at: dt.datetime
    identity: Identity
    direction: str
    type: str
    body: str
    payload: str
    provider_message_id: str
    status: str
    reply_to: str | None
    inbound: bool


# The new messages' ids are made here (`guiche.foundation.message_ids`: each carries its
# message's time), not by `guiche_message_id()` in the claim: that SQL function ran once
# per row on the one backend that claims keys, about seven times what making the id
# costs in Python. The batch's keys and ids reach Postgres by binary COPY into a
# session-local table (no array parameters to build and parse), then one statement
# claims them; RETURNING says which id each claimed key got (a key twice in one batch
# is claimed once, with one of its ids). The claim and the COPY after it check four
# foreign keys per row: `GENERIC_PLANS` keeps those checks from being planned per row.
_KEYS_TABLE = f"""
{GENERIC_PLANS};
CREATE TEMP TABLE IF NOT EXISTS guiche_import_claims (
    provider_message_id varchar NOT NULL, created_at timestamptz NOT NULL,
    message_id uuid NOT NULL
) ON COMMIT DELETE ROWS
"""
KEYS_TABLE = "guiche_import_claims"
KEY_COLUMNS = ("provider_message_id", "created_at", "message_id")
_CLAIM_KEYS = """
INSERT INTO message_keys (channel, provider_message_id, tenant, message_id, message_created_at)
SELECT $1, k.provider_message_id, $2, k.message_id, k.created_at
FROM guiche_import_claims k
ORDER BY k.provider_message_id COLLATE "C"
ON CONFLICT (channel, provider_message_id) DO NOTHING
RETURNING provider_message_id, message_id
"""

_FIND_PHONES = """
SELECT c.id, c.phone, c.name FROM contacts c
JOIN unnest($2::varchar[]) AS p(phone) ON c.phone = p.phone
WHERE c.tenant = $1
"""

_INSERT_PHONES = """
INSERT INTO contacts (tenant, phone, name)
SELECT $1, p.phone, p.name FROM unnest($2::varchar[], $3::varchar[]) AS p(phone, name)
ON CONFLICT (tenant, phone) WHERE phone IS NOT NULL DO NOTHING
RETURNING id, phone, name
"""

_LINK_IDENTITIES = """
INSERT INTO contact_identities (tenant, contact, channel_type, provider_user_id)
SELECT $1, i.contact, $2, i.provider_user_id
FROM unnest($3::uuid[], $4::varchar[]) AS i(contact, provider_user_id)
ON CONFLICT (tenant, channel_type, provider_user_id) DO NOTHING
RETURNING provider_user_id
"""

_FIND_IDENTITIES = """
SELECT i.provider_user_id, i.contact, c.name FROM contact_identities i
JOIN contacts c ON c.id = i.contact
WHERE i.tenant = $1 AND i.channel_type = $2 AND i.provider_user_id = ANY($3::varchar[])
"""

_INSERT_CONTACTS = """
INSERT INTO contacts (id, tenant, name, custom_fields)
SELECT n.id, $1, n.name, n.custom_fields
FROM unnest($2::uuid[], $3::varchar[], $4::jsonb[]) AS n(id, name, custom_fields)
"""

_NAME_IF_EMPTY = """
UPDATE contacts c SET name = n.name, updated_at = now()
FROM unnest($2::uuid[], $3::varchar[]) AS n(id, name)
WHERE c.tenant = $1 AND c.id = n.id AND c.name = ''
"""

_LATEST_CONVERSATIONS = """
SELECT DISTINCT ON (c.contact) c.contact, c.id FROM conversations c
JOIN unnest($3::uuid[]) AS u(contact) ON c.contact = u.contact
WHERE c.tenant = $1 AND c.channel = $2
ORDER BY c.contact, c.created_at DESC, c.id DESC
"""

_INSERT_CLOSED_CONVERSATIONS = """
INSERT INTO conversations (id, tenant, contact, channel, department, status,
                           opened_at, closed_at, created_at)
SELECT n.id, $1, n.contact, $2, $3, 'CLOSED', n.first_at, n.last_at, n.first_at
FROM unnest($4::uuid[], $5::uuid[], $6::timestamptz[], $7::timestamptz[])
     AS n(id, contact, first_at, last_at)
"""

# `ours`: a CLOSED conversation this import created, whose span follows its messages
# whatever order they came in.
_TOUCH_CONVERSATIONS = """
UPDATE conversations c
SET last_message_at = GREATEST(coalesce(c.last_message_at, t.last_at), t.last_at),
    last_inbound_at = CASE WHEN t.last_in IS NULL THEN c.last_inbound_at
                           ELSE GREATEST(coalesce(c.last_inbound_at, t.last_in), t.last_in) END,
    opened_at = CASE WHEN t.ours THEN LEAST(c.opened_at, t.first_at) ELSE c.opened_at END,
    created_at = CASE WHEN t.ours THEN LEAST(c.created_at, t.first_at) ELSE c.created_at END,
    closed_at = CASE WHEN t.ours THEN GREATEST(c.closed_at, t.last_at) ELSE c.closed_at END,
    updated_at = now()
FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::bool[])
     AS t(id, first_at, last_at, last_in, ours)
WHERE c.tenant = $1 AND c.id = t.id
  AND (c.last_message_at IS NULL OR c.last_message_at < t.last_at
       OR (t.last_in IS NOT NULL AND (c.last_inbound_at IS NULL OR c.last_inbound_at < t.last_in))
       OR (t.ours AND (c.opened_at > t.first_at OR c.closed_at < t.last_at)))
"""

_REPLY_TARGETS = """
SELECT provider_message_id, message_id FROM message_keys
WHERE channel = $1 AND provider_message_id = ANY($2::varchar[])
"""


async def import_history(
    services: Services,
    channel_row: ChannelRow,
    messages: Iterable[InboundMessage],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> BulkResult:
    """Store past messages of one channel in bulk, skipping any already stored.

    Idempotent: importing the same messages again adds nothing. Each batch's messages
    and keys commit together, so a failure keeps the batches before it (run the import
    again to finish).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    importer = _Importer(services, channel_row)
    writing: list[asyncio.Task[tuple[int, int]]] = []
    try:
        for chunk in _chunks(messages, batch_size):
            writing.append(await importer.start_batch(chunk, importer.result.conversations))
            if len(writing) >= WRITES_IN_FLIGHT:
                await writing.pop(0)
            if len(importer.touches) >= TOUCH_FLUSH_CONVERSATIONS:
                await importer.flush_touches()
        while writing:
            await writing.pop(0)
    except BaseException as exc:
        for task in writing:
            if isinstance(exc, asyncio.CancelledError):
                task.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
        if isinstance(exc, Exception):
            # Keep what committed consistent: its conversations' times still move forward.
            with contextlib.suppress(Exception):
                await importer.flush_touches()
        raise
    await importer.flush_touches()
    if importer.result.inserted:
        await _announce(services, channel_row, importer.result)
    return importer.result


class HistoryImport:
    """One import fed in several calls (a cataloger's batches, each of which it must
    know committed before it moves its own checkpoints): `add()` returns once that
    call's messages are committed, with what that call did. What one import_history()
    call does once per import is done once for the whole session: senders and their
    conversations are remembered across calls, conversations' times are written every
    `TOUCH_FLUSH_CONVERSATIONS` conversations and at `close()`, and one
    `history.imported` event is sent at `close()`. Calls may overlap: a call builds its
    rows as soon as it is made, resolves its senders in call order (one call at a
    time), and its batches claim their keys and COPY in up to
    `SESSION_WRITES_IN_FLIGHT` transactions at once, alongside other calls' batches, so
    the database is not idle between two calls and one batch's round trips do not hold
    the next one back. Idempotent like `import_history`: a call that failed or was cut
    off is simply made again — which also writes the conversation times a killed
    session owed."""

    def __init__(
        self, services: Services, channel_row: ChannelRow, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._importer = _Importer(services, channel_row)
        self._batch_size = batch_size
        self._turn = asyncio.Lock()  # calls resolve their senders one at a time, in order
        self._slots = asyncio.Semaphore(SESSION_WRITES_IN_FLIGHT)  # claims + COPYs at once
        self._writing: list[asyncio.Task[tuple[int, int]]] = []

    @property
    def result(self) -> BulkResult:
        """The whole session's totals so far."""
        return self._importer.result

    async def add(self, messages: Iterable[InboundMessage]) -> BulkResult:
        importer = self._importer
        outcome = BulkResult()
        mine: list[asyncio.Task[tuple[int, int]]] = []
        try:
            # Rows are built before this call's turn: while the call before it still
            # resolves and claims (the turn), this one's serialising runs alongside.
            chunks = [
                (chunk, await _rows_of(chunk)) for chunk in _chunks(messages, self._batch_size)
            ]
            async with self._turn:
                created = importer.result.conversations_created
                for chunk, rows in chunks:
                    targets = await importer.resolve(chunk, rows)
                    outcome.conversations.update(
                        (row.provider_message_id, targets[row.identity][1]) for row in rows
                    )
                    task = asyncio.create_task(self._claim_and_write(rows, targets))
                    mine.append(task)
                    self._writing.append(task)
                    await self._make_room(SESSION_WRITES_IN_FLIGHT)
                    if len(importer.touches) >= TOUCH_FLUSH_CONVERSATIONS:
                        await importer.flush_touches()
                outcome.conversations_created = importer.result.conversations_created - created
            for task in mine:
                inserted, duplicates = await task
                outcome.inserted += inserted
                outcome.duplicates += duplicates
        except BaseException as exc:
            for task in mine:
                if isinstance(exc, asyncio.CancelledError):
                    task.cancel()
            await asyncio.gather(*mine, return_exceptions=True)
            raise
        finally:
            self._writing = [task for task in self._writing if not task.done()]
        return outcome

    async def _claim_and_write(
        self, rows: list[_Row], targets: dict[Identity, tuple[uuid.UUID, uuid.UUID]]
    ) -> tuple[int, int]:
        """One batch's claim and COPY, in one of the session's write slots."""
        async with self._slots:
            claim = await retrying(partial(self._importer.claim, rows), what="history import claim")
            return await self._importer.write(claim, rows, targets)

    async def _make_room(self, keep: int) -> None:
        """Wait for the oldest writes until at most `keep` are in flight (any call's)."""
        while True:
            self._writing = [task for task in self._writing if not task.done()]
            if len(self._writing) <= keep:
                return
            await asyncio.wait([self._writing[0]])

    async def close(self) -> BulkResult:
        """Wait for what is still being written, write the conversations' times and, if
        anything was inserted, send the one `history.imported` event."""
        importer = self._importer
        await asyncio.gather(*self._writing, return_exceptions=True)
        self._writing = []
        await importer.flush_touches()
        if importer.result.inserted:
            await _announce(importer.services, importer.channel, importer.result)
        return importer.result

    async def abort(self) -> None:
        """After a failure: wait for the writes, keep committed conversations' times
        consistent; no event."""
        await asyncio.gather(*self._writing, return_exceptions=True)
        self._writing = []
        with contextlib.suppress(Exception):
            await self._importer.flush_touches()


def _chunks(messages: Iterable[InboundMessage], size: int) -> Iterator[list[InboundMessage]]:
    iterator = iter(messages)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _identity(message: InboundMessage) -> Identity:
    """The sender's identity key, by the rules of `guiche.inbound.identity.resolve_contact`."""
    phone, user_id = sender_keys(message.party)
    if phone is not None:
        return ("phone", phone)
    assert user_id is not None  # Sender guarantees a phone or a provider user id
    return ("user", user_id)


def _rows(messages: list[InboundMessage]) -> list[_Row]:
    return [_row(message) for message in messages]


async def _rows_of(messages: list[InboundMessage]) -> list[_Row]:
    """A big batch's rows are built in a thread: serialising thousands of payloads would
    hold the event loop (webhooks, sockets) for tens of milliseconds."""
    if len(messages) < OFF_LOOP_ROWS:
        return _rows(messages)
    return await asyncio.to_thread(_rows, messages)


_SENT = DeliveryStatus.SENT.value


def _row(message: InboundMessage) -> _Row:
    # Positional, in `_Row`'s field order, and the enum value read once: this runs for
    # every imported message, and keywords plus `DeliveryStatus.SENT.value` cost ~1 µs.
    message, payload = storable_document(message)
    from_me = message.from_me
    return _Row(
        message.timestamp,
        _identity(message),
        "out" if from_me else "in",
        message.type.value,
        message.preview(),
        payload,
        message.provider_message_id,
        _SENT if from_me else "received",
        message.reply_to_provider_message_id,
        not from_me,
    )


class _Claim:
    """A batch's open transaction on its own connection, holding the keys it claimed."""

    def __init__(self, conn: Any, transaction: Any, release: Any) -> None:
        self.conn = conn
        self.transaction = transaction
        self._release = release
        self.fresh: list[int] = []  # indexes of the batch's rows whose key was claimed
        self.ids: list[uuid.UUID] = []  # their new message ids
        self.duplicates = 0  # rows whose key was already taken

    async def commit(self) -> None:
        try:
            await self.transaction.commit()
        finally:
            await self._release()

    async def abandon(self) -> None:
        try:
            await self.transaction.rollback()
        finally:
            await self._release()


class _Importer:
    """One import's state: what it has resolved so far and the conversation times it owes."""

    def __init__(self, services: Services, channel: ChannelRow) -> None:
        self.services = services
        self.channel = channel
        self.result = BulkResult()
        self.contacts: dict[Identity, uuid.UUID] = {}
        self.nameless: set[uuid.UUID] = set()  # contacts whose stored name is empty
        self.linked: set[str] = set()  # provider user ids linked to a phone contact
        self.conversations: dict[uuid.UUID, uuid.UUID] = {}  # contact → conversation
        self.targets: dict[Identity, tuple[uuid.UUID, uuid.UUID]] = {}  # → both
        self.created: set[uuid.UUID] = set()  # conversations this import created
        # conversation → [first message at, last message at, last inbound at]
        self.touches: dict[uuid.UUID, list[Any]] = {}
        self.attempt_created: list[uuid.UUID] = []  # by the resolve transaction running now

    async def _connection(self) -> tuple[Any, Any]:
        """A connection of the engine's pool (or a new one) and how to give it back."""
        pool = self.services.db.pool
        if pool is not None:
            conn = await pool.acquire()
            return conn, lambda: pool.release(conn)
        conn = await self.services.db.get_new_connection()
        return conn, conn.close

    async def claim(self, rows: list[_Row]) -> _Claim:
        """Open the batch's transaction and claim its provider ids in `message_keys`."""
        conn, release = await self._connection()
        transaction = conn.transaction()
        try:
            await transaction.start()
        except BaseException:
            await release()
            raise
        claim = _Claim(conn, transaction, release)
        try:
            await conn.execute(_KEYS_TABLE)
            times = [row.created_at for row in rows]
            keys = zip(
                [row.provider_message_id for row in rows],
                times,
                new_message_id_texts(times),
                strict=True,
            )
            await conn.copy_records_to_table(
                KEYS_TABLE,
                # in the claim's order (byte order: Python's for str), so its sort finds
                # them sorted already
                records=sorted(keys, key=itemgetter(0)),
                columns=KEY_COLUMNS,
            )
            claimed: dict[str, uuid.UUID] = {
                record["provider_message_id"]: record["message_id"]
                for record in await conn.fetch(_CLAIM_KEYS, self.channel.id, self.channel.tenant_id)
            }
        except BaseException:
            await claim.abandon()
            raise
        claim.duplicates = len(rows) - len(claimed)
        self.result.duplicates += claim.duplicates
        for i, row in enumerate(rows):  # a key claimed once: its first message only
            message_id = claimed.pop(row.provider_message_id, None)
            if message_id is not None:
                claim.fresh.append(i)
                claim.ids.append(message_id)
        return claim

    async def resolve(
        self, chunk: list[InboundMessage], rows: list[_Row]
    ) -> dict[Identity, tuple[uuid.UUID, uuid.UUID]]:
        """Each sender's (contact, conversation), created where missing, committed before
        the batch's messages are written: batches write concurrently, and a message row
        can only reference what is committed."""
        if len(self.targets) > CACHE_LIMIT:
            self._forget_resolved()

        async def attempt() -> dict[Identity, tuple[uuid.UUID, uuid.UUID]]:
            self.attempt_created = []
            try:
                async with self.services.db.transaction() as transaction:
                    conn = transaction.connection
                    await self._resolve_contacts(conn, chunk, rows)
                    return await self._resolve_conversations(conn, rows)
            except BaseException:
                # What this transaction resolved was rolled back: look it up again.
                self.created.difference_update(self.attempt_created)
                self.result.conversations_created -= len(self.attempt_created)
                self._forget_resolved()
                raise

        return await retrying(attempt, what="history import senders")

    async def start_batch(
        self, chunk: list[InboundMessage], conversations: dict[str, uuid.UUID]
    ) -> asyncio.Task[tuple[int, int]]:
        """Build a batch's rows, resolve its senders, note each message's conversation in
        `conversations` and claim its keys, in call order; its COPY runs as the returned
        task, so the next batch is prepared meanwhile."""
        rows = await _rows_of(chunk)
        targets = await self.resolve(chunk, rows)
        conversations.update((row.provider_message_id, targets[row.identity][1]) for row in rows)
        claim = await retrying(partial(self.claim, rows), what="history import claim")
        return asyncio.create_task(self.write(claim, rows, targets))

    def _forget_resolved(self) -> None:
        # new objects, not .clear(): batches still being written hold the old targets
        self.contacts, self.nameless, self.conversations, self.targets = {}, set(), {}, {}
        self.linked = set()

    async def write(
        self, claim: _Claim, rows: list[_Row], targets: dict[Identity, tuple[uuid.UUID, uuid.UUID]]
    ) -> tuple[int, int]:
        """COPY the claimed messages and commit them with their keys; returns how many
        were inserted and how many were duplicates.

        A COPY that fails for a retryable reason rolled its keys back with it: the batch
        claims them again (a later batch may have taken some meanwhile: duplicates now)
        and copies what it got."""
        current: _Claim | None = claim

        async def attempt() -> list[_Row]:
            nonlocal current
            if current is None:
                current = await self.claim(rows)
            fresh_rows = [rows[i] for i in current.fresh]
            try:
                if fresh_rows:
                    await self._copy(current, fresh_rows, targets)
            except BaseException:
                await current.abandon()
                self.result.duplicates -= current.duplicates  # a new claim counts again
                current = None
                raise
            await current.commit()
            return fresh_rows

        fresh_rows = await retrying(attempt, what="history import batch")
        self.result.inserted += len(fresh_rows)
        # Duplicates owe their times too: an import killed after its COPY committed but
        # before its times were written left its conversations behind, and the re-run,
        # which finds only duplicates, is what moves them (forward only: idempotent).
        self._owe_touches(rows, targets)
        return len(fresh_rows), len(rows) - len(fresh_rows)

    async def _copy(
        self,
        claim: _Claim,
        rows: list[_Row],
        targets: dict[Identity, tuple[uuid.UUID, uuid.UUID]],
    ) -> None:
        channel = self.channel
        replies = await self._reply_targets(claim.conn, rows)
        records = []
        for message_id, row in zip(claim.ids, rows, strict=True):
            contact_id, conversation_id = targets[row.identity]
            records.append(
                (
                    message_id,
                    row.created_at,
                    channel.tenant_id,
                    conversation_id,
                    contact_id,
                    channel.id,
                    row.direction,
                    row.type,
                    row.body,
                    row.payload,
                    row.provider_message_id,
                    row.status,
                    replies.get(row.reply_to) if row.reply_to else None,
                )
            )
        await claim.conn.copy_records_to_table("messages", records=records, columns=MESSAGE_COLUMNS)

    # --- contacts ---------------------------------------------------------------------

    async def _resolve_contacts(
        self, conn: Any, messages: list[InboundMessage], rows: list[_Row]
    ) -> None:
        """Find or create the contacts of senders not met yet in this import, a statement
        per step. Names follow `resolve_contact`: a stored name is kept, an empty one
        takes the latest non-empty name the import shows for that sender."""
        identities = {row.identity for row in rows}
        todo = {key for key in identities if key not in self.contacts}
        if self.nameless:
            todo.update(key for key in identities if self.contacts.get(key) in self.nameless)
        names: dict[Identity, str] = {}
        named_at: dict[Identity, dt.datetime] = {}
        usernames: dict[str, str] = {}
        links: dict[str, str] = {}  # provider user id → E.164 it was seen with
        chat_kinds: dict[Identity, ChatKind] = {}  # contacts that are group/channel chats
        for message, row in zip(messages, rows, strict=True):
            sender, key = message.party, row.identity
            kind, value = key
            user_id = sender.provider_user_id
            if kind == "phone" and user_id and user_id not in self.linked:
                links[user_id] = value
            if key not in todo:
                continue
            if message.chat_kind is not ChatKind.DIRECT:
                chat_kinds[key] = message.chat_kind
            if sender.name and (key not in named_at or row.created_at >= named_at[key]):
                names[key], named_at[key] = sender.name, row.created_at
            elif key not in names:
                names[key] = ""
            if kind == "user" and sender.username:
                usernames[value] = sender.username
        new = [key for key in names if key not in self.contacts]
        # sorted: concurrent writers lock the same contacts in the same order (no deadlock)
        phones = sorted(value for kind, value in new if kind == "phone")
        if phones:
            await self._resolve_phones(conn, phones, names)
        users = sorted(value for kind, value in new if kind == "user")
        if users:
            await self._resolve_users(conn, users, names, usernames)
        named = sorted(
            (self.contacts[key], name)
            for key, name in names.items()
            if name and self.contacts[key] in self.nameless
        )
        if named:
            await conn.execute(
                _NAME_IF_EMPTY,
                self.channel.tenant_id,
                [contact for contact, _ in named],
                [name for _, name in named],
            )
            self.nameless.difference_update(contact for contact, _ in named)
        if links:
            await conn.execute(
                _LINK_IDENTITIES,
                self.channel.tenant_id,
                self.channel.type,
                [self.contacts[("phone", phone)] for phone in links.values()],
                list(links),
            )
            self.linked.update(links)
        if chat_kinds:
            await mark_chat_kinds(conn, {self.contacts[k]: v for k, v in chat_kinds.items()})

    def _remember(self, key: Identity, contact_id: uuid.UUID, name: str) -> None:
        self.contacts[key] = contact_id
        if not name:
            self.nameless.add(contact_id)

    async def _resolve_phones(
        self, conn: Any, phones: list[str], names: dict[Identity, str]
    ) -> None:
        tenant_id = self.channel.tenant_id
        for record in await conn.fetch(_FIND_PHONES, tenant_id, phones):
            self._remember(("phone", record["phone"]), record["id"], record["name"])
        missing = [phone for phone in phones if ("phone", phone) not in self.contacts]
        if not missing:
            return
        inserted = await conn.fetch(
            _INSERT_PHONES, tenant_id, missing, [names[("phone", phone)] for phone in missing]
        )
        for record in inserted:
            self._remember(("phone", record["phone"]), record["id"], record["name"])
        raced = [phone for phone in missing if ("phone", phone) not in self.contacts]
        if raced:  # a concurrent webhook created them first
            for record in await conn.fetch(_FIND_PHONES, tenant_id, raced):
                self._remember(("phone", record["phone"]), record["id"], record["name"])

    async def _resolve_users(
        self,
        conn: Any,
        users: list[str],
        names: dict[Identity, str],
        usernames: dict[str, str],
    ) -> None:
        """Senders known only by a provider user id: link new contacts race-safely (a
        concurrent webhook may link the same id first; then its contact wins, ours goes)."""
        tenant_id, channel_type = self.channel.tenant_id, self.channel.type

        async def find(wanted: list[str]) -> None:
            for record in await conn.fetch(_FIND_IDENTITIES, tenant_id, channel_type, wanted):
                self._remember(
                    ("user", record["provider_user_id"]), record["contact"], record["name"]
                )

        await find(users)
        missing = [user for user in users if ("user", user) not in self.contacts]
        if not missing:
            return
        created = {user: uuid.uuid4() for user in missing}
        await conn.execute(
            _INSERT_CONTACTS,
            tenant_id,
            list(created.values()),
            [names[("user", user)] for user in missing],
            [
                orjson.dumps({"username": usernames[u]} if u in usernames else {}).decode()
                for u in missing
            ],
        )
        linked = await conn.fetch(
            _LINK_IDENTITIES, tenant_id, channel_type, list(created.values()), missing
        )
        for record in linked:
            user = record["provider_user_id"]
            self._remember(("user", user), created[user], names[("user", user)])
        lost = [user for user in missing if ("user", user) not in self.contacts]
        if lost:
            await conn.execute(
                "DELETE FROM contacts WHERE tenant = $1 AND id = ANY($2::uuid[])",
                tenant_id,
                [created[user] for user in lost],
            )
            await find(lost)

    # --- conversations ----------------------------------------------------------------

    async def _resolve_conversations(
        self, conn: Any, rows: list[_Row]
    ) -> dict[Identity, tuple[uuid.UUID, uuid.UUID]]:
        """Each sender's (contact, conversation): see the module docstring. Only senders
        new to this import cost anything; they are grouped by identity first."""
        unknown = {row.identity for row in rows if row.identity not in self.targets}
        if not unknown:
            return self.targets
        spans: dict[Identity, list[Any]] = {}  # identity → [first at, last at]
        for row in rows:
            if row.identity not in unknown:
                continue
            at, span = row.created_at, spans.get(row.identity)
            if span is None:
                spans[row.identity] = [at, at]
            elif at < span[0]:
                span[0] = at
            elif at > span[1]:
                span[1] = at
        per_contact: dict[uuid.UUID, list[Any]] = {}  # two identities may share a contact
        for identity, (first, last) in spans.items():
            span = per_contact.setdefault(self.contacts[identity], [first, last])
            span[0], span[1] = min(span[0], first), max(span[1], last)
        missing = [contact for contact in per_contact if contact not in self.conversations]
        if missing:
            channel = self.channel
            found = await conn.fetch(_LATEST_CONVERSATIONS, channel.tenant_id, channel.id, missing)
            self.conversations.update({record["contact"]: record["id"] for record in found})
            new = {c: uuid.uuid4() for c in missing if c not in self.conversations}
            if new:
                await conn.execute(
                    _INSERT_CLOSED_CONVERSATIONS,
                    channel.tenant_id,
                    channel.id,
                    channel.default_department,
                    list(new.values()),
                    list(new),
                    [per_contact[contact][0] for contact in new],
                    [per_contact[contact][1] for contact in new],
                )
                self.conversations.update(new)
                self.created.update(new.values())
                self.attempt_created.extend(new.values())
                self.result.conversations_created += len(new)
        for identity in spans:
            contact = self.contacts[identity]
            self.targets[identity] = (contact, self.conversations[contact])
        return self.targets

    def _owe_touches(
        self, rows: list[_Row], targets: dict[Identity, tuple[uuid.UUID, uuid.UUID]]
    ) -> None:
        """Remember how far the written messages move their conversations' times."""
        spans: dict[Identity, list[Any]] = {}  # identity → [first at, last at, last inbound]
        for row in rows:
            at, span = row.created_at, spans.get(row.identity)
            if span is None:
                spans[row.identity] = [at, at, at if row.inbound else None]
                continue
            if at < span[0]:
                span[0] = at
            if at > span[1]:
                span[1] = at
            if row.inbound and (span[2] is None or at > span[2]):
                span[2] = at
        for identity, (first, last, last_in) in spans.items():
            conversation = targets[identity][1]
            touch = self.touches.get(conversation)
            if touch is None:
                self.touches[conversation] = [first, last, last_in]
                continue
            touch[0], touch[1] = min(touch[0], first), max(touch[1], last)
            if last_in is not None and (touch[2] is None or last_in > touch[2]):
                touch[2] = last_in

    async def flush_touches(self) -> None:
        """Move the conversations' times to cover what was written (last-message times
        only forward), in one statement."""
        if not self.touches:
            return
        touches, self.touches = self.touches, {}
        ids = sorted(touches)  # a stable lock order against concurrent writers

        async def attempt() -> None:
            async with self.services.db.transaction() as transaction:
                await transaction.connection.execute(
                    _TOUCH_CONVERSATIONS,
                    self.channel.tenant_id,
                    ids,
                    [touches[i][0] for i in ids],
                    [touches[i][1] for i in ids],
                    [touches[i][2] for i in ids],
                    [i in self.created for i in ids],
                )

        await retrying(attempt, what="history import conversation times")

    async def _reply_targets(self, conn: Any, rows: list[_Row]) -> dict[str, uuid.UUID]:
        """Provider id → stored message id for the replies' targets (this batch's included:
        their keys were claimed above)."""
        wanted = list({row.reply_to for row in rows if row.reply_to})
        if not wanted:
            return {}
        found = await conn.fetch(_REPLY_TARGETS, self.channel.id, wanted)
        return {record["provider_message_id"]: record["message_id"] for record in found}


async def _announce(services: Services, channel: ChannelRow, result: BulkResult) -> None:
    """One company-wide event for the whole import instead of one per message."""
    event = PendingEvent(
        tenant_id=channel.tenant_id,
        type=HISTORY_IMPORTED,
        data={
            "channel_id": channel.id,
            "inserted": result.inserted,
            "duplicates": result.duplicates,
            "conversations_created": result.conversations_created,
        },
    )

    async def attempt() -> list[Any]:
        async with services.db.transaction() as transaction:
            return await record_events(transaction.connection, [event])

    await services.bus.publish(await retrying(attempt, what="history import event"))
