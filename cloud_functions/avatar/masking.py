"""Face masks from the face outline alone (the gcp path: Cloud Vision gives no segmentation)."""

from __future__ import annotations

from PIL import Image

from avatar.faces import Face
from avatar.imaging import contour_mask

FEATHER_FRACTION = 0.04  # of the face's long side: soft enough to hide the seam, no halo


def feather_px(face: Face) -> float:
    """How soft a face's mask edge is, in pixels, from the face's size."""
    return max(1.0, FEATHER_FRACTION * max(face.box.width, face.box.height))


class ContourMasker:
    """FaceMasker: the face contour filled and feathered."""

    def face_mask(self, image: Image.Image, face: Face) -> Image.Image:
        """A mode "L" mask of the image's size, 255 inside the face outline."""
        return contour_mask(image.size, face.contour, feather_px(face))
