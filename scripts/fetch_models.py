"""Fetch the four local .tflite models from the mediapipe wheel on PyPI (run by `make models`).

Downloads one fixed wheel of `mediapipe==0.10.21` (CPython 3.11, manylinux_2_28_x86_64, whatever
interpreter runs this) with `pip download --no-deps` (never installs it), extracts the
model files, checks their sha256 pins and writes them to the model cache. Idempotent: does
nothing when every model is already present with the right hash.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cloud_functions"))

from avatar.config import get_settings
from avatar.models import MEDIAPIPE_WHEEL, MODELS, ModelFile, is_valid, sha256_of

# The .tflite files are the same in every wheel of the release, so always fetch one fixed wheel
# (mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl), whatever Python or OS runs this:
# 0.10.21 has no wheel for Python 3.13 or for manylinux_2_17, and pip would otherwise look for
# one matching the running interpreter.
WHEEL_TARGET = (
    "--only-binary=:all:",
    "--implementation", "cp",
    "--python-version", "3.11",
    "--abi", "cp311",
    "--platform", "manylinux_2_28_x86_64",
)  # fmt: skip


def download_command(dest: Path) -> list[str]:
    """The `pip download` of the one pinned mediapipe wheel into `dest` (no dependencies)."""
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", MEDIAPIPE_WHEEL]
    return [*pip, *WHEEL_TARGET, "--dest", str(dest)]


def download_wheel(dest: Path) -> Path:
    """`pip download` the pinned mediapipe wheel into `dest` and return its path."""
    if subprocess.run(download_command(dest), check=False).returncode != 0:
        sys.exit(f"could not download {MEDIAPIPE_WHEEL} from PyPI (is the network up?)")
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if not wheels:
        sys.exit(f"pip download produced no mediapipe wheel in {dest}")
    return wheels[0]


def extract(wheel: Path, model: ModelFile, model_dir: Path) -> None:
    """Copy one model out of the wheel, verify its pin, then move it into place atomically."""
    data = zipfile.ZipFile(wheel).read(model.wheel_path)
    tmp = model_dir / f".{model.filename}.tmp"
    tmp.write_bytes(data)
    if sha256_of(tmp) != model.sha256:
        tmp.unlink()
        sys.exit(f"sha256 mismatch for {model.wheel_path}: refusing to install it")
    os.replace(tmp, model_dir / model.filename)


def main() -> None:
    """Fetch whatever models are missing or corrupt."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=get_settings().model_dir)
    model_dir: Path = parser.parse_args().model_dir
    missing = [m for m in MODELS.values() if not is_valid(m, model_dir)]
    if not missing:
        print(f"models: all {len(MODELS)} present in {model_dir}")
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp))
        for model in missing:
            extract(wheel, model, model_dir)
            print(f"models: {model.filename} ok")


if __name__ == "__main__":
    main()
