"""Thin upload path: `api.images.prepare` against the old decode/re-encode path, same process.

    .venv/bin/python bench/strip.py

Inputs: a 4032x3024 ~3 MB phone-like JPEG (quality 90, EXIF with GPS, orientation 6), a 640x480
JPEG, a 2000x1500 PNG and a 2000x1500 WebP. Per input, the median and p90 of RUNS calls of each.
The baseline is the old path: Pillow decode (JPEG: `draft` to at most 1600 px), `exif_transpose`,
shrink by a whole factor to at most 1600 px, re-encode as JPEG quality 90.
Goal: the 12 MP JPEG at <= 3 ms median; a small photo in tens of microseconds.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from api.images import prepare

RUNS = 50
BASELINE_RUNS = 15  # the old path is ~50x slower: fewer runs keep the bench to a few seconds
MAX_SIDE_PX = 1600
MAX_PIXELS = 50_000_000


def photo(size: tuple[int, int], noise: float) -> Image.Image:
    """The astronaut upscaled, with sensor-like noise so the JPEG is as large as a phone's."""
    from skimage import data

    astronaut = data.astronaut()  # type: ignore[no-untyped-call]
    upscaled = Image.fromarray(astronaut).resize(size, Image.Resampling.BICUBIC)
    rng = np.random.default_rng(0)
    grain = rng.standard_normal((size[1], size[0], 3), dtype=np.float32) * noise
    pixels = np.asarray(upscaled, np.float32) + grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def phone_exif() -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = 6
    tags[0x010F] = "BenchPhone"
    tags[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 7.0)}
    return tags


def encoded(image: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def phone_jpeg() -> bytes:
    """A 4032x3024 phone photo of about 3 MB: JPEG quality 90, EXIF with GPS, orientation 6."""
    return encoded(photo((4032, 3024), noise=7.0), "JPEG", quality=90, exif=phone_exif())


def draft_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size for JPEG draft: the largest DCT scale (1/1..1/8) that fits MAX_SIDE_PX."""
    scale = next((s for s in (1, 2, 4) if -(-max(size) // s) <= MAX_SIDE_PX), 8)
    return max(1, size[0] // scale), max(1, size[1] // scale)


def baseline(data: bytes) -> bytes:
    """The old path: decode (drafted), orient, shrink, re-encode JPEG quality 90."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft("RGB", draft_size(image.size))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        factor = -(-max(image.size) // MAX_SIDE_PX)
        shrunk = image.reduce(factor) if factor > 1 else image
        return encoded(shrunk.convert("RGB"), "JPEG", quality=90)


def thin(data: bytes) -> bytes:
    return prepare(data, max_pixels=MAX_PIXELS, heic_max_side_px=MAX_SIDE_PX).data


def timings_ms(function: Callable[[bytes], bytes], data: bytes, runs: int) -> tuple[float, float]:
    """Median and p90 of `runs` calls, in milliseconds."""
    function(data)  # warm: imports, caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function(data)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), statistics.quantiles(times, n=10)[-1]


def inputs() -> dict[str, bytes]:
    small = photo((640, 480), noise=3.0)
    medium = photo((2000, 1500), noise=3.0)
    exif = phone_exif()
    return {
        "JPEG 4032x3024 q90": phone_jpeg(),
        "JPEG 640x480 q90": encoded(small, "JPEG", quality=90, exif=exif),
        "PNG 2000x1500": encoded(medium, "PNG", exif=exif, compress_level=1),
        "WebP 2000x1500 q80": encoded(medium, "WEBP", quality=80, exif=exif),
    }


def main() -> None:
    print(
        "prepare (thin path) against the old decode/re-encode path,"
        f" {RUNS} and {BASELINE_RUNS} runs\n"
    )
    header = f"{'input':<20} {'size':>9}  {'thin med/p90 ms':>17}  {'old med/p90 ms':>16}  ratio"
    print(header)
    for name, data in inputs().items():
        thin_median, thin_p90 = timings_ms(thin, data, RUNS)
        old_median, old_p90 = timings_ms(baseline, data, BASELINE_RUNS)
        print(
            f"{name:<20} {len(data) / 1e6:>7.2f}MB  {thin_median:>7.3f} / {thin_p90:>7.3f}"
            f"  {old_median:>7.1f} / {old_p90:>6.1f}  {old_median / thin_median:>6.0f}x"
        )


if __name__ == "__main__":
    main()
