"""Evolution's loosely typed values: long.js numbers, byte fields, timestamps, error bodies."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from guiche_evolution.values import error_reason, flatten_message, not_on_whatsapp

from guiche.channel_host.whatsapp_web import as_bytes, as_int, as_timestamp, jid_user

from .conftest import load


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (159, 159),
        ("159", 159),
        (" 1741958815 ", 1741958815),
        (12.0, 12),
        ({"low": 159, "high": 0, "unsigned": True}, 159),
        ({"low": 1843276, "high": 0, "unsigned": True}, 1843276),
        # the reaction fixture's senderTimestampMs: a NEGATIVE low half
        ({"low": -1798141664, "high": 405, "unsigned": False}, 1741958580512),
        ({"low": -1, "high": -1, "unsigned": False}, -1),
        ({"low": -1, "high": -1, "unsigned": True}, 2**64 - 1),
        ({"low": "7", "high": "1"}, 2**32 + 7),
        (None, None),
        (True, None),
        ("abc", None),
        ({"low": 1}, None),
        ([1], None),
    ],
)
def test_as_int_reads_every_number_shape(value, expected):
    assert as_int(value) == expected


def test_as_bytes_reads_base64_and_index_keyed_objects():
    digest = hashlib.sha256(b"x").digest()
    keyed = {str(i): b for i, b in enumerate(digest)}
    shuffled = dict(reversed(list(keyed.items())))
    assert as_bytes(keyed) == digest
    assert as_bytes(shuffled) == digest
    assert as_bytes("eA==") == b"x"
    assert as_bytes({"type": "Buffer", "data": "eA=="}) == b"x"
    assert as_bytes([120]) == b"x"
    assert as_bytes("not base64!") is None
    assert as_bytes({"a": 1}) is None
    assert as_bytes(None) is None


def test_timestamps_accept_seconds_milliseconds_and_longs():
    expected = dt.datetime(2025, 3, 14, 13, 15, tzinfo=dt.UTC)
    assert as_timestamp(1741958100) == expected
    assert as_timestamp("1741958100") == expected
    assert as_timestamp(1741958100000) == expected
    assert as_timestamp({"low": 1741958100, "high": 0, "unsigned": False}) == expected
    assert as_timestamp(None) is None
    assert as_timestamp(0) is None
    assert as_timestamp("soon") is None


def test_jid_user_drops_server_and_device():
    assert jid_user("5511912345678:12@s.whatsapp.net") == "5511912345678"
    assert jid_user("187654321098765@lid") == "187654321098765"


def test_error_bodies_flatten_strings_lists_objects_and_nested_lists():
    assert error_reason(load("error_401.json")) == "Unauthorized"
    assert error_reason(load("error_404.json")) == 'The "guiche-loja-norte" instance does not exist'
    assert error_reason(load("error_400.json")) == "5511900001111 is not on WhatsApp"
    assert error_reason(load("error_400_validation.json")) == 'instance requires property "text"'
    assert not_on_whatsapp(load("error_400.json"))
    assert not not_on_whatsapp(load("error_400_validation.json"))
    assert flatten_message([["a", ["b"]], {"message": "c"}, {"k": 1}]) == "a; b; c; k: 1"
    assert error_reason({"error": "Internal Server Error"}) == "Internal Server Error"
    assert error_reason("plain text") == "plain text"
