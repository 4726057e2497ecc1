"""Helpers of the batch job's tests: the inputs, and the command line run in this process."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from batch.cli import main

FACES = ("astronaut.jpg", "people/portrait.png")  # one face each
NO_FACE = "people/coffee.jpg"
BROKEN = "broken.jpg"  # JPEG magic bytes, then nothing an image is made of
NOT_AN_IMAGE = "notes.txt"
INPUTS = (*FACES, NO_FACE, BROKEN, NOT_AN_IMAGE)
BUCKET = "batch-test"  # the storage emulator's


def skimage_photo(name: str) -> Image.Image:
    """A photo that ships with scikit-image (no download)."""
    from skimage import data

    return Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")


def image_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def make_photos() -> dict[str, bytes]:
    """The inputs, by name relative to INPUT."""
    portrait = skimage_photo("astronaut").crop((96, 0, 352, 256))
    return {
        "astronaut.jpg": image_bytes(skimage_photo("astronaut"), "JPEG"),
        "people/portrait.png": image_bytes(portrait, "PNG"),
        NO_FACE: image_bytes(skimage_photo("coffee"), "JPEG"),
        BROKEN: b"\xff\xd8\xff\xe0" + b"\x00" * 64,
        NOT_AN_IMAGE: b"a note someone left in the drop folder\n",
    }


def write_inputs(folder: Path, photos: dict[str, bytes]) -> Path:
    for name, data in photos.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (folder / ".DS_Store").write_bytes(b"hidden: never an input")
    return folder


@dataclass
class Run:
    code: int
    out: str
    err: str


RunBatch = Callable[..., Run]


def run_batch(*argv: str) -> Run:
    """The command line, in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue())
