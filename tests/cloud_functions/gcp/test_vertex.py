"""VertexCompositor with the real aiplatform_v1 client against a fake generateContent."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from avatar.backends.gcp.crop import FaceCrop
from avatar.backends.gcp.retry import Backoff
from avatar.backends.gcp.vertex import VertexCompositor
from avatar.catalogue import get_animal
from avatar.errors import (
    ContentBlocked,
    InvalidRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from avatar.faces import Face
from avatar.masking import ContourMasker
from tests.cloud_functions.gcp.fakes import (
    FakeServer,
    Reply,
    face_at,
    google_error,
    inline_image,
    prompt_text,
    prompted_animal,
    vertex_blocked_candidate,
    vertex_blocked_prompt,
    vertex_image_reply,
    vertex_text_reply,
)

BLUE = (0, 0, 255)
MODEL_PATH = "/v1/projects/test-project/locations/us-central1/publishers/google/models/img-model"


class PaintCompositor:
    """A fallback that paints the masked face green: shows when and where it was used."""

    name = "paint"

    def __init__(self) -> None:
        self.calls = 0
        self.styles: list[str] = []

    def compose(
        self,
        image: Image.Image,
        faces: Sequence[Face],
        masks: Sequence[Image.Image],
        animal: str,
        style: str = "character",
    ) -> Image.Image:
        self.calls += 1
        self.styles.append(style)
        out = image.copy()
        for mask in masks:
            out = Image.composite(Image.new("RGB", image.size, (0, 255, 0)), out, mask)
        return out


def compositor(
    fake: FakeServer,
    backoff: Backoff,
    *,
    fallback: PaintCompositor | None = None,
    deadline_s: float = 5.0,
) -> VertexCompositor:
    return VertexCompositor(
        project="test-project", location="us-central1", model="img-model", endpoint=fake.url,
        deadline_s=deadline_s, fallback=fallback, backoff=backoff,
    )  # fmt: skip


@pytest.fixture
def scene(astronaut: Image.Image) -> tuple[Image.Image, Face, Image.Image]:
    face = face_at(170, 70, 130, roll=12)
    return astronaut, face, ContourMasker().face_mask(astronaut, face)


def test_sends_the_upright_crop_and_the_animal_prompt_and_blends_the_answer(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply(vertex_image_reply(Image.new("RGB", (1024, 1024), BLUE))))

    out = compositor(fake, fast_backoff).compose(image, [face], [mask], "fox")

    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", MODEL_PATH + ":generateContent")
    body = sent.json()
    config = body["generationConfig"]
    assert config["responseModalities"] == [1, 2]  # TEXT, IMAGE
    assert config["imageConfig"]["aspectRatio"] == "1:1"
    assert config["imageConfig"]["imageOutputOptions"]["mimeType"] == "image/jpeg"
    mime, crop = inline_image(sent)
    expected = FaceCrop.around(face).extract(image)
    assert (mime, crop.size) == ("image/jpeg", expected.size)
    assert np.abs(np.asarray(crop, int) - np.asarray(expected, int)).mean() < 4  # JPEG noise
    fox = get_animal("fox")
    assert fox is not None
    assert "fox" in prompt_text(sent)
    assert fox.description in prompt_text(sent)

    before, after, alpha = np.asarray(image), np.asarray(out), np.asarray(mask)
    assert np.array_equal(after[alpha == 0], before[alpha == 0])
    assert np.abs(after[alpha == 255].astype(int) - BLUE).max() <= 2


def test_two_faces_make_two_calls_and_both_are_blended(
    fake: FakeServer, fast_backoff: Backoff
) -> None:
    image = Image.new("RGB", (600, 300), (200, 180, 160))
    faces = [face_at(40, 60, 150), face_at(360, 60, 150)]
    masks = [ContourMasker().face_mask(image, f) for f in faces]
    # A JPEG answer (as asked for) twice the crop's size: decoded at half scale.
    fake.script(Reply(vertex_image_reply(Image.new("RGB", (1024, 1024), BLUE), fmt="JPEG")))

    out = np.asarray(compositor(fake, fast_backoff).compose(image, faces, masks, "cat"))

    assert len(fake.requests) == 2
    for mask in masks:
        assert np.abs(out[np.asarray(mask) == 255].astype(int) - BLUE).max() <= 4
    outside = (np.asarray(masks[0]) == 0) & (np.asarray(masks[1]) == 0)
    assert np.array_equal(out[outside], np.asarray(image)[outside])


# Over REST the server sends enums as numbers (the client asks for enum-encoding=int).
@pytest.mark.filterwarnings("ignore:Unrecognized FinishReason enum value")
@pytest.mark.parametrize(
    ("reason", "name"),
    [(3, "SAFETY"), (7, "PROHIBITED_CONTENT"), (11, "IMAGE_SAFETY"),
     (12, "IMAGE_PROHIBITED_CONTENT"), ("SAFETY", "SAFETY")],
)  # fmt: skip
def test_a_safety_finish_is_content_blocked_even_with_a_fallback(
    fake: FakeServer,
    fast_backoff: Backoff,
    scene: tuple[Image.Image, Face, Image.Image],
    reason: int | str,
    name: str,
) -> None:
    image, face, mask = scene
    fake.script(Reply(vertex_blocked_candidate(reason)))
    fallback = PaintCompositor()
    with pytest.raises(ContentBlocked, match=name):
        compositor(fake, fast_backoff, fallback=fallback).compose(image, [face], [mask], "cat")
    assert fallback.calls == 0


def test_a_blocked_prompt_is_content_blocked(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply(vertex_blocked_prompt("PROHIBITED_CONTENT")))
    with pytest.raises(ContentBlocked, match="PROHIBITED_CONTENT"):
        compositor(fake, fast_backoff).compose(image, [face], [mask], "cat")
    assert len(fake.requests) == 1


def test_an_answer_without_an_image_goes_to_the_fallback(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply(vertex_text_reply()))
    fallback = PaintCompositor()
    out = compositor(fake, fast_backoff, fallback=fallback).compose(image, [face], [mask], "cat")
    assert fallback.calls == 1
    alpha = np.asarray(mask)
    assert np.array_equal(np.asarray(out)[alpha == 0], np.asarray(image)[alpha == 0])
    assert tuple(np.asarray(out)[alpha == 255][0]) == (0, 255, 0)


@pytest.mark.parametrize("style", ["character", "paint"])
def test_the_style_leaves_the_prompt_alone_and_goes_to_the_fallback(
    fake: FakeServer,
    fast_backoff: Backoff,
    scene: tuple[Image.Image, Face, Image.Image],
    style: str,
) -> None:
    image, face, mask = scene
    drawn = Reply(vertex_image_reply(Image.new("RGB", (64, 64), BLUE)))
    fake.script(drawn, Reply(vertex_text_reply()))
    fallback = PaintCompositor()
    vertex = compositor(fake, fast_backoff, fallback=fallback)
    vertex.compose(image, [face], [mask], "fox", style=style)
    vertex.compose(image, [face], [mask], "fox", style=style)  # answered without an image
    assert [prompted_animal(sent) for sent in fake.requests] == ["fox", "fox"]  # no style in it
    assert fallback.styles == [style]


def test_an_answer_without_an_image_and_no_fallback_is_unavailable(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply({"candidates": []}))
    with pytest.raises(UpstreamUnavailable, match="without an image"):
        compositor(fake, fast_backoff).compose(image, [face], [mask], "cat")


def test_quota_then_success_retries(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    quota = Reply(google_error(429, "RESOURCE_EXHAUSTED"), 429)
    fake.script(quota, Reply(vertex_image_reply(Image.new("RGB", (64, 64), BLUE))))
    compositor(fake, fast_backoff).compose(image, [face], [mask], "cat")
    assert len(fake.requests) == 2


def test_quota_to_the_end_is_unavailable_with_retry_after(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply(google_error(429, "RESOURCE_EXHAUSTED"), 429))
    with pytest.raises(UpstreamUnavailable) as caught:
        compositor(fake, fast_backoff, fallback=PaintCompositor()).compose(
            image, [face], [mask], "cat"
        )
    assert caught.value.retry_after_s == 30  # no Retry-After header: the default
    assert len(fake.requests) == fast_backoff.max_attempts


def test_quota_retries_stop_at_the_deadline(
    fake: FakeServer, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply(google_error(429, "RESOURCE_EXHAUSTED"), 429, {"Retry-After": "9"}))
    # Backoff alone would allow 100 attempts; the 1 s deadline allows about five.
    backoff = Backoff(initial_s=0.1, max_s=0.2, max_attempts=100)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as caught:
        compositor(fake, backoff, deadline_s=1.0).compose(image, [face], [mask], "cat")
    assert time.monotonic() - started < 2.0
    assert caught.value.retry_after_s == 9
    assert 2 <= len(fake.requests) <= 12


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_unavailable(
    fake: FakeServer,
    fast_backoff: Backoff,
    scene: tuple[Image.Image, Face, Image.Image],
    status: int,
) -> None:
    image, face, mask = scene
    fake.script(Reply(google_error(status, "INTERNAL"), status))
    with pytest.raises(UpstreamUnavailable, match=f"HTTP {status}"):
        compositor(fake, fast_backoff).compose(image, [face], [mask], "cat")


def test_a_slow_model_is_a_timeout(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply(vertex_text_reply(), delay_s=5.0))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        compositor(fake, fast_backoff, deadline_s=0.3).compose(image, [face], [mask], "cat")
    assert time.monotonic() - started < 1.5


def test_malformed_json_is_unavailable(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    fake.script(Reply(b'{"candidates": [{"content": '))
    with pytest.raises(UpstreamUnavailable):
        compositor(fake, fast_backoff).compose(image, [face], [mask], "cat")


def test_an_undecodable_image_part_is_unavailable(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    parts = [{"inlineData": {"mimeType": "image/png", "data": "bm90IGFuIGltYWdl"}}]
    fake.script(Reply({"candidates": [{"content": {"parts": parts}, "finishReason": "STOP"}]}))
    with pytest.raises(UpstreamUnavailable):
        compositor(fake, fast_backoff).compose(image, [face], [mask], "cat")


def test_an_unknown_animal_is_refused_before_any_call(
    fake: FakeServer, fast_backoff: Backoff, scene: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = scene
    with pytest.raises(InvalidRequest):
        compositor(fake, fast_backoff).compose(image, [face], [mask], "unicorn")
    assert fake.requests == []
