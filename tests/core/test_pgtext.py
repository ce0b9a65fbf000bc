"""The boundary cleaner keeps every string storable by Postgres."""

from guiche.foundation.pgtext import clean_json, clean_text, has_unstorable, json_has_unstorable


def test_clean_text_drops_nul_and_replaces_lone_surrogates() -> None:
    assert clean_text("a\x00b") == "ab"
    assert clean_text("x\ud800y") == "x\ufffdy"
    assert clean_text("olá 👋") == "olá 👋"
    assert has_unstorable("a\x00") and not has_unstorable("ok")


def test_clean_json_cleans_keys_and_nested_values() -> None:
    raw = {"a\x00": ["x\x00", {"b": "\udc00"}], "n": 1, "t": True, "z": None}
    assert clean_json(raw) == {"a": ["x", {"b": "\ufffd"}], "n": 1, "t": True, "z": None}


def test_json_has_unstorable_looks_at_every_string_and_key() -> None:
    assert not json_has_unstorable({"a": ["x", {"b": "c"}], "n": 1, "z": None})
    assert json_has_unstorable({"a": ["x", {"b": "c\x00"}]})
    assert json_has_unstorable({"a\x00": 1})
    assert json_has_unstorable(("ok", "\ud800"))


def test_plugins_clean_their_own_tables_text_with_the_same_cleaner() -> None:
    from guiche import plugin

    assert plugin.clean_text("nota\x00 \ud800") == "nota \ufffd"
    clean = "já limpo"
    assert plugin.clean_text(clean) is clean  # no copy of clean text
