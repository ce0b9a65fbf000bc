"""Evolution's error bodies, read defensively (its `response.message` is a string, a list
of strings, a list of objects or a nested list). The Baileys value readers Evolution's
payloads need (`as_int`, `as_bytes`, JIDs, ...) are `guiche.plugin.whatsapp_web`.
"""

from __future__ import annotations

from typing import Any

from guiche.plugin import whatsapp_web as wa_json

# --- error messages --------------------------------------------------------------------


def flatten_message(value: Any) -> str:
    """Evolution's `response.message` (a string, a list of strings, a list of objects or
    a nested list) as one readable line."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        parts = [flatten_message(item) for item in value]
        return "; ".join(part for part in parts if part)
    if isinstance(value, dict):
        if value.get("exists") is False:
            jid = str(value.get("jid") or "")
            who = value.get("number") or wa_json.jid_user(jid) or "the number"
            return f"{who} is not on WhatsApp"
        if "message" in value:
            return flatten_message(value["message"])
        return ", ".join(f"{key}: {flatten_message(item)}" for key, item in value.items())
    return str(value)


def error_reason(body: Any) -> str:
    """The human reason in an Evolution error body (`{status, error, response: {message}}`)."""
    if isinstance(body, dict):
        response = body.get("response")
        if isinstance(response, dict) and "message" in response:
            reason = flatten_message(response["message"])
            if reason:
                return reason
        for key in ("message", "error"):
            reason = flatten_message(body.get(key))
            if reason:
                return reason
        return ""
    return flatten_message(body)


def not_on_whatsapp(body: Any) -> bool:
    """True when a 400 says the number has no WhatsApp account."""
    if not isinstance(body, dict):
        return False
    response = body.get("response")
    messages = response.get("message") if isinstance(response, dict) else None
    stack = [messages]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict) and item.get("exists") is False:
            return True
    return False
