"""Compositing with a Gemini image model on Vertex AI (aiplatform_v1 generate_content, REST).

Each face goes to the model as a roll-aligned crop with an animal-specific prompt; the answer
is turned back and blended in through the face's feathered mask, so nothing outside it changes.

Decisions: a safety block (promptFeedback.blockReason, or a blocking finishReason) is answered
with `content_blocked` whatever `compose_fallback` says, because drawing the animal locally
would step around the model's moderation. An answer with no image (text only, or an empty
candidate) is not a refusal: it goes to the fallback compositor when one is configured
(`compose_fallback=local`), else it is `upstream_unavailable`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from PIL import Image

from avatar import logs
from avatar.backends.gcp import errors
from avatar.backends.gcp.clients import Lazy, client_kwargs
from avatar.backends.gcp.crop import FaceCrop
from avatar.backends.gcp.retry import Backoff, call_with_retry, stage_deadline_s
from avatar.catalogue import DEFAULT_STYLE, Animal, get_animal
from avatar.errors import ContentBlocked, InvalidRequest, UpstreamUnavailable

if TYPE_CHECKING:
    from avatar.backends import Compositor
    from avatar.config import Settings
    from avatar.faces import Face

SERVICE = "Vertex AI"
JPEG_QUALITY = 90
MAX_PARALLEL_FACES = 4
# Finish reasons that mean the model refused on safety grounds.
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MODEL_ARMOR",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
    }
)

# google.cloud.aiplatform.v1 Candidate.FinishReason values newer than this client's enum: over
# REST (enum-encoding=int) they arrive as bare numbers, so they are named here.
NEWER_FINISH_REASONS = {
    11: "IMAGE_SAFETY",
    12: "IMAGE_PROHIBITED_CONTENT",
    13: "IMAGE_RECITATION",
    14: "IMAGE_OTHER",
    15: "UNEXPECTED_TOOL_CALL",
    16: "NO_IMAGE",
}


class NoImageAnswer(Exception):
    """The model answered, but with no image: not a refusal, maybe worth the fallback."""


class VertexCompositor:
    """Compositor over a Gemini image model; `fallback` draws faces the model gave no image for."""

    name = "gcp"
    concurrent_animals: int | None = None  # network-bound: each call has its own deadline

    def __init__(
        self,
        *,
        project: str,
        location: str,
        model: str,
        endpoint: str | None = None,
        deadline_s: float = 25.0,
        fallback: Compositor | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.model_path = (
            f"projects/{project}/locations/{location}/publishers/google/models/{model}"
        )
        endpoint = endpoint or _regional_endpoint(location)
        self._client: Lazy[Any] = Lazy(lambda: _build_client(endpoint))
        self._deadline_s = deadline_s
        self._fallback = fallback
        self._backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings, fallback: Compositor | None) -> VertexCompositor:
        """The compositor the settings describe; `fallback` serves if compose_fallback=local."""
        if not settings.gcp_project:
            msg = "GCP_PROJECT must be set for the gcp compositor"
            raise ValueError(msg)
        return cls(
            project=settings.gcp_project,
            location=settings.gcp_location,
            model=settings.vertex_model,
            endpoint=settings.vertex_api_endpoint,
            deadline_s=stage_deadline_s(settings.gcp_deadline_s, "compose"),
            fallback=fallback if settings.compose_fallback == "local" else None,
        )

    def compose(
        self,
        image: Image.Image,
        faces: Sequence[Face],
        masks: Sequence[Image.Image],
        animal: str,
        style: str = DEFAULT_STYLE,
    ) -> Image.Image:
        """`image` with every face turned into `animal`; pixels outside the masks unchanged.

        `style` does not change the model's prompt; only a face the fallback draws uses it.
        """
        entry = get_animal(animal)
        if entry is None:
            raise InvalidRequest(f"unknown animal {animal!r}")
        crops = [FaceCrop.around(face) for face in faces]
        answers = self._generate_all(image, crops, entry)
        result = image
        for face, mask, crop, answer in zip(faces, masks, crops, answers, strict=True):
            if answer is None:
                result = self._fall_back(result, face, mask, animal, style)
            else:
                result = crop.blend_back(result, answer, mask)
        return result

    def _generate_all(
        self, image: Image.Image, crops: list[FaceCrop], animal: Animal
    ) -> list[Image.Image | None]:
        """The model's image for each crop (None where it answered without one), in parallel."""
        jobs = [(_jpeg(crop.extract(image)), crop.size_px) for crop in crops]
        if len(jobs) <= 1:
            return [self._generate(jpeg, animal, fit_px) for jpeg, fit_px in jobs]
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_FACES, len(jobs))) as pool:
            generate = logs.traced(lambda job: self._generate(job[0], animal, job[1]))
            return list(pool.map(generate, jobs))

    def _generate(self, jpeg: bytes, animal: Animal, fit_px: int) -> Image.Image | None:
        try:
            response = call_with_retry(
                lambda timeout_s: self._generate_once(jpeg, animal, timeout_s),
                deadline_s=self._deadline_s,
                is_retryable=errors.is_retryable,
                backoff=self._backoff,
            )
            return generated_image(response, fit_px)
        except NoImageAnswer:
            return None
        except Exception as exc:
            raise errors.translate(exc, SERVICE) from exc

    def _generate_once(self, jpeg: bytes, animal: Animal, timeout_s: float) -> Any:
        from google.cloud import aiplatform_v1 as ai

        part_image = ai.Part(inline_data=ai.Blob(mime_type="image/jpeg", data=jpeg))
        modality = ai.GenerationConfig.Modality
        request = ai.GenerateContentRequest(
            model=self.model_path,
            contents=[ai.Content(role="user", parts=[part_image, ai.Part(text=prompt(animal))])],
            generation_config=ai.GenerationConfig(
                response_modalities=[modality.TEXT, modality.IMAGE],
                candidate_count=1,
                image_config=_image_config(ai),
            ),
        )
        return self._client.get().generate_content(request=request, retry=None, timeout=timeout_s)

    def _fall_back(
        self, image: Image.Image, face: Face, mask: Image.Image, animal: str, style: str
    ) -> Image.Image:
        if self._fallback is None:
            detail = f"{SERVICE} answered without an image"
            raise UpstreamUnavailable(detail, retry_after_s=errors.DEFAULT_RETRY_AFTER_S)
        return self._fallback.compose(image, [face], [mask], animal, style=style)


