"""One error family for the service, rendered by one handler as RFC 9457 problem+json.

Each class is the one place a SPEC code is written on the API side: its HTTP status, its title,
what GET /problems/{code} says about it, and whether the function may answer it (the function
has its own family; tests/contract checks the two agree).
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    """Base of every error the API answers with: a SPEC code, an HTTP status, a detail."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
    description: ClassVar[str] = "An unexpected error on our side (500)."
    # A code the function's JSON contract may answer with, passed on to the user as it is.
    from_function: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[ApiError]]] = {}

    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        ApiError.registry.setdefault(cls.code, cls)

    @classmethod
    def from_code(cls, code: str, detail: str, *, retry_after_s: int | None = None) -> ApiError:
        """The error for a SPEC code (as the function reports it); unknown codes become 503."""
        error_cls = cls.registry.get(code, UpstreamUnavailable)
        return error_cls(detail, retry_after_s=retry_after_s)


class InvalidRequest(ApiError):
    code = "invalid_request"
    status = 422
    title = "Invalid request"
    description = "The body or a field is malformed or missing (400/422). Fix the request."
    from_function = True


class BadRequest(InvalidRequest):
    status = 400


class Unauthorized(ApiError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"
    description = "The Authorization: Bearer key is missing or unknown (401)."


class Forbidden(ApiError):
    code = "forbidden"
    status = 403
    title = "Forbidden"
    description = "The route is for the admin key only, or a signed link is invalid (403)."


class NotFound(ApiError):
    code = "not_found"
    status = 404
    title = "Not found"
    description = "No such route or id, or the record belongs to another user (404)."


class MethodNotAllowed(ApiError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"
    description = "The route exists but not with this method; see Allow (405)."


class Conflict(ApiError):
    code = "conflict"
    status = 409
    title = "Conflict"
    description = (
        "The username or email is taken, or an Idempotency-Key was reused with a different "
        "body (409)."
    )


class ImageTooLarge(ApiError):
    code = "image_too_large"
    status = 413
    title = "Image too large"
    description = "The upload's bytes or its pixel count are over the limit (413)."
    from_function = True


class RequestTooLarge(ApiError):
    code = "request_too_large"
    status = 413
    title = "Request too large"
    description = (
        "A JSON body is over its small limit (16 kB unless configured otherwise); it was "
        "refused before it was read (413). Uploads have their own, larger limit."
    )


class UnsupportedImage(ApiError):
    code = "unsupported_image"
    status = 415
    title = "Unsupported image type"
    description = "The file is not JPEG, PNG, WebP or HEIC by its magic bytes (415)."
    from_function = True


class InvalidImage(ApiError):
    code = "invalid_image"
    status = 422
    title = "Invalid image"
    description = "The image is truncated or cannot be decoded (422)."
    from_function = True


class NoFaceDetected(ApiError):
    code = "no_face_detected"
    status = 422
    title = "No face detected"
    description = "No face was found in the photo (422). Try a clearer, front-facing photo."
    from_function = True


class ContentBlocked(ApiError):
    code = "content_blocked"
    status = 422
    title = "Content blocked"
    description = "Moderation or the model's safety filter refused the photo (422)."
    from_function = True


class RateLimited(ApiError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"
    description = "The per-user limit on generations is reached (429); wait Retry-After seconds."


class UpstreamUnavailable(ApiError):
    code = "upstream_unavailable"
    status = 503
    title = "Upstream unavailable"
    description = (
        "The avatar function, the database or the work queue is unavailable, overloaded or out "
        "of quota (503); retry after Retry-After seconds (with the same Idempotency-Key)."
    )
    from_function = True


class UpstreamTimeout(ApiError):
    code = "upstream_timeout"
    status = 504
    title = "Upstream timeout"
    description = "The avatar function took too long (504); retry with the same Idempotency-Key."
    from_function = True


def error_class(code: str) -> type[ApiError] | None:
    """The class of a SPEC code, the base's `internal_error` included; None if unknown."""
    return ApiError if code == ApiError.code else ApiError.registry.get(code)


# Every code the API can answer with, in the order above.
PROBLEM_CODES: tuple[str, ...] = (*ApiError.registry, ApiError.code)
# The codes the function may answer that describe the user's input or its own upstream;
# any other answer (a 401 from the platform, an unknown code) is the API's problem.
FUNCTION_CODES = frozenset(code for code, cls in ApiError.registry.items() if cls.from_function)


def size_text(size: int) -> str:
    """A byte limit as people read it, in the unit the README uses: "20 MB", "16 kB".

    MB and kB are binary here (20 MB = 20 x 1024 x 1024 bytes), as the settings define them.
    """
    for unit, scale in (("MB", 1024 * 1024), ("kB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"
