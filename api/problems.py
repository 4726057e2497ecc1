"""The problem+json body every error leaves as, for OpenAPI: one model, per-route responses.

FastAPI documents only a 422 with its own HTTPValidationError schema; the API answers every
error as RFC 9457 problem+json, so each route names the statuses it can answer with instead.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, Field

PROBLEM_JSON = "application/problem+json"

ProblemCode = Literal[
    "invalid_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "image_too_large",
    "unsupported_image",
    "invalid_image",
    "no_face_detected",
    "content_blocked",
    "rate_limited",
    "upstream_unavailable",
    "upstream_timeout",
    "internal_error",
]

# What each status means on this API (the codes a client can switch on are in `code`).
MEANINGS = {
    400: "Malformed request (invalid_request).",
    401: "Missing or bad API key (unauthorized).",
    403: "Admin only (forbidden).",
    404: "Unknown id, or another user's (not_found).",
    409: "Taken username/email, or an Idempotency-Key reused with another body (conflict).",
    413: "Bytes or pixels over the limit (image_too_large).",
    415: "Not JPEG, PNG, WebP or HEIC by its magic bytes (unsupported_image).",
    422: "Invalid fields (invalid_request), or the image: invalid_image, no_face_detected, "
    "content_blocked.",
    429: "Per-user limit reached (rate_limited); wait Retry-After seconds.",
    503: "The function or the database is unavailable (upstream_unavailable); retry after "
    "Retry-After seconds.",
    504: "The function was too slow (upstream_timeout).",
}
RETRY_AFTER_STATUSES = frozenset({429, 503})


class Problem(BaseModel):
    """An RFC 9457 problem: every error the API answers with."""

    type: str = Field(examples=["https://animal-avatar.dev/problems/not_found"])
    title: str
    status: int
    detail: str
    code: ProblemCode


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can answer with, as problem+json."""
    return {status: _problem_response(status) for status in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": MEANINGS.get(status, HTTPStatus(status).phrase),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in RETRY_AFTER_STATUSES:
        retry_after = {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
        response["headers"] = {"Retry-After": retry_after}
    return response


def add_problem_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the Problem schema the routes' responses refer to."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return openapi
