"""What the users endpoints accept and return."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Pragmatic, not RFC 5322: one @, a dotted domain, no spaces and no control characters (a NUL
# is refused by PostgreSQL's text type). Delivery is what proves an address. The characters are
# listed, not `\s`: the server's regex (Rust's, in pydantic-core) and a client's (ECMA-262, as
# JSON Schema reads the pattern) disagree on what `\s` is (U+0085, say).
_NOT_IN_EMAIL = (
    r"@ \x00-\x1f\x7f-\x9f"  # space, the C0 and C1 controls
    r"\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # the other spaces
)
EMAIL_PATTERN = rf"^[^{_NOT_IN_EMAIL}]+@[^{_NOT_IN_EMAIL}]+\.[^{_NOT_IN_EMAIL}]+$"


def _lower(value: str) -> str:
    return value.lower()


Username = Annotated[
    str, Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN), AfterValidator(_lower)
]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: Username
    email: Email


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    created_at: datetime


class UserCreated(UserPublic):
    api_key: str = Field(description="Shown once: only its hash is stored.")
