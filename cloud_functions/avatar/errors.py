"""One error family for the function; `main.py` renders it as `{"error": code, "detail": ...}`."""

from __future__ import annotations


class AvatarError(Exception):
    """Base of every error the function answers with; carries the SPEC code and HTTP status."""

    code = "internal_error"
    status = 500

    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class InvalidRequest(AvatarError):
    code = "invalid_request"
    status = 400


class MethodNotAllowed(AvatarError):
    code = "method_not_allowed"
    status = 405


class ImageTooLarge(AvatarError):
    code = "image_too_large"
    status = 413


class Conflict(AvatarError):
    """A result's object name is taken by other bytes: results are created once, never replaced
    (an identical write is a retry of the same request and succeeds instead)."""

    code = "conflict"
    status = 409

    @classmethod
    def taken(cls, name: str) -> Conflict:
        """The error for `name`, in the words both stores use."""
        return cls(f"an object named {name!r} already exists; a result is never replaced")


class UnsupportedImage(AvatarError):
    code = "unsupported_image"
    status = 415


class InvalidImage(AvatarError):
    code = "invalid_image"
    status = 422


class NoFaceDetected(AvatarError):
    code = "no_face_detected"
    status = 422


class ContentBlocked(AvatarError):
    code = "content_blocked"
    status = 422


class UpstreamUnavailable(AvatarError):
    code = "upstream_unavailable"
    status = 503


class UpstreamTimeout(AvatarError):
    code = "upstream_timeout"
    status = 504


class DeadlinePassed(UpstreamTimeout):
    """The caller's deadline (X-Request-Deadline) passed before a result was stored.

    Unlike the other errors of a pack's animal, it fails the whole request: the caller is gone.
    """


class ModelsMissing(AvatarError):
    """The local model files are missing; the detail names the command that fetches them."""

    code = "upstream_unavailable"
    status = 503
