"""One error family for the service, rendered by one handler as RFC 9457 problem+json."""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    """Base of every error the API answers with: a SPEC code, an HTTP status, a detail."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
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


class BadRequest(InvalidRequest):
    status = 400


class Unauthorized(ApiError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(ApiError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFound(ApiError):
    code = "not_found"
    status = 404
    title = "Not found"


class MethodNotAllowed(ApiError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


class Conflict(ApiError):
    code = "conflict"
    status = 409
    title = "Conflict"


class ImageTooLarge(ApiError):
    code = "image_too_large"
    status = 413
    title = "Image too large"


class UnsupportedImage(ApiError):
    code = "unsupported_image"
    status = 415
    title = "Unsupported image type"


class InvalidImage(ApiError):
    code = "invalid_image"
    status = 422
    title = "Invalid image"


class NoFaceDetected(ApiError):
    code = "no_face_detected"
    status = 422
    title = "No face detected"


class ContentBlocked(ApiError):
    code = "content_blocked"
    status = 422
    title = "Content blocked"


class RateLimited(ApiError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class UpstreamUnavailable(ApiError):
    code = "upstream_unavailable"
    status = 503
    title = "Upstream unavailable"


class UpstreamTimeout(ApiError):
    code = "upstream_timeout"
    status = 504
    title = "Upstream timeout"
