"""What a caller sends to post a message, and how a stored message is shown.

Shared by the REST route and the WebSocket `message.send` command, so both accept the
same three shapes (text, media, template) and answer with the same message JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, model_validator

from guiche.channels import TemplateComponent, TemplateRef

Text = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Caption = Annotated[str, StringConstraints(max_length=1024)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextSend(_Request):
    type: Literal["text"]
    text: Text
    preview_url: bool = False
    reply_to_message_id: uuid.UUID | None = None


class MediaSend(_Request):
    """A file uploaded first with `POST /api/v1/media`, sent by its id."""

    type: Literal["media"]
    media_id: uuid.UUID
    caption: Caption | None = None
    reply_to_message_id: uuid.UUID | None = None


class TemplateSend(_Request):
    """A provider-approved template: given inline, or a stored template by id.

    With `template_id` the stored row gives the name and language (and must be APPROVED
    and usable on the conversation's channel); `components` carry this send's parameters.
    """

    type: Literal["template"]
    template: TemplateRef | None = None
    template_id: uuid.UUID | None = None
    components: list[TemplateComponent] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _one_source(self) -> TemplateSend:
        if (self.template is None) == (self.template_id is None):
            raise ValueError("give exactly one of template or template_id")
        if self.template is not None and self.components is not None:
            raise ValueError("components go inside template; top-level only with template_id")
        return self


SendRequest = Annotated[TextSend | MediaSend | TemplateSend, Field(discriminator="type")]


class SendMessageRequest(RootModel[SendRequest]):
    """`{type: "text"|"media"|"template", ...}`."""


def request_of(request: SendMessageRequest | SendRequest) -> TextSend | MediaSend | TemplateSend:
    """Accept the wrapper (REST body) or the bare variant (WebSocket command)."""
    return request.root if isinstance(request, SendMessageRequest) else request


def request_hash(conversation_id: uuid.UUID, request: TextSend | MediaSend | TemplateSend) -> str:
    """sha256 of the normalised request: a retry must send the same thing to the same place."""
    canonical = orjson.dumps(
        {"conversation_id": str(conversation_id), "request": request.model_dump(mode="json")},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


class MessageOut(BaseModel):
    """A stored message, either direction. `content` is the normalised message."""

    id: uuid.UUID
    conversation_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    channel_id: uuid.UUID | None
    direction: Literal["in", "out"]
    type: str
    body: str
    status: str
    error: dict[str, Any] | None = None
    provider_message_id: str | None = None
    sender_id: uuid.UUID | None = None
    reply_to_id: uuid.UUID | None = None
    media_id: uuid.UUID | None = None
    content: dict[str, Any] = Field(default_factory=dict)
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MessageOut:
        payload = _json(row.get("payload")) or {}
        return cls(
            **_columns(row),
            error=_json(row.get("error")),
            media_id=payload.get("media_id"),
            content=payload.get("normalised") or {},
        )

    @classmethod
    def from_history_row(cls, row: dict[str, Any]) -> MessageOut:
        """A row of `guiche.conversations.history.message_page` (content and media id
        already picked out of the payload). Built without validation: the row is our own
        table's, typed by its columns, and a history page builds hundreds of these."""
        return cls.model_construct(
            **_columns(row),
            error=_json(row["error"]),
            media_id=_uuid(row["media_id"]),
            content=_json(row["content"]) or {},
        )


def _columns(row: dict[str, Any]) -> dict[str, Any]:
    """The fields a message row's columns give as they are (both row shapes share them)."""
    return {
        "id": row["id"],
        "conversation_id": row["conversation"],
        "contact_id": row["contact"],
        "channel_id": row["channel"],
        "direction": row["direction"],
        "type": row["type"],
        "body": row["body"],
        "status": row["status"],
        "provider_message_id": row["provider_message_id"],
        "sender_id": row["sender"],
        "reply_to_id": row["reply_to"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _uuid(value: str | None) -> uuid.UUID | None:
    """A uuid read out of a payload as text; a malformed one is no media id."""
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value
