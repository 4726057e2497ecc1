"""What the webhook endpoints accept and return."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from api.webhooks.guard import MAX_URL_LENGTH


class WebhookUpdate(BaseModel):
    """Set the URL (creating the webhook if there is none), rotate its secret, or both."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        # What the validator below requires, said in the schema too: a URL, or a rotation.
        json_schema_extra={
            "anyOf": [
                {"required": ["url"], "properties": {"url": {"type": "string"}}},
                {"required": ["rotate"], "properties": {"rotate": {"const": True}}},
            ]
        },
    )

    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URL_LENGTH,
        # For clients (the scheme in any case, as URLs allow); checked by api.webhooks.guard,
        # whose message says more than a pattern's would.
        json_schema_extra={"pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://"},
        description="Where completion events are posted: https, on port 443, a public host "
        "(http and private addresses only when ENVIRONMENT=development).",
        examples=["https://example.com/hooks/avatars"],
    )
    rotate: StrictBool = Field(  # `0` or "yes" is a mistake, not false or true
        default=False,
        description="A new secret; the previous one keeps signing too, for 24 h.",
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> Self:
        if self.url is None and not self.rotate:
            raise ValueError('give a "url", or "rotate": true')
        return self


class WebhookView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    url: str
    secret: str | None = Field(
        default=None,
        description="`whsec_...`: shown only when the webhook is created or its secret "
        "rotated. Verify each request's `webhook-signature` with it (Standard Webhooks).",
    )
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="Until then, requests are signed by the previous secret too."
    )
    created_at: datetime
    updated_at: datetime


class AttemptView(BaseModel):
    """One attempt: the receiver's status code, or what went wrong."""

    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None


class DeliveryView(BaseModel):
    """One event sent (or being sent) to the webhook; `id` is its `webhook-id` header."""

    id: uuid.UUID
    event: str = Field(examples=["generation.succeeded", "generation.failed", "pack.completed"])
    generation_id: uuid.UUID | None
    pack_id: uuid.UUID | None
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(
        description="Pending: when the next attempt is due; during an attempt, when it would "
        "be taken up again were it lost."
    )
    created_at: datetime
    completed_at: datetime | None
    attempt_log: list[AttemptView] = Field(description="Every attempt, first to last.")