def _image_config(ai: Any) -> Any:
    """A square answer, as JPEG: it decodes several times faster than the default PNG."""
    options = ai.ImageConfig.ImageOutputOptions(mime_type="image/jpeg", compression_quality=90)
    return ai.ImageConfig(aspect_ratio="1:1", image_output_options=options)


def prompt(animal: Animal) -> str:
    """The instruction sent with each face crop, built from the catalogue entry."""
    return (
        f"Turn the person in this photo into a {animal.name.lower()} character. "
        f"{animal.description} Keep the head's position, size, tilt and expression, the "
        "lighting and everything around the head exactly as they are; change only the face "
        "and head. Answer with the edited image."
    )


def generated_image(response: Any, fit_px: int = 0) -> Image.Image:
    """The first image part of a GenerateContentResponse; raises on blocks and empty answers.

    A JPEG answer is decoded at a reduced scale when it is twice `fit_px` or more.
    """
    block = _enum_name(response.prompt_feedback.block_reason)
    if block != "BLOCKED_REASON_UNSPECIFIED":
        raise ContentBlocked(f"the image model refused the request ({block})")
    if not response.candidates:
        raise NoImageAnswer("no candidates")
    candidate = response.candidates[0]
    for part in candidate.content.parts:
        if part.inline_data.data and part.inline_data.mime_type.startswith("image/"):
            return _decode(part.inline_data.data, fit_px)
    reason = _enum_name(candidate.finish_reason)
    if reason in BLOCKING_FINISH_REASONS:
        raise ContentBlocked(f"the image model refused to draw it ({reason})")
    raise NoImageAnswer(f"finish reason {reason}")


def _enum_name(value: Any) -> str:
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    return NEWER_FINISH_REASONS.get(int(value), str(value))


def _decode(data: bytes, fit_px: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if fit_px:
            image.draft("RGB", (fit_px, fit_px))  # JPEG only; keeps at least fit_px
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        msg = f"the image part could not be decoded ({base64.b64encode(data[:8]).decode()}...)"
        raise ValueError(msg) from exc
    return image


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _regional_endpoint(location: str) -> str:
    if location == "global":
        return "aiplatform.googleapis.com"
    return f"{location}-aiplatform.googleapis.com"


def _build_client(endpoint: str) -> Any:
    from google.cloud import aiplatform_v1

    return aiplatform_v1.PredictionServiceClient(**client_kwargs(endpoint))
