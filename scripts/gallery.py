"""Contact sheet of every animal in both styles on the bundled test photographs (`make gallery`).

Usage: python scripts/gallery.py [OUT.png] [--docs docs/gallery.jpg]
OUT (var/gallery.png) holds both styles, `character` above `paint`; the README's JPEG copies are
one per style: the `--docs` path for `character`, and `-paint` added to its name for `paint`.
Faces come from the real local detector and masker (the models must be fetched: `make models`);
compose time per face at a 1600 px working size is printed for each style too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cloud_functions"))  # the function's package `avatar`

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from avatar.backends import Backends, build_backends  # noqa: E402
from avatar.catalogue import ANIMALS, RENDER_STYLES  # noqa: E402
from avatar.compose import character_outline, compose_faces, style_for  # noqa: E402
from avatar.compose.geometry import face_frame  # noqa: E402
from avatar.config import get_settings  # noqa: E402
from avatar.faces import Face  # noqa: E402

TILE = (240, 280)  # one face
LABEL_H = 34
SIDE_W = 130
BACKGROUND = (250, 248, 244)
INK = (40, 40, 40)


def sample_photos() -> list[tuple[str, Image.Image]]:
    """The offline photographs shipped inside scikit-image and matplotlib."""
    import matplotlib.cbook as cbook
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    with Image.open(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))) as im:
        hopper = im.convert("RGB")
    camera = Image.fromarray(data.camera()).convert("RGB")  # type: ignore[no-untyped-call]
    return [("astronaut", astronaut), ("grace hopper", hopper), ("camera", camera)]


def pair_photo(photos: Sequence[tuple[str, Image.Image]]) -> Image.Image:
    """The astronaut and Grace Hopper side by side at similar face sizes: a two-face photo."""
    left = photos[0][1].crop((96, 0, 352, 300)).resize((486, 570), Image.Resampling.LANCZOS)
    right = photos[1][1].crop((80, 20, 450, 470)).resize((468, 570), Image.Resampling.LANCZOS)
    pair = Image.new("RGB", (left.width + right.width, 570))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    return pair


def find_faces(backends: Backends, image: Image.Image) -> tuple[list[Face], list[Image.Image]]:
    """Faces and their masks from the configured detector and masker."""
    faces = backends.detector.detect(image)
    return faces, [backends.masker.face_mask(image, f) for f in faces]


def crop_box(
    image: Image.Image, faces: Sequence[Face], tile: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A box with the tile's aspect ratio around every face's character, kept inside the image."""
    outlines = [character_outline(face_frame(f), style_for("rabbit"), f.contour) for f in faces]
    pts = np.concatenate(outlines)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    aspect = tile[1] / tile[0]
    h = min(max(y1 - y0, (x1 - x0) * aspect) * 1.08, image.height, image.width * aspect)
    w = h / aspect
    left = min(max((x0 + x1) / 2 - w / 2, 0), image.width - w)
    top = min(max((y0 + y1) / 2 - h / 2, 0), image.height - h)
    return round(left), round(top), round(left + w), round(top + h)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


Tiles = dict[str, list[Image.Image]]  # per style: the original, then every animal


def photo_tiles(backends: Backends, image: Image.Image, tile: tuple[int, int]) -> Tiles | None:
    """Per style, the original and every animal, cropped around the faces (found once); None
    when no face is found."""
    faces, masks = find_faces(backends, image)
    if not faces:
        return None
    box = crop_box(image, faces, tile)

    def cut(out: Image.Image) -> Image.Image:
        return out.crop(box).resize(tile, Image.Resampling.LANCZOS)

    original = cut(image)
    return {
        style: [original] + [cut(compose_faces(image, faces, masks, a.id, style)) for a in ANIMALS]
        for style in RENDER_STYLES
    }


def grid(rows: Sequence[tuple[str, list[Image.Image]]], labels: Sequence[str]) -> Image.Image:
    """One row per photo, one column per label, the names along the edges."""
    sheet = Image.new(
        "RGB", (SIDE_W + len(labels) * TILE[0], LABEL_H + len(rows) * TILE[1]), BACKGROUND
    )
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        xy = (SIDE_W + c * TILE[0] + TILE[0] / 2, LABEL_H / 2)
        draw.text(xy, label, fill=INK, font=_font(20), anchor="mm")
    for r, (name, tiles) in enumerate(rows):
        y = LABEL_H + r * TILE[1]
        xy = (SIDE_W / 2, y + TILE[1] / 2)
        text = name.replace(" ", "\n")
        draw.text(xy, text, fill=INK, font=_font(18), anchor="mm", align="center")
        for c, image in enumerate(tiles):
            sheet.paste(image, (SIDE_W + c * TILE[0], y))
    return sheet


def pair_tile(count: int) -> tuple[int, int]:
    """Wide tiles for the two-face photo: two rows of them span the grid's width."""
    per_row = (count + 1) // 2
    return count * TILE[0] // per_row, TILE[1]


