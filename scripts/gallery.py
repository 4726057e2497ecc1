"""Contact sheet of every animal on the bundled test photographs (`make gallery`).

Usage: python scripts/gallery.py [OUT.png] [--docs docs/gallery.jpg]
Faces come from the real local detector and masker (the models must be fetched: `make models`);
compose time per face at a 1600 px working size is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from avatar.backends import Backends, build_backends
from avatar.catalogue import ANIMALS
from avatar.compose import character_outline, compose_faces, style_for
from avatar.compose.geometry import face_frame
from avatar.config import get_settings
from avatar.faces import Face

ROOT = Path(__file__).resolve().parents[1]
TILE = (240, 280)
LABEL_H = 34
SIDE_W = 130


def sample_photos() -> list[tuple[str, Image.Image]]:
    """The offline photographs shipped inside scikit-image and matplotlib, plus a two-face pair."""
    import matplotlib.cbook as cbook
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    with Image.open(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))) as im:
        hopper = im.convert("RGB")
    camera = Image.fromarray(data.camera()).convert("RGB")  # type: ignore[no-untyped-call]
    pair = Image.new("RGB", (1024, 600), (214, 214, 218))
    pair.paste(astronaut, (0, 44))
    pair.paste(hopper, (512, 0))
    return [
        ("astronaut", astronaut),
        ("grace hopper", hopper),
        ("camera", camera),
        ("two faces", pair),
    ]


def find_faces(backends: Backends, image: Image.Image) -> tuple[list[Face], list[Image.Image]]:
    """Faces and their masks from the configured detector and masker."""
    faces = backends.detector.detect(image)
    return faces, [backends.masker.face_mask(image, f) for f in faces]


def crop_box(image: Image.Image, faces: Sequence[Face]) -> tuple[int, int, int, int]:
    """A box with the tile's aspect ratio around every face's character, kept inside the image."""
    outlines = [character_outline(face_frame(f), style_for("rabbit"), f.contour) for f in faces]
    pts = np.concatenate(outlines)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    h = min(
        max(y1 - y0, (x1 - x0) * TILE[1] / TILE[0]) * 1.08,
        image.height,
        image.width * TILE[1] / TILE[0],
    )
    w = h * TILE[0] / TILE[1]
    left = min(max((x0 + x1) / 2 - w / 2, 0), image.width - w)
    top = min(max((y0 + y1) / 2 - h / 2, 0), image.height - h)
    return round(left), round(top), round(left + w), round(top + h)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def contact_sheet(
    rows: Sequence[tuple[str, list[Image.Image]]], labels: Sequence[str]
) -> Image.Image:
    """Tiles in a grid: one row per photo, one column per label, names along the edges."""
    cols = len(labels)
    sheet = Image.new(
        "RGB", (SIDE_W + cols * TILE[0], LABEL_H + len(rows) * TILE[1]), (250, 248, 244)
    )
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text(
            (SIDE_W + c * TILE[0] + TILE[0] / 2, LABEL_H / 2),
            label,
            fill=(40, 40, 40),
            font=_font(20),
            anchor="mm",
        )
    for r, (name, tiles) in enumerate(rows):
        y = LABEL_H + r * TILE[1]
        draw.text(
            (SIDE_W / 2, y + TILE[1] / 2),
            name.replace(" ", "\n"),
            fill=(40, 40, 40),
            font=_font(18),
            anchor="mm",
            align="center",
        )
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (SIDE_W + c * TILE[0], y))
    return sheet


def photo_row(backends: Backends, image: Image.Image) -> list[Image.Image] | None:
    """The original and every animal, cropped around the faces; None when no face is found."""
    faces, masks = find_faces(backends, image)
    if not faces:
        return None
    box = crop_box(image, faces)
    outs = [image] + [compose_faces(image, faces, masks, a.id) for a in ANIMALS]
    return [o.crop(box).resize(TILE, Image.Resampling.LANCZOS) for o in outs]


def time_compose(backends: Backends, image: Image.Image, working_px: int = 1600) -> list[float]:
    """Milliseconds per face to compose each animal on the image enlarged to the working size."""
    scale = working_px / max(image.size)
    big = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
    )
    faces, masks = find_faces(backends, big)
    times = []
    for _ in range(3):
        for animal in ANIMALS:
            start = time.perf_counter()
            compose_faces(big, faces, masks, animal.id)
            times.append((time.perf_counter() - start) * 1000 / max(len(faces), 1))
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """Writes the contact sheet (PNG) and the README's JPEG copy; prints compose timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / "var" / "gallery.png"))
    parser.add_argument("--docs", default=str(ROOT / "docs" / "gallery.jpg"))
    args = parser.parse_args(argv)
    backends = build_backends(get_settings())
    photos = sample_photos()
    rows = [(name, row) for name, img in photos if (row := photo_row(backends, img)) is not None]
    sheet = contact_sheet(rows, ["original", *(a.name.lower() for a in ANIMALS)])
    for path in (Path(args.out), Path(args.docs)):
        path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    sheet.save(args.docs, quality=82, optimize=True, progressive=True)
    times = [t for _, img in photos[:2] for t in time_compose(backends, img)]
    print(f"wrote {args.out} and {args.docs} ({len(rows)} photos x {len(ANIMALS)} animals)")
    print(
        f"compose per face at 1600 px: median {statistics.median(times):.1f} ms,"
        f" max {max(times):.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
