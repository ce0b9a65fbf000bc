"""What a campaign sends, and filling it in per recipient (`{{name}}`, CSV columns)."""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Content(BaseModel):
    """Core's send shapes: free `text`, uploaded `media` (by id) with a caption, or a
    provider `template` (inline `{name, language, components}` or a stored `template_id`
    with `components`). `{{variable}}` anywhere in a string is replaced per recipient."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "media", "template"]
    text: str | None = Field(None, min_length=1, max_length=4096)
    media_id: uuid.UUID | None = None
    caption: str | None = Field(None, max_length=1024)
    template: dict[str, Any] | None = None
    template_id: uuid.UUID | None = None
    components: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Content:
        if self.type == "text" and not self.text:
            raise ValueError("a text campaign needs text")
        if self.type == "media" and self.media_id is None:
            raise ValueError("a media campaign needs media_id (upload it first)")
        if self.type == "template" and (self.template is None) == (self.template_id is None):
            raise ValueError("a template campaign needs exactly one of template or template_id")
        return self

    def message(self) -> dict[str, Any]:
        """The core send request (`guiche.plugin.send_message`'s `message`)."""
        if self.type == "text":
            return {"type": "text", "text": self.text}
        if self.type == "media":
            out: dict[str, Any] = {"type": "media", "media_id": str(self.media_id)}
            if self.caption:
                out["caption"] = self.caption
            return out
        if self.template is not None:
            return {"type": "template", "template": self.template}
        out = {"type": "template", "template_id": str(self.template_id)}
        if self.components is not None:
            out["components"] = self.components
        return out


def variables_for(name: str, phone: str, extra: dict[str, Any]) -> dict[str, str]:
    """A recipient's variables: `name`, `first_name`, `phone` and its CSV columns."""
    values = {key: str(value) for key, value in extra.items()}
    values.setdefault("name", name)
    values.setdefault("first_name", name.split()[0] if name.strip() else "")
    values.setdefault("phone", phone)
    return values


def render(value: Any, variables: dict[str, str]) -> Any:
    """`value` with every `{{var}}` in its strings replaced (unknown variables: empty)."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: variables.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [render(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: render(item, variables) for key, item in value.items()}
    return value
