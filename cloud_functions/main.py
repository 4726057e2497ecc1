"""Cloud Function entry point: parse the request, run the pipeline, answer JSON.

Deployed with `cloud_functions/` as the source root; functions-framework puts this folder on
sys.path, so the `avatar` package imports the same way locally and in the cloud.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import functions_framework
from flask import Request, Response, jsonify
from pydantic import ValidationError

from avatar.backends import build_backends
from avatar.config import get_settings
from avatar.errors import AvatarError, DeadlinePassed
from avatar.inputs import parse_request
from avatar.pipeline import generate_avatar

logger = logging.getLogger(__name__)
T = TypeVar("T")


@functions_framework.http
def generate_animal_avatar(request: Request) -> Response:
    """POST an image (multipart, raw, or JSON) and an animal, or several; get the stored URLs."""
    try:
        settings = configured(get_settings)
        job = parse_request(request, settings)
        backends = configured(lambda: build_backends(settings))
        return jsonify(generate_avatar(job, backends, settings))
    except AvatarError as exc:
        if isinstance(exc, DeadlinePassed):  # the API gave up on it: worth an operator's look
            logger.warning("a request outlived its caller's deadline: %s", exc.detail)
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


def error_response(error: AvatarError) -> Response:
    """`{"error": code, "detail": ...}` with the error's status (and Retry-After when set)."""
    response = jsonify({"error": error.code, "detail": error.detail})
    response.status_code = error.status
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 405:
        response.headers["Allow"] = "POST"
    return response
