"""Face-mesh topology: which of the 468 landmark-model points name which facial feature."""

from __future__ import annotations

# MediaPipe's face-oval silhouette, a closed loop from the top of the forehead, clockwise on
# screen (over the subject's left temple first, which is on the image's right).
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288,
    397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
    172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip

# Named landmarks as means of mesh points; "right" is the subject's right (image left).
LANDMARK_POINTS: dict[str, tuple[int, ...]] = {
    "right_eye": (33, 133, 159, 145),
    "left_eye": (263, 362, 386, 374),
    "nose_tip": (1,),
    "mouth_center": (13, 14),
    "mouth_right": (61,),
    "mouth_left": (291,),
    "chin": (152,),
    "forehead": (9,),  # the glabella, like Cloud Vision's FOREHEAD_GLABELLA
    "right_ear": (234,),  # the face outline at ear level, next to the tragion
    "left_ear": (454,),
}

RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
