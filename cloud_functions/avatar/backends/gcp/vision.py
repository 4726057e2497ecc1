"""Face detection and SafeSearch with Cloud Vision (google-cloud-vision, REST transport)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from PIL import Image

from avatar.backends.gcp import errors
from avatar.backends.gcp.clients import Lazy, client_kwargs
from avatar.backends.gcp.face_mapping import face_from_vision
from avatar.backends.gcp.retry import Backoff, call_with_retry, stage_deadline_s
from avatar.errors import AvatarError, ContentBlocked, InvalidImage, UpstreamUnavailable

if TYPE_CHECKING:
    from avatar.config import Settings
    from avatar.faces import Face

SERVICE = "Cloud Vision"
MAX_FACES = 10
JPEG_QUALITY = 90
# Vision's recommended size for face detection is 1600x1200; a larger working image is
# shrunk to it before upload and the coordinates scaled back.
UPLOAD_MAX_SIDE_PX = 1600
# Likelihood enum: UNKNOWN 0, VERY_UNLIKELY 1, UNLIKELY 2, POSSIBLE 3, LIKELY 4, VERY_LIKELY 5.
LIKELY = 4
BLOCKING_CATEGORIES = ("adult", "violence", "racy")
# google.rpc.Code of a per-image error: INVALID_ARGUMENT is the image; these are transient.
RPC_INVALID_ARGUMENT = 3
RPC_RETRYABLE = {4: 504, 8: 429, 14: 503}  # DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE


class ImageError(Exception):
    """The per-image `error` of a 200 answer; `code` is the HTTP status it stands for."""

    def __init__(self, rpc_code: int, message: str) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.code = RPC_RETRYABLE.get(rpc_code, 400 if rpc_code == RPC_INVALID_ARGUMENT else 502)


class VisionDetector:
    """FaceDetector over Cloud Vision: one annotate call asks for faces and SafeSearch."""

    name = "gcp"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        deadline_s: float = 25.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._client: Lazy[Any] = Lazy(lambda: _build_client(endpoint))
        self._deadline_s = deadline_s
        self._backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings) -> VisionDetector:
        """The detector the settings describe; the client is built on first use."""
        return cls(
            endpoint=settings.vision_api_endpoint,
            deadline_s=stage_deadline_s(settings.gcp_deadline_s, "detect"),
        )

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in `image`, largest first; ContentBlocked when SafeSearch flags it."""
        upload, scale = _upload(image)
        response = self._annotate(upload)
        _check_safe_search(response.safe_search_annotation)
        faces = [_face(annotation, scale) for annotation in response.face_annotations]
        return sorted(faces, key=lambda face: face.box.area, reverse=True)

    def _annotate(self, content: bytes) -> Any:
        try:
            return call_with_retry(
                lambda timeout_s: self._annotate_once(content, timeout_s),
                deadline_s=self._deadline_s,
                is_retryable=errors.is_retryable,
                backoff=self._backoff,
            )
        except ImageError as exc:
            raise _image_error(exc) from exc
        except Exception as exc:
            raise errors.translate(exc, SERVICE) from exc

    def _annotate_once(self, content: bytes, timeout_s: float) -> Any:
        from google.cloud import vision

        feature = vision.Feature.Type
        request = vision.AnnotateImageRequest(
            image=vision.Image(content=content),
            features=[
                vision.Feature(type_=feature.FACE_DETECTION, max_results=MAX_FACES),
                vision.Feature(type_=feature.SAFE_SEARCH_DETECTION),
            ],
        )
        batch = self._client.get().batch_annotate_images(
            requests=[request], retry=None, timeout=timeout_s
        )
        if not batch.responses:
            raise ImageError(13, "Cloud Vision answered without a response for the image")
        response = batch.responses[0]
        if response.error.code:
            raise ImageError(response.error.code, response.error.message)
        return response


def _build_client(endpoint: str | None) -> Any:
    from google.cloud import vision

    return vision.ImageAnnotatorClient(**client_kwargs(endpoint))


def _upload(image: Image.Image) -> tuple[bytes, float]:
    """The JPEG sent to Vision (long side at most UPLOAD_MAX_SIDE_PX), and the factor that
    maps its coordinates back onto `image`."""
    factor = 1.0
    if max(image.size) > UPLOAD_MAX_SIDE_PX:
        scale = UPLOAD_MAX_SIDE_PX / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        factor = image.width / size[0]
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), factor


def _image_error(exc: ImageError) -> AvatarError:
    if exc.rpc_code == RPC_INVALID_ARGUMENT:
        return InvalidImage(f"{SERVICE} could not read the image: {exc}")
    if exc.code in errors.RETRYABLE_STATUSES:
        return errors.translate(exc, SERVICE)
    detail = f"{SERVICE} failed on the image (code {exc.rpc_code}): {exc}"
    return UpstreamUnavailable(detail, retry_after_s=errors.DEFAULT_RETRY_AFTER_S)


def _check_safe_search(annotation: Any) -> None:
    flagged = [c for c in BLOCKING_CATEGORIES if int(getattr(annotation, c)) >= LIKELY]
    if flagged:
        raise ContentBlocked(f"the image was flagged by moderation ({', '.join(flagged)})")


def _face(annotation: Any, scale: float) -> Face:
    """One FaceAnnotation as a Face, its coordinates multiplied by `scale`."""
    from google.cloud import vision

    # The raw protobuf: proto-plus wrappers cost ~0.1 ms per landmark attribute read.
    raw = vision.FaceAnnotation.pb(annotation)
    names = vision.FaceAnnotation.Landmark.Type.__members__
    known = {member.value: name for name, member in names.items()}
    vertices = [(v.x * scale, v.y * scale) for v in raw.fd_bounding_poly.vertices]
    landmarks = {
        known[mark.type_]: (mark.position.x * scale, mark.position.y * scale)
        for mark in raw.landmarks
        if known.get(mark.type_, "UNKNOWN_LANDMARK") != "UNKNOWN_LANDMARK"
    }
    return face_from_vision(vertices, landmarks, raw.roll_angle, raw.detection_confidence)
