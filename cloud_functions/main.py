"""Cloud Function entry point: parse the request, run the pipeline, answer JSON.

Deployed with `cloud_functions/` as the source root; functions-framework puts this folder on
sys.path, so the `avatar` package imports the same way locally and in the cloud.

Logging is configured when this module is imported (functions-framework imports it once per
process, after its own logging setup, which avatar.logs replaces): LOG_FORMAT=json (the default)
or text. Each request runs in the trace of its `traceparent` (the API's) or
`X-Cloud-Trace-Context` header, so every line it logs carries the caller's trace id. No line
carries the request's body, image, signed URLs or keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import functions_framework
from flask import Request, Response, jsonify
from pydantic import ValidationError

from avatar import logs
from avatar.backends import build_backends
from avatar.config import LogSettings, get_settings
from avatar.errors import AvatarError, DeadlinePassed
from avatar.inputs import parse_request
from avatar.pipeline import generate_avatar

logger = logging.getLogger(__name__)
T = TypeVar("T")


@functions_framework.http
def generate_animal_avatar(request: Request) -> Response:
    """POST an image (multipart, raw, or JSON) and an animal, or several; get the stored URLs."""
    with logs.bound(logs.from_headers(request.headers)):
        return answer(request)


def answer(request: Request) -> Response:
    """The request's answer: its results, or its error as JSON."""
    try:
        settings = configured(get_settings)
        job = parse_request(request, settings)
        backends = configured(lambda: build_backends(settings))
        result = generate_avatar(job, backends, settings)
        # One line per request, under the caller's trace: what was made, and how long it took.
        logger.info(
            "made %d animal(s) of %d face(s) in %.1f ms",
            len(result.get("results", [result])),
            len(result.get("faces", [])),
            result.get("timings_ms", {}).get("total", 0.0),
        )
        return jsonify(result)
    except AvatarError as exc:
        if isinstance(exc, DeadlinePassed):  # the API gave up on it: worth an operator's look
            logger.warning("a request outlived its caller's deadline: %s", exc.detail)
        else:
            logger.info("answered %d %s", exc.status, exc.code)
        return error_response(exc)
    except Exception:  # anything else is our bug: still JSON, never Flask's HTML page
        # The traceback names the failing code; the request (and its image) is not logged.
        logger.exception("generate_animal_avatar failed unexpectedly")
        return error_response(AvatarError("internal error; the function's log has the cause"))


def configured(build: Callable[[], T]) -> T:
    """Run a configuration step; a bad setting is logged as such and answered as a 500."""
    try:
        return build()
    except ValueError as exc:  # pydantic's ValidationError and the backends' checks
        logger.error("the function is misconfigured: %s", describe(exc))
        raise AvatarError("the function is misconfigured; its log says how") from exc


def describe(error: ValueError) -> str:
    """The error's message; for settings, each field and its problem without the values read."""
    if isinstance(error, ValidationError):  # its str() shows the input, secrets included
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
    return str(error)


def configure_logging() -> None:
    """Logging as LOG_FORMAT says; JSON, with the problem logged, when the setting is invalid.

    Only the logging settings are read: a bad setting elsewhere is the requests' to report.
    """
    try:
        settings = LogSettings()
    except ValidationError as exc:
        logs.configure_logging()
        logger.error("the logging settings are invalid: %s", describe(exc))
        return
    logs.configure_logging(settings.log_format, settings.gcp_project)


def error_response(error: AvatarError) -> Response:
    """`{"error": code, "detail": ...}` with the error's status (and Retry-After when set)."""
    response = jsonify({"error": error.code, "detail": error.detail})
    response.status_code = error.status
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 405:
        response.headers["Allow"] = "POST"
    return response


configure_logging()  # once per import: functions-framework imports this module at start
