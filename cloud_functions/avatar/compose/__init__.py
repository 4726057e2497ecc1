"""Pure image functions that turn faces into procedurally drawn animal characters.

Image + Face + mask in, Image out: no I/O, no randomness, nothing that depends on which backend
found the face (only the named landmarks, the outline and the mask are used; the `character`
style also reads the eyes' and mouth's openness from the face mesh when there is one).
"""

from avatar.compose.animals import STYLES
from avatar.compose.render import (
    character_outline,
    compose_face,
    compose_faces,
    ear_outlines,
    style_for,
)

__all__ = [
    "STYLES",
    "character_outline",
    "compose_face",
    "compose_faces",
    "ear_outlines",
    "style_for",
]
