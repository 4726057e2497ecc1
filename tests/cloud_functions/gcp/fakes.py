"""Fake Google endpoints at the HTTP level (tests/fake_http.py's server) answering in the
documented REST formats of Cloud Vision, Vertex AI, Cloud Storage, IAM and the metadata server."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PIL import Image

from avatar.faces import Face
from tests.fake_http import FakeServer as FakeServer
from tests.fake_http import Handler, Recorded, Reply
from tests.fake_http import google_error as google_error
from tests.fake_http import running as running

BUCKET = "avatars-test"
SIGNER_EMAIL = "avatar-fn@test-project.iam.gserviceaccount.com"
VERTEX_MODEL = "gemini-test-image"
PINK = (255, 0, 200)  # the colour of the fake model's animals (the `vertex` fixture)


# --- Cloud Vision images:annotate ----------------------------------------------------------------

LIKELIHOOD = ("UNKNOWN", "VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY")


def vision_face(
    x: float, y: float, size: float, *, roll: float = 0.0, confidence: float = 0.97
) -> dict[str, Any]:
    """A FaceAnnotation for an upright frontal face whose fd box is (x, y, size, size).

    Left/right are the viewer's, as Vision documents: LEFT_EYE is the person's right eye.
    """
    cx, s = x + size / 2, size

    def at(dx: float, dy: float) -> dict[str, float]:
        return {"x": cx + dx * s, "y": y + dy * s, "z": 0.0}

    points = {
        "LEFT_EYE": at(-0.2, 0.38),
        "RIGHT_EYE": at(0.2, 0.38),
        "MIDPOINT_BETWEEN_EYES": at(0.0, 0.38),
        "NOSE_TIP": at(0.0, 0.58),
        "UPPER_LIP": at(0.0, 0.7),
        "LOWER_LIP": at(0.0, 0.8),
        "MOUTH_LEFT": at(-0.15, 0.75),
        "MOUTH_RIGHT": at(0.15, 0.75),
        "MOUTH_CENTER": at(0.0, 0.75),
        "LEFT_EAR_TRAGION": at(-0.48, 0.5),
        "RIGHT_EAR_TRAGION": at(0.48, 0.5),
        "FOREHEAD_GLABELLA": at(0.0, 0.28),
        "CHIN_GNATHION": at(0.0, 0.98),
        "CHIN_LEFT_GONION": at(-0.4, 0.8),
        "CHIN_RIGHT_GONION": at(0.4, 0.8),
        "LEFT_CHEEK_CENTER": at(-0.28, 0.62),
        "RIGHT_CHEEK_CENTER": at(0.28, 0.62),
    }
    vertices = [{"x": round(px), "y": round(py)} for px, py in _corners(x, y, size)]
    return {
        "boundingPoly": {"vertices": vertices},
        "fdBoundingPoly": {"vertices": vertices},
        "landmarks": [{"type": name, "position": pos} for name, pos in points.items()],
        "rollAngle": roll,
        "panAngle": 0.0,
        "tiltAngle": 0.0,
        "detectionConfidence": confidence,
        "landmarkingConfidence": 0.8,
    }


def _corners(x: float, y: float, size: float) -> list[tuple[float, float]]:
    return [(x, y), (x + size, y), (x + size, y + size), (x, y + size)]


def face_at(x: float, y: float, size: float, roll: float = 0.0) -> Face:
    """The Face the Vision adapter makes of `vision_face(x, y, size)` turned by `roll` degrees."""
    from avatar.backends.gcp.face_mapping import face_from_vision

    raw = vision_face(x, y, size)
    landmarks = {m["type"]: (m["position"]["x"], m["position"]["y"]) for m in raw["landmarks"]}
    if roll:
        c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        cx, cy = x + size / 2, y + size / 2
        landmarks = {
            k: (cx + (px - cx) * c - (py - cy) * s, cy + (px - cx) * s + (py - cy) * c)
            for k, (px, py) in landmarks.items()
        }
    vertices = [(v["x"], v["y"]) for v in raw["fdBoundingPoly"]["vertices"]]
    return face_from_vision(vertices, landmarks, roll, 0.9)


# The astronaut's face (skimage.data.astronaut), where Cloud Vision would put it (eyes at about
# (204, 103), (248, 103)).
ASTRONAUT_FACE = vision_face(171, 61, 110)


def vision_reply(
    faces: Sequence[dict[str, Any]] = (),
    *,
    adult: str = "VERY_UNLIKELY",
    racy: str = "UNLIKELY",
    violence: str = "VERY_UNLIKELY",
) -> dict[str, Any]:
    """A BatchAnnotateImagesResponse with faces and a SafeSearch verdict."""
    safe = {
        "adult": adult,
        "spoof": "VERY_UNLIKELY",
        "medical": "UNLIKELY",
        "violence": violence,
        "racy": racy,
    }
    response: dict[str, Any] = {"safeSearchAnnotation": safe}
    if faces:
        response["faceAnnotations"] = list(faces)
    return {"responses": [response]}


def vision_image_error(code: int = 3, message: str = "Bad image data.") -> dict[str, Any]:
    """A 200 answer whose only image failed: the per-image `error` (a google.rpc.Status)."""
    return {"responses": [{"error": {"code": code, "message": message}}]}


# --- Vertex AI generateContent -------------------------------------------------------------------


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def vertex_image_reply(
    image: Image.Image, *, fmt: str = "PNG", text: str = "Here is your animal."
) -> dict[str, Any]:
    """A GenerateContentResponse with a text part and an inline image part (PNG or JPEG)."""
    data = base64.b64encode(image_bytes(image, fmt)).decode()
    mime = f"image/{fmt.lower()}"
    parts = [{"text": text}, {"inlineData": {"mimeType": mime, "data": data}}]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "modelVersion": "fake-image-model",
    }


def vertex_text_reply(text: str = "I can't make images today.") -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ]
    }


def vertex_blocked_candidate(reason: int | str = 3) -> dict[str, Any]:
    return {"candidates": [{"finishReason": reason, "finishMessage": "blocked by the fake"}]}


def vertex_blocked_prompt(reason: str = "PROHIBITED_CONTENT") -> dict[str, Any]:
    return {"promptFeedback": {"blockReason": reason, "blockReasonMessage": "fake block"}}


def inline_image(request: Recorded) -> tuple[str, Image.Image]:
    """The (mime type, image) of the first inline-data part a generateContent request sent."""
    for part in request.json()["contents"][0]["parts"]:
        if "inlineData" in part:
            blob = part["inlineData"]
            image = Image.open(io.BytesIO(base64.b64decode(blob["data"])))
            image.load()
            return blob["mimeType"], image
    msg = "the request carried no inline image"
    raise AssertionError(msg)


def prompt_text(request: Recorded) -> str:
    return " ".join(p["text"] for p in request.json()["contents"][0]["parts"] if "text" in p)


def prompted_animal(request: Recorded) -> str | None:
    """The catalogue id whose prompt a generateContent request carries, or None."""
    from avatar.backends.gcp.vertex import prompt
    from avatar.catalogue import ANIMALS

    text = prompt_text(request)
    return next((animal.id for animal in ANIMALS if prompt(animal) == text), None)


def vertex_per_animal(answers: Mapping[str, Reply], default: Reply) -> Handler:
    """A generateContent handler answering each animal's request with its reply in `answers`
    (read at each request), and any other with `default`.

    E.g. `vertex_per_animal(dict.fromkeys(["cat", "fox"], Reply(vertex_blocked_candidate())),
    Reply(vertex_image_reply(image)))`: the safety filter blocks the cat and the fox of a pack.
    """

    def handle(request: Recorded) -> Reply:
        return answers.get(prompted_animal(request) or "", default)

    return handle


# --- Cloud Storage: a recording proxy in front of the emulator, IAM signBlob, metadata ----------


def proxy_to(upstream: str, override: Callable[[Recorded], Reply | None] | None = None) -> Handler:
    """Forward each request to `upstream` (e.g. the storage emulator) unless `override` answers."""
    import requests

    def handle(request: Recorded) -> Reply:
        reply = override(request) if override else None
        if reply is not None:
            return reply
        query = "&".join(f"{k}={v}" for k, values in request.query.items() for v in values)
        hop = {"host", "content-length", "connection", "accept-encoding"}
        headers = {k: v for k, v in request.headers.items() if k not in hop}
        answer = requests.request(
            request.method, f"{upstream}{request.path}?{query}", headers=headers,
            data=request.body, timeout=5,
        )  # fmt: skip
        kept = {k: v for k, v in answer.headers.items() if k.lower() in {"etag", "location"}}
        return Reply(answer.content, answer.status_code, kept)

    return handle


def iam_and_metadata(key: Any, email: str, token: str = "ya29.fake-token") -> Handler:
    """Fake IAM Credentials signBlob (signing with `key`) and GCE metadata token/email routes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def handle(request: Recorded) -> Reply:
        if request.path.endswith(":signBlob"):
            if request.headers.get("authorization") != f"Bearer {token}":
                # What a caller without roles/iam.serviceAccountTokenCreator meets.
                return Reply(google_error(403, "PERMISSION_DENIED"), 403)
            payload = base64.b64decode(request.json()["payload"])
            signature = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
            return Reply({"keyId": "iam-key", "signedBlob": base64.b64encode(signature).decode()})
        if request.path.endswith("/service-accounts/default/"):
            return Reply(
                {
                    "email": email,
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                    "aliases": ["default"],
                },
                headers={"Metadata-Flavor": "Google"},
            )
        if request.path.endswith("/token"):
            body = {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
            return Reply(body, headers={"Metadata-Flavor": "Google"})
        return Reply(google_error(404, "NOT_FOUND"), 404, {"Metadata-Flavor": "Google"})

    return handle
