"""The problem+json body every error leaves as, for OpenAPI: one model, per-route responses.

FastAPI documents only a 422 with its own HTTPValidationError schema; the API answers every
error as RFC 9457 problem+json, so each route names the statuses it can answer with instead.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.errors import ApiError, NotFound

PROBLEM_JSON = "application/problem+json"
# A problem's `type` is a relative reference to the page below, so it resolves against whichever
# origin the API is served from.
PROBLEM_TYPE_PREFIX = "/problems/"

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

# When each code is answered: what GET /problems/{code} explains.
DESCRIPTIONS: dict[str, str] = {
    "invalid_request": "The body or a field is malformed or missing (400/422). Fix the request.",
    "unauthorized": "The Authorization: Bearer key is missing or unknown (401).",
    "forbidden": "The route is for the admin key only (403).",
    "not_found": "No such route or id, or the record belongs to another user (404).",
    "method_not_allowed": "The route exists but not with this method; see Allow (405).",
    "conflict": "The username or email is taken, or an Idempotency-Key was reused with a "
    "different body (409).",
    "image_too_large": "The upload's bytes or its pixel count are over the limit (413).",
    "unsupported_image": "The file is not JPEG, PNG, WebP or HEIC by its magic bytes (415).",
    "invalid_image": "The image is truncated or cannot be decoded (422).",
    "no_face_detected": "No face was found in the photo (422). Try a clearer, front-facing photo.",
    "content_blocked": "Moderation or the model's safety filter refused the photo (422).",
    "rate_limited": "The per-user limit on generations is reached (429); wait Retry-After seconds.",
    "upstream_unavailable": "The avatar function or the database is unavailable, overloaded or "
    "out of quota (503); retry after Retry-After seconds (with the same Idempotency-Key).",
    "upstream_timeout": "The avatar function took too long (504); retry with the same "
    "Idempotency-Key.",
    "internal_error": "An unexpected error on our side (500).",
}


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


class ProblemType(BaseModel):
    """What a problem `code` means: the page a problem's `type` points at."""

    code: ProblemCode
    status: int
    title: str
    description: str


router = APIRouter(tags=["problems"])


@router.get("/problems/{code}", response_model=ProblemType, responses=problem_responses(404, 422))
async def describe_problem(code: str) -> ProblemType:
    """What a problem code means and what a client should do about it."""
    error_cls = ApiError if code == ApiError.code else ApiError.registry.get(code)
    if error_cls is None or code not in DESCRIPTIONS:
        raise NotFound(f"no problem type {code!r}")
    return ProblemType(
        code=error_cls.code,
        status=error_cls.status,
        title=error_cls.title,
        description=DESCRIPTIONS[code],
    )


class Problem(BaseModel):
    """An RFC 9457 problem: every error the API answers with."""

    type: str = Field(examples=["/problems/not_found"])
    title: str
    status: int
    detail: str
    code: ProblemCode
