"""Panel JSON → records, from the fixtures and odd variants (pure functions)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from guiche_chatguru.parse import Note, Odd, parse_chat, parse_date, parse_item

from guiche.channels import ChatKind, InboundMessage, MessageType

from .fake_chatguru import load

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")


def chats():
    return [parse_chat(item, SP) for item in load("chatlist_page1.json")["chats"]]


def test_chats_from_the_fixture() -> None:
    ana, carlos, mariana = chats()
    assert ana.id == "b7437d92e881a1814149a47e" and ana.number == "5511987654321"
    assert ana.kind is ChatKind.DIRECT and ana.tags == ("cliente-vip",)
    assert ana.agents == ("U54e92470973b6399e956886e",)
    assert ana.last_message_at == dt.datetime(2025, 3, 14, 14, 15, tzinfo=dt.UTC)
    assert mariana.archived and mariana.tags == ("bh", "reclamação")
    assert carlos.funnel_steps == ()


def test_odd_chats_are_none() -> None:
    for item in (
        None,
        [],
        {},
        {"id": "x"},
        {"wa_chat_id": "55@c.us"},
        {"id": "x", "wa_chat_id": 5},
    ):
        assert parse_chat(item) is None
    group = parse_chat({"id": "g1", "wa_chat_id": "120363@g.us", "name": "Equipe"})
    assert group is not None and group.kind is ChatKind.GROUP
    steps = parse_chat({"id": "c", "wa_chat_id": "1@c.us", "funnel_step": {"name": "Lead"}})
    assert steps is not None and steps.funnel_steps == ("Lead",)


def test_messages_and_notes_of_the_fixture_pages() -> None:
    ana = chats()[0]
    odd = Odd()
    parsed = [
        parse_item(i, ana, SP, odd) for i in load("messages_page1.json")["messages_and_notes"]
    ]
    first, note, out, audio = parsed
    assert (
        isinstance(first, InboundMessage)
        and first.provider_message_id == "3c0bc406c949fe426c395555"
    )
    assert first.sender.phone == "5511987654321" and not first.from_me
    assert first.timestamp == dt.datetime.fromtimestamp(1741951200, dt.UTC)
    assert isinstance(note, Note) and note.author == "Camila (SAC)"
    assert isinstance(out, InboundMessage) and out.from_me and out.type is MessageType.TEXT
    assert isinstance(audio, InboundMessage) and audio.type is MessageType.AUDIO
    assert audio.media is not None and audio.media.voice and audio.media.mime_type == "audio/ogg"
    assert audio.media.url.endswith("/audio-ana.ogg") and audio.raw["m"]["type"] == "ptt"
    assert odd.total == 0


def test_odd_items_are_counted_not_raised() -> None:
    ana = chats()[0]
    odd = Odd()
    items = [
        "text",
        {"type": "message"},
        {"type": "message", "m": {"text": "no id"}},
        {"type": "message", "m": {"_id": {"$oid": "a1"}, "timestamp": "yesterday"}},
        {"type": "note", "n": {"text": "no id"}},
        {"type": "message", "m": {"_id": {"$oid": "a2"}, "type": "image", "timestamp": 1741951200}},
    ]
    parsed = [parse_item(item, ana, SP, odd) for item in items]
    assert parsed[:5] == [None] * 5
    assert odd.total == 5
    image_without_file = parsed[5]
    assert isinstance(image_without_file, InboundMessage)
    assert image_without_file.type is MessageType.UNSUPPORTED  # kept, with its raw item


def test_dates() -> None:
    at = dt.datetime(2025, 3, 14, 13, 15, tzinfo=dt.UTC)
    ms = int(at.timestamp() * 1000)
    assert parse_date({"$date": ms}) == at
    assert parse_date({"$date": {"$numberLong": str(ms)}}) == at
    assert parse_date(int(at.timestamp())) == at
    assert parse_date("2025-03-14T13:15:00Z") == at
    # a date without an offset is the panel's local time
    assert parse_date("2025-03-14T10:15:00", SP) == at
    assert parse_date("soon") is None and parse_date(True) is None and parse_date(None) is None
