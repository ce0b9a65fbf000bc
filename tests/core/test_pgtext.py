"""The boundary cleaner keeps every string storable by Postgres."""

from guiche.pgtext import clean_json, clean_text, has_unstorable


def test_clean_text_drops_nul_and_replaces_lone_surrogates() -> None:
    assert clean_text("a\x00b") == "ab"
    assert clean_text("x\ud800y") == "x\ufffdy"
    assert clean_text("olá 👋") == "olá 👋"
    assert has_unstorable("a\x00") and not has_unstorable("ok")


def test_clean_json_cleans_keys_and_nested_values() -> None:
    raw = {"a\x00": ["x\x00", {"b": "\udc00"}], "n": 1, "t": True, "z": None}
    assert clean_json(raw) == {"a": ["x", {"b": "\ufffd"}], "n": 1, "t": True, "z": None}
