"""One style per animal: colours and the kinds of ears, nose and markings it is drawn with."""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Style:
    """How one animal looks; sizes are in face units (inter-ocular distances)."""

    fur: RGB  # painted over the face
    fur_light: RGB  # muzzle, cheeks, ear fluff
    dark: RGB  # markings and outlines
    inner_ear: RGB
    nose: RGB
    ear: str  # "pointed", "tall", "round", "long", "floppy", "rounded", "fluffy"
    ear_size: float
    nose_kind: str  # "cat", "dog", "bear", "rabbit", "koala"
    markings: tuple[str, ...]  # names in markings.MARKINGS
    whiskers: RGB | None = None
    fur_opacity: float = 0.62
    ear_tip: RGB | None = None
    ear_back: RGB | None = None  # the ear's rim colour when it differs from the fur
    teeth: bool = False
    # The `character` style's eyes: the iris colour, the pupil's kind ("round", "slit", or
    # "none" for beady all-dark eyes) and a light ring that keeps eyes seen on dark fur.
    iris: RGB = (92, 58, 34)
    pupil: str = "round"
    eye_ring: RGB | None = None


STYLES: dict[str, Style] = {
    "cat": Style(
        fur=(226, 142, 62),
        fur_light=(250, 236, 214),
        dark=(92, 52, 26),
        inner_ear=(244, 164, 170),
        nose=(232, 120, 136),
        ear="pointed",
        ear_size=1.0,
        nose_kind="cat",
        markings=("tabby", "muzzle_pads"),
        whiskers=(252, 250, 245),
        iris=(150, 192, 72),
        pupil="slit",
    ),
    "dog": Style(
        fur=(206, 146, 74),
        fur_light=(246, 230, 204),
        dark=(70, 44, 26),
        inner_ear=(140, 90, 54),
        nose=(32, 26, 24),
        ear="floppy",
        ear_size=1.0,
        nose_kind="dog",
        markings=("muzzle_light", "eye_patch"),
        fur_opacity=0.64,
        iris=(104, 64, 34),
    ),
    "fox": Style(
        fur=(226, 110, 36),
        fur_light=(252, 246, 238),
        dark=(40, 24, 18),
        inner_ear=(252, 240, 228),
        nose=(30, 22, 20),
        ear="tall",
        ear_size=1.05,
        nose_kind="cat",
        markings=("fox_cheeks",),
        whiskers=(40, 28, 24),
        fur_opacity=0.68,
        ear_tip=(44, 28, 22),
        iris=(222, 156, 44),
        pupil="slit",
    ),
    "bear": Style(
        fur=(124, 78, 44),
        fur_light=(214, 176, 130),
        dark=(58, 36, 22),
        inner_ear=(96, 60, 38),
        nose=(38, 26, 22),
        ear="round",
        ear_size=0.95,
        nose_kind="bear",
        markings=("muzzle_light",),
        fur_opacity=0.8,
        iris=(72, 44, 26),
    ),
    "rabbit": Style(
        fur=(236, 228, 222),
        fur_light=(255, 252, 250),
        dark=(120, 104, 100),
        inner_ear=(246, 176, 186),
        nose=(236, 136, 150),
        ear="long",
        ear_size=1.0,
        nose_kind="rabbit",
        markings=("muzzle_pads", "blush"),
        whiskers=(150, 136, 132),
        fur_opacity=0.5,
        teeth=True,
        iris=(84, 46, 46),
    ),
    "panda": Style(
        fur=(246, 244, 240),
        fur_light=(255, 255, 255),
        dark=(30, 30, 34),
        inner_ear=(56, 56, 62),
        nose=(30, 30, 34),
        ear="round",
        ear_size=0.9,
        nose_kind="bear",
        markings=("panda_patches",),
        fur_opacity=0.58,
        ear_back=(30, 30, 34),
        iris=(74, 58, 50),
        eye_ring=(92, 92, 100),
    ),
    "tiger": Style(
        fur=(232, 128, 40),
        fur_light=(252, 246, 236),
        dark=(30, 20, 16),
        inner_ear=(252, 240, 228),
        nose=(208, 110, 110),
        ear="rounded",
        ear_size=0.85,
        nose_kind="cat",
        markings=("tiger_stripes", "muzzle_pads", "brow_white"),
        whiskers=(252, 250, 245),
        fur_opacity=0.68,
        ear_back=(40, 28, 22),
        iris=(226, 176, 52),
    ),
    "raccoon": Style(
        fur=(142, 138, 136),
        fur_light=(240, 238, 234),
        dark=(34, 32, 34),
        inner_ear=(70, 64, 64),
        nose=(28, 26, 28),
        ear="rounded",
        ear_size=0.8,
        nose_kind="dog",
        markings=("raccoon_mask", "muzzle_light"),
        whiskers=(250, 250, 250),
        fur_opacity=0.62,
        ear_back=(236, 234, 230),
        iris=(80, 56, 40),
        eye_ring=(88, 84, 86),
    ),
    "mouse": Style(
        fur=(178, 168, 166),
        fur_light=(246, 240, 238),
        dark=(70, 60, 62),
        inner_ear=(244, 178, 186),
        nose=(236, 140, 152),
        ear="round",
        ear_size=1.45,
        nose_kind="rabbit",
        markings=("muzzle_pads", "blush"),
        whiskers=(60, 52, 54),
        fur_opacity=0.55,
        iris=(30, 26, 28),
        pupil="none",
    ),
    "koala": Style(
        fur=(150, 150, 158),
        fur_light=(246, 244, 242),
        dark=(44, 44, 50),
        inner_ear=(244, 242, 240),
        nose=(40, 38, 44),
        ear="fluffy",
        ear_size=1.3,
        nose_kind="koala",
        markings=("muzzle_light",),
        fur_opacity=0.62,
        iris=(58, 46, 40),
    ),
}
