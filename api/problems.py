"""The problem+json body every error leaves as, for OpenAPI: one model, per-route responses.

FastAPI documents only a 422 with its own HTTPValidationError schema; the API answers every
error as RFC 9457 problem+json, so each route names the statuses it can answer with instead.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, WithJsonSchema

from api.errors import PROBLEM_CODES, ApiError, NotFound, error_class

PROBLEM_JSON = "application/problem+json"
# A problem's `type` is a relative reference to the page below, so it resolves against whichever
# origin the API is served from.
PROBLEM_TYPE_PREFIX = "/problems/"

# The `code` of a problem: a string from the error family's closed set (an enum in OpenAPI).
ProblemCode = Annotated[str, WithJsonSchema({"type": "string", "enum": list(PROBLEM_CODES)})]
RETRY_AFTER_STATUSES = frozenset({429, 503})


def _error_classes() -> list[type[ApiError]]:
    """Every class of the family (subclasses like BadRequest included), base first."""
    found, pending = [ApiError], [ApiError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


def _meanings() -> dict[int, str]:
    """What each status means on this API: the titles and codes answered with it."""
    by_status: dict[int, list[str]] = {}
    for cls in _error_classes():
        entry = f"{cls.title} ({cls.code})"
        if entry not in by_status.setdefault(cls.status, []):
            by_status[cls.status].append(entry)
    return {status: "; ".join(entries) + "." for status, entries in by_status.items()}


MEANINGS = _meanings()


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can answer with, as problem+json."""
    return {status: _problem_response(status) for status in statuses}


# What a client did wrong, where the status alone does not say it.
STATUS_NOTES = {
    400: " The body is not valid JSON, or not a well-formed multipart form, or a header is "
    "malformed; `detail` says which.",
    413: " A JSON body over its small limit, or an image over the upload limit; `detail` says "
    "which limit.",
}


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": MEANINGS.get(status, HTTPStatus(status).phrase)
        + STATUS_NOTES.get(status, ""),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in RETRY_AFTER_STATUSES:
        response["description"] += " Retry after Retry-After seconds."
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
    error_cls = error_class(code)
    if error_cls is None:
        raise NotFound(f"no problem type {code!r}")
    return ProblemType(
        code=error_cls.code,
        status=error_cls.status,
        title=error_cls.title,
        description=error_cls.description,
    )


class Problem(BaseModel):
    """An RFC 9457 problem: every error the API answers with."""

    type: str = Field(examples=["/problems/not_found"])
    title: str
    status: int
    detail: str
    code: ProblemCode
