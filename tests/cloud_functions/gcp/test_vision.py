"""VisionDetector with the real google-cloud-vision client against a fake images:annotate."""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image

from avatar.backends.gcp.retry import Backoff
from avatar.backends.gcp.vision import VisionDetector
from avatar.errors import ContentBlocked, InvalidImage, UpstreamTimeout, UpstreamUnavailable
from tests.cloud_functions.gcp.fakes import (
    FakeServer,
    Reply,
    google_error,
    vision_face,
    vision_image_error,
    vision_reply,
)

FACE_DETECTION, SAFE_SEARCH_DETECTION = 1, 6  # Feature.Type, sent as integers over REST


def detector(fake: FakeServer, backoff: Backoff, deadline_s: float = 5.0) -> VisionDetector:
    return VisionDetector(endpoint=fake.url, deadline_s=deadline_s, backoff=backoff)


def test_one_request_asks_for_faces_and_safe_search_and_maps_the_face(
    fake: FakeServer, fast_backoff: Backoff, astronaut: Image.Image
) -> None:
    fake.script(Reply(vision_reply([vision_face(160, 80, 140)])))
    faces = detector(fake, fast_backoff).detect(astronaut)

    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/images:annotate")
    [request] = sent.json()["requests"]
    features = {f["type"]: f.get("maxResults") for f in request["features"]}
    assert features == {FACE_DETECTION: 10, SAFE_SEARCH_DETECTION: None}
    image = Image.open(io.BytesIO(base64.b64decode(request["image"]["content"])))
    assert (image.format, image.size) == ("JPEG", astronaut.size)

    [face] = faces
    assert (face.box.x, face.box.y, face.box.width, face.box.height) == (160, 80, 140, 140)
    assert face.landmarks["right_eye"][0] < face.landmarks["left_eye"][0]
    assert face.confidence == pytest.approx(0.97)
    assert len(face.contour) >= 16


def test_a_large_image_is_sent_smaller_and_faces_scaled_back(
    fake: FakeServer, fast_backoff: Backoff
) -> None:
    fake.script(Reply(vision_reply([vision_face(100, 50, 200)])))
    [face] = detector(fake, fast_backoff).detect(Image.new("RGB", (3200, 2400)))
    sent = Image.open(
        io.BytesIO(base64.b64decode(fake.requests[0].json()["requests"][0]["image"]["content"]))
    )
    assert sent.size == (1600, 1200)  # Vision's recommended size for face detection
    assert (face.box.x, face.box.y, face.box.width, face.box.height) == (200, 100, 400, 400)
    assert face.landmarks["right_eye"] == pytest.approx((2 * (200 - 40), 2 * (50 + 76)))


def test_no_face_is_an_empty_list(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(Reply(vision_reply([])))
    assert detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64))) == []


def test_several_faces_come_largest_first(fake: FakeServer, fast_backoff: Backoff) -> None:
    sizes = [40, 120, 80]
    fake.script(Reply(vision_reply([vision_face(100 * i, 10, s) for i, s in enumerate(sizes)])))
    faces = detector(fake, fast_backoff).detect(Image.new("RGB", (400, 200)))
    assert [f.box.width for f in faces] == [120, 80, 40]


def test_per_image_invalid_argument_is_invalid_image(
    fake: FakeServer, fast_backoff: Backoff
) -> None:
    fake.script(Reply(vision_image_error(3, "Bad image data.")))
    with pytest.raises(InvalidImage, match="Bad image data"):
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))
    assert len(fake.requests) == 1


def test_per_image_unavailable_is_retried(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(
        Reply(vision_image_error(14, "try again")), Reply(vision_reply([vision_face(0, 0, 50)]))
    )
    assert len(detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))) == 1
    assert len(fake.requests) == 2


def test_other_per_image_errors_are_upstream_unavailable(
    fake: FakeServer, fast_backoff: Backoff
) -> None:
    fake.script(Reply(vision_image_error(13, "internal")))
    with pytest.raises(UpstreamUnavailable):
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))


@pytest.mark.parametrize(
    "verdict",
    [{"adult": "LIKELY"}, {"violence": "VERY_LIKELY"}, {"racy": "LIKELY"}],
)
def test_safe_search_likely_blocks(
    fake: FakeServer, fast_backoff: Backoff, verdict: dict[str, str]
) -> None:
    fake.script(Reply(vision_reply([vision_face(0, 0, 50)], **verdict)))
    with pytest.raises(ContentBlocked, match=next(iter(verdict))):
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))


def test_safe_search_possible_passes(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(Reply(vision_reply([vision_face(0, 0, 50)], adult="POSSIBLE", racy="POSSIBLE")))
    assert len(detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))) == 1


def test_quota_then_success_retries(fake: FakeServer, fast_backoff: Backoff) -> None:
    quota = Reply(google_error(429, "RESOURCE_EXHAUSTED"), 429)
    fake.script(quota, Reply(vision_reply([vision_face(0, 0, 50)])))
    assert len(detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))) == 1
    assert len(fake.requests) == 2


def test_quota_to_the_end_is_unavailable_with_retry_after(
    fake: FakeServer, fast_backoff: Backoff
) -> None:
    fake.script(Reply(google_error(429, "RESOURCE_EXHAUSTED"), 429, {"Retry-After": "17"}))
    with pytest.raises(UpstreamUnavailable) as caught:
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))
    assert caught.value.retry_after_s == 17
    assert len(fake.requests) == fast_backoff.max_attempts


def test_unavailable_is_retried_then_reported(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(Reply(google_error(503, "UNAVAILABLE"), 503))
    with pytest.raises(UpstreamUnavailable) as caught:
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))
    assert caught.value.retry_after_s is not None
    assert len(fake.requests) == fast_backoff.max_attempts


def test_internal_error_is_not_retried(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(Reply(google_error(500, "INTERNAL"), 500))
    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))
    assert len(fake.requests) == 1


def test_a_slow_answer_is_a_timeout_within_the_deadline(
    fake: FakeServer, fast_backoff: Backoff
) -> None:
    fake.script(Reply(vision_reply([]), delay_s=5.0))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        detector(fake, fast_backoff, deadline_s=0.3).detect(Image.new("RGB", (64, 64)))
    assert time.monotonic() - started < 1.5


def test_malformed_json_is_upstream_unavailable(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(Reply(b'{"responses": [ {"faceAnnot'))
    with pytest.raises(UpstreamUnavailable):
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))


def test_html_error_page_is_upstream_unavailable(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(Reply(b"<html>bad gateway</html>", 502))
    with pytest.raises(UpstreamUnavailable, match="HTTP 502"):
        detector(fake, fast_backoff).detect(Image.new("RGB", (64, 64)))


def test_the_client_is_built_once_on_first_use(fake: FakeServer, fast_backoff: Backoff) -> None:
    fake.script(Reply(vision_reply([])))
    vision = detector(fake, fast_backoff)
    assert vision._client._value is None
    vision.detect(Image.new("RGB", (32, 32)))
    client = vision._client._value
    vision.detect(Image.new("RGB", (32, 32)))
    assert client is not None
    assert vision._client._value is client


def test_an_unreachable_endpoint_is_retried_then_unavailable(fast_backoff: Backoff) -> None:
    closed = FakeServer().start()
    url = closed.url
    closed.stop()  # nothing listens there any more
    vision = VisionDetector(endpoint=url, deadline_s=2.0, backoff=fast_backoff)
    with pytest.raises(UpstreamUnavailable, match="ConnectionError"):
        vision.detect(Image.new("RGB", (32, 32)))
