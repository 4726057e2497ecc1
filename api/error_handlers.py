"""Every error leaves as RFC 9457 problem+json: ours (the ApiError family), the framework's
(unknown route, wrong method, invalid fields), the database's, and the unexpected."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from api.errors import (
    ApiError,
    BadRequest,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UpstreamUnavailable,
)
from api.problems import PROBLEM_JSON, PROBLEM_TYPE_PREFIX

logger = logging.getLogger(__name__)

FASTAPI_BODY_ERROR = "There was an error parsing the body"
UNREADABLE_BODY = (
    "the body could not be read: send UTF-8 encoded JSON with Content-Type: application/json"
)


def problem(status: int, code: str, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem+json response."""
    body = {
        "type": f"{PROBLEM_TYPE_PREFIX}{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def problem_response(error: ApiError) -> JSONResponse:
    """The problem+json for an error of the family, with its Retry-After / WWW-Authenticate."""
    response = problem(error.status, error.code, error.title, error.detail)
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def handle_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(exc)


async def handle_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    malformed = malformed_json_detail(exc)
    if malformed is not None:
        return problem_response(BadRequest(malformed))
    return problem_response(InvalidRequest(validation_detail(exc)))


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = http_exception_problem(exc)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        # Starlette names the methods of the first route on the path only; a path served by
        # several routes (GET and POST /v1/users) allows all of theirs.
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


async def handle_unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so the server logs the traceback once;
    # the client sees a generic problem, never the stack.
    return problem_response(ApiError("the server hit an unexpected error"))


# Connection refused or lost, too many clients, pool timeout, deadlock: worth a retry, not a 500.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


async def handle_database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable: %s", exc)
    return problem_response(UpstreamUnavailable("the database is unavailable", retry_after_s=5))


async def handle_data_error(_: Request, exc: Exception) -> JSONResponse:
    # A value the database refused (a NUL in text, out of range): the input's fault, not ours.
    # No str(exc): SQLAlchemy's message carries the statement's parameters.
    logger.warning("the database refused a value: %s", type(exc.__cause__ or exc).__name__)
    return problem_response(InvalidRequest("a field holds a value that cannot be stored"))


def install_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, leaves as problem+json."""
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    for db_unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(db_unavailable, handle_database_unavailable)
    app.add_exception_handler(sa_exc.DataError, handle_data_error)
    app.add_exception_handler(Exception, handle_unexpected)


def validation_detail(exc: RequestValidationError) -> str:
    """`field: message` for each error FastAPI found, joined."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is invalid"


def malformed_json_detail(exc: RequestValidationError) -> str | None:
    """What is wrong with a body that is not JSON at all, in words; None for field errors."""
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            reason = str(error.get("ctx", {}).get("error", "")).lower() or "it cannot be parsed"
            position = error.get("loc", ("body", None))[-1]
            where = f" at character {position}" if isinstance(position, int) else ""
            return f"the body is not valid JSON: {reason}{where}"
    return None


def allowed_methods(request: Request) -> list[str]:
    """Every method the routes on the request's path answer, sorted (405s are rare: the
    routes are walked each time)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path and route.methods and compile_path(route.path)[0].match(request.url.path):
            methods |= route.methods
    return sorted(methods)


def http_exception_problem(exc: StarletteHTTPException) -> JSONResponse:
    """A framework HTTP error (unknown route, wrong method, a body it cannot read, ...) as
    problem+json."""
    if exc.status_code == HTTPStatus.NOT_FOUND:
        return problem_response(NotFound("no such resource"))
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        return problem_response(MethodNotAllowed("method not allowed on this resource"))
    if exc.status_code == HTTPStatus.BAD_REQUEST and exc.detail == FASTAPI_BODY_ERROR:
        # FastAPI's words for a body it could not read at all (not UTF-8, say).
        return problem_response(BadRequest(UNREADABLE_BODY))
    status = HTTPStatus(exc.status_code)
    code = "invalid_request" if status < HTTPStatus.INTERNAL_SERVER_ERROR else "internal_error"
    return problem(status, code, status.phrase, str(exc.detail))
