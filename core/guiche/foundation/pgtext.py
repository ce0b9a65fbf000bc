"""Text that PostgreSQL can store: the one place that cleans strings at the boundary.

Postgres refuses U+0000 in `text` and in `jsonb` (even escaped as ``\\u0000``), and a
lone UTF-16 surrogate (which JSON allows as ``\\ud800``) cannot be encoded as UTF-8
at all. Either one in a webhook or a request would fail the whole statement, so
every string that crosses the boundary goes through `clean_text` / `clean_json`
first: NUL is dropped and lone surrogates become U+FFFD.
"""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _replace(match: re.Match[str]) -> str:
    return "" if match.group() == "\x00" else "\ufffd"


def clean_text(value: str) -> str:
    """`value` without NUL and with lone surrogates replaced (the same object when clean)."""
    if _UNSTORABLE.search(value) is None:
        return value
    return _UNSTORABLE.sub(_replace, value)


def has_unstorable(value: str) -> bool:
    """Whether `value` holds a character Postgres would refuse."""
    return _UNSTORABLE.search(value) is not None


def json_has_unstorable(value: Any) -> bool:
    """Whether any string of a JSON-shaped value (keys included) holds such a character:
    the cheap check before paying for a cleaned copy."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(
            (isinstance(k, str) and _UNSTORABLE.search(k) is not None) or json_has_unstorable(v)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return any(json_has_unstorable(item) for item in value)
    return False


def clean_json(value: Any) -> Any:
    """A copy of a JSON-shaped value (dicts, lists, strings, scalars) with every string
    cleaned, keys included."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    return value
