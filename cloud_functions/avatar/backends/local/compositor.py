"""The `local` compose stage: procedural animal characters drawn from the landmarks, offline."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from avatar.catalogue import DEFAULT_STYLE
from avatar.compose import compose_faces
from avatar.faces import Face


class LocalCompositor:
    """Draws the animal over every given face; pixels away from the faces stay unchanged."""

    name = "local"
    # A pack's animals one after another: drawing and JPEG encoding hold the GIL, so threads
    # gained nothing on 2 cores (bench/pipeline.py measures both).
    concurrent_animals: int | None = 1

    def compose(
        self,
        image: Image.Image,
        faces: Sequence[Face],
        masks: Sequence[Image.Image],
        animal: str,
        style: str = DEFAULT_STYLE,
    ) -> Image.Image:
        """The image with each face turned into `animal`, drawn in `style`; InvalidRequest for
        an unknown animal."""
        return compose_faces(image, faces, masks, animal, style=style)