def pair_block(name: str, tiles: Sequence[Image.Image], labels: Sequence[str]) -> Image.Image:
    """The two-face photo's tiles in two rows, each labelled in its corner."""
    tile = tiles[0].size
    per_row = (len(tiles) + 1) // 2
    block = Image.new("RGB", (SIDE_W + len(tiles) * TILE[0], 2 * tile[1]), BACKGROUND)
    draw = ImageDraw.Draw(block, "RGBA")
    xy = (SIDE_W / 2, block.height / 2)
    draw.text(xy, name.replace(" ", "\n"), fill=INK, font=_font(18), anchor="mm", align="center")
    for i, (image, label) in enumerate(zip(tiles, labels, strict=True)):
        x, y = SIDE_W + (i % per_row) * tile[0], (i // per_row) * tile[1]
        block.paste(image, (x, y))
        box = draw.textbbox((x + 10, y + 8), label, font=_font(18))
        draw.rounded_rectangle((box[0] - 6, box[1] - 4, box[2] + 6, box[3] + 4), 6, (0, 0, 0, 130))
        draw.text((x + 10, y + 8), label, fill=(255, 255, 255), font=_font(18))
    return block


def stack(*parts: Image.Image) -> Image.Image:
    """Images one above the other on the sheet's background."""
    sheet = Image.new(
        "RGB", (max(p.width for p in parts), sum(p.height for p in parts)), BACKGROUND
    )
    y = 0
    for part in parts:
        sheet.paste(part, (0, y))
        y += part.height
    return sheet


TITLES = {
    "character": "style character (the default): the animal's head drawn in place of the face",
    "paint": "style paint: the animal's fur, ears and nose painted onto the face",
}


def title_band(text: str, width: int) -> Image.Image:
    """A band with a style's name across the sheet."""
    band = Image.new("RGB", (width, 44), BACKGROUND)
    ImageDraw.Draw(band).text((16, 22), text, fill=INK, font=_font(24), anchor="lm")
    return band


def style_sheet(
    rows: Sequence[tuple[str, Tiles]], pair: Tiles | None, labels: Sequence[str], style: str
) -> Image.Image:
    """One style's sheet under its title: every photo's row, then the two-face photo."""
    parts = [grid([(name, tiles[style]) for name, tiles in rows], labels)]
    if pair is not None:
        parts.append(pair_block("two faces", pair[style], labels))
    sheet = stack(*parts)
    return stack(title_band(TITLES.get(style, style), sheet.width), sheet)


def save_docs_copy(sheet: Image.Image, path: Path) -> None:
    """The README's copy: smaller, and a JPEG, to stay well under 600 KB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    docs = sheet.resize((sheet.width * 3 // 4, sheet.height * 3 // 4), Image.Resampling.LANCZOS)
    docs.save(path, quality=80, optimize=True, progressive=True)


def time_compose(backends: Backends, image: Image.Image, style: str, working_px: int = 1600) -> str:
    """Compose time per face for every animal on the image enlarged to the working size."""
    scale = working_px / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    big = image.resize(size, Image.Resampling.BICUBIC)
    faces, masks = find_faces(backends, big)
    times = []
    for round_ in range(6):  # the first round warms up allocators and caches
        for animal in ANIMALS:
            start = time.perf_counter()
            compose_faces(big, faces, masks, animal.id, style)
            if round_:
                times.append((time.perf_counter() - start) * 1000 / max(len(faces), 1))
    eyes = face_frame(faces[0]).unit if faces else 0.0
    return (
        f"{size[0]}x{size[1]}, eyes {eyes:.0f} px apart: median {statistics.median(times):.1f} ms,"
        f" p90 {statistics.quantiles(times, n=10)[-1]:.1f} ms per face"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Writes the contact sheet of both styles (PNG) and the README's JPEG copy of each; prints
    compose timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / "var" / "gallery.png"))
    parser.add_argument("--docs", default=str(ROOT / "docs" / "gallery.jpg"))
    args = parser.parse_args(argv)
    backends = build_backends(get_settings())
    photos = sample_photos()
    labels = ["original", *(a.name.lower() for a in ANIMALS)]
    rows = [(n, t) for n, img in photos if (t := photo_tiles(backends, img, TILE)) is not None]
    pair = photo_tiles(backends, pair_photo(photos), pair_tile(len(labels)))
    count = len(rows) + (pair is not None)
    docs = Path(args.docs)
    sheets = {}
    for style in RENDER_STYLES:
        sheets[style] = style_sheet(rows, pair, labels, style)
        path = docs if style == "character" else docs.with_stem(f"{docs.stem}-{style}")
        save_docs_copy(sheets[style], path)
        print(f"wrote {path}: {len(ANIMALS)} animals on {count} photos, style {style}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stack(*sheets.values()).save(out)
    print(f"wrote {out}: both styles")
    for name, image in photos[:2]:
        for style in RENDER_STYLES:
            print(f"compose at 1600 px, {name}, {style}: {time_compose(backends, image, style)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
