"""Cloud Function entry point: parse the request, run the pipeline, answer JSON.

Deployed with `cloud_functions/` as the source root; functions-framework puts this folder on
sys.path, so the `avatar` package imports the same way locally and in the cloud.
"""

from __future__ import annotations

import functions_framework
from flask import Request, Response, jsonify

from avatar.backends import build_backends
from avatar.config import get_settings
from avatar.errors import AvatarError
from avatar.inputs import parse_request
from avatar.pipeline import generate_avatar


@functions_framework.http
def generate_animal_avatar(request: Request) -> Response:
    """POST an image (multipart, raw, or JSON) and an animal; get the stored avatar's URL."""
    try:
        settings = get_settings()
        job = parse_request(request, settings)
        return jsonify(generate_avatar(job, build_backends(settings), settings))
    except AvatarError as exc:
        return error_response(exc)


def error_response(error: AvatarError) -> Response:
    """`{"error": code, "detail": ...}` with the error's status (and Retry-After when set)."""
    response = jsonify({"error": error.code, "detail": error.detail})
    response.status_code = error.status
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 405:
        response.headers["Allow"] = "POST"
    return response
