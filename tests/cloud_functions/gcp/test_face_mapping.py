"""Cloud Vision's viewer-relative landmarks become the Face model's subject-relative ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from avatar.backends.gcp.face_mapping import face_from_vision, landmark_name
from avatar.faces import REQUIRED_LANDMARKS


@pytest.mark.parametrize(
    ("vision", "ours"),
    [
        ("LEFT_EYE", "right_eye"),
        ("RIGHT_EYE", "left_eye"),
        ("MOUTH_LEFT", "mouth_right"),
        ("MOUTH_RIGHT", "mouth_left"),
        ("LEFT_EAR_TRAGION", "right_ear"),
        ("RIGHT_EAR_TRAGION", "left_ear"),
        ("CHIN_GNATHION", "chin"),
        ("FOREHEAD_GLABELLA", "forehead"),
        ("NOSE_TIP", "nose_tip"),
        ("LEFT_OF_RIGHT_EYEBROW", "right_of_left_eyebrow"),
        ("CHIN_LEFT_GONION", "chin_right_gonion"),
    ],
)
def test_landmark_names_are_swapped_to_the_subjects_side(vision: str, ours: str) -> None:
    assert landmark_name(vision) == ours


def frontal(cx: float = 200, top: float = 100, s: float = 100) -> dict[str, tuple[float, float]]:
    """Vision landmarks of an upright face: LEFT_* on the image's left, as Vision reports."""
    return {
        "LEFT_EYE": (cx - 0.2 * s, top + 0.38 * s),
        "RIGHT_EYE": (cx + 0.2 * s, top + 0.38 * s),
        "NOSE_TIP": (cx, top + 0.58 * s),
        "MOUTH_CENTER": (cx, top + 0.75 * s),
        "MOUTH_LEFT": (cx - 0.15 * s, top + 0.75 * s),
        "MOUTH_RIGHT": (cx + 0.15 * s, top + 0.75 * s),
        "CHIN_GNATHION": (cx, top + 0.98 * s),
        "FOREHEAD_GLABELLA": (cx, top + 0.28 * s),
        "LEFT_EAR_TRAGION": (cx - 0.48 * s, top + 0.5 * s),
        "RIGHT_EAR_TRAGION": (cx + 0.48 * s, top + 0.5 * s),
    }


BOX = [(150.0, 100.0), (250.0, 100.0), (250.0, 200.0), (150.0, 200.0)]


def test_frontal_face_maps_box_landmarks_and_confidence() -> None:
    face = face_from_vision(BOX, frontal(), roll_angle=0.0, confidence=0.93)
    assert (face.box.x, face.box.y, face.box.width, face.box.height) == (150, 100, 100, 100)
    assert set(REQUIRED_LANDMARKS) <= set(face.landmarks)
    # The subject's right eye is on the image's left in an unmirrored frontal photo.
    assert face.landmarks["right_eye"][0] < face.landmarks["left_eye"][0]
    assert face.landmarks["mouth_right"][0] < face.landmarks["mouth_left"][0]
    assert face.landmarks["right_ear"][0] < face.landmarks["left_ear"][0]
    assert face.confidence == pytest.approx(0.93)
    assert face.roll_deg == pytest.approx(0.0)
    assert face.mesh is None


def rotate(points: dict[str, tuple[float, float]], deg: float, about: tuple[float, float]):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {
        k: (about[0] + (x - about[0]) * c - (y - about[1]) * s,
            about[1] + (x - about[0]) * s + (y - about[1]) * c)
        for k, (x, y) in points.items()
    }  # fmt: skip


def test_roll_follows_the_eye_line_clockwise_on_screen() -> None:
    # Turned 20 degrees clockwise on screen (y points down): the subject's left eye drops.
    face = face_from_vision(BOX, rotate(frontal(), 20, (200, 150)), roll_angle=-99, confidence=1)
    assert face.roll_deg == pytest.approx(20.0, abs=1e-6)
    assert face.landmarks["left_eye"][1] > face.landmarks["right_eye"][1]


def test_roll_angle_stands_in_when_an_eye_is_missing() -> None:
    marks = frontal()
    del marks["RIGHT_EYE"]
    face = face_from_vision(BOX, marks, roll_angle=7.5, confidence=1)
    assert face.roll_deg == 7.5
    assert "left_eye" in face.landmarks  # estimated from the box


def contour_mask(contour: np.ndarray, size: tuple[int, int] = (400, 400)) -> np.ndarray:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in contour.tolist()], fill=255)
    return np.asarray(mask) > 0


def signed_area(contour: np.ndarray) -> float:
    x, y = contour[:, 0], contour[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) / 2)


@pytest.mark.parametrize("roll", [0.0, 25.0, -40.0])
def test_contour_is_a_clockwise_outline_around_eyes_mouth_and_chin(roll: float) -> None:
    marks = rotate(frontal(), roll, (200, 150))
    face = face_from_vision(BOX, marks, roll_angle=0, confidence=1)
    assert face.contour.shape[1] == 2
    assert face.contour.dtype == np.float32
    # With y pointing down, a positive shoelace area is clockwise on screen.
    assert signed_area(face.contour) > 0
    inside = contour_mask(face.contour)
    for name in ("right_eye", "left_eye", "nose_tip", "mouth_center", "forehead"):
        x, y = face.landmarks[name]
        assert inside[round(y), round(x)], name
    far_corner = (40, 40)
    assert not inside[far_corner]
    # Not wider than ear to ear, and it reaches down to the chin.
    chin_x, chin_y = face.landmarks["chin"]
    assert inside[round(chin_y - 3), round(chin_x)]
