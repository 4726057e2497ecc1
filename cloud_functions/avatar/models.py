"""The local model files: names, where they sit in the mediapipe wheel, sha256 pins.

The files are Apache-2.0 `.tflite` models bundled in `mediapipe==0.10.21`; `make models`
(scripts/fetch_models.py) extracts them into `settings.model_dir`. Nothing downloads at run time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import ModelsMissing

MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
FETCH_COMMAND = "make models"


@dataclass(frozen=True)
class ModelFile:
    name: str
    wheel_path: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name}.tflite"


MODELS: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            "face_detection_short_range",
            "mediapipe/modules/face_detection/face_detection_short_range.tflite",
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        ),
        ModelFile(
            "face_detection_full_range_sparse",
            "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
            "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
        ),
        ModelFile(
            "face_landmark",
            "mediapipe/modules/face_landmark/face_landmark.tflite",
            "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        ),
        ModelFile(
            "selfie_segmentation",
            "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
            "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        ),
    )
}


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_valid(model: ModelFile, model_dir: Path) -> bool:
    """Whether the model file is present in `model_dir` with the pinned hash."""
    path = model_dir / model.filename
    return path.is_file() and sha256_of(path) == model.sha256


def model_path(name: str, model_dir: Path) -> Path:
    """The path of a fetched model file; ModelsMissing (naming `make models`) if it is absent."""
    path = model_dir / MODELS[name].filename
    if not path.is_file():
        msg = f"local model {path.name} not found in {model_dir}: run `{FETCH_COMMAND}` to fetch it"
        raise ModelsMissing(msg)
    return path
