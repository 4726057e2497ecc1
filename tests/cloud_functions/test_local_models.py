"""The local face models: BlazeFace decoding, the model registry, interpreters per thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from function_testing import REPO_ROOT, load_photo

from avatar.backends.local import blazeface as bf
from avatar.backends.local.detector import LocalDetector
from avatar.backends.local.runtime import ModelRunner
from avatar.backends.local.segmenter import SegmentationMasker
from avatar.config import get_settings
from avatar.errors import ModelsMissing
from avatar.masking import ContourMasker
from avatar.models import MODELS, is_valid, model_path


def test_anchor_counts_match_the_models() -> None:
    assert bf.anchors(bf.SHORT_RANGE).shape == (896, 2)
    assert bf.anchors(bf.FULL_RANGE).shape == (2304, 2)
    assert bf.anchors(bf.SHORT_RANGE)[0] == pytest.approx((0.5 / 16, 0.5 / 16))


def detection(score: float, x: float) -> bf.Detection:
    box = np.array([x, 0.2, x + 0.2, 0.4], dtype=np.float32)
    return bf.Detection(score, box, np.zeros((6, 2), dtype=np.float32) + x)


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces() -> None:
    merged = bf.weighted_nms([detection(0.9, 0.10), detection(0.6, 0.12), detection(0.8, 0.6)])

    assert len(merged) == 2
    assert merged[0].score == pytest.approx(0.9)
    expected_x = (0.9 * 0.10 + 0.6 * 0.12) / 1.5
    assert merged[0].box[0] == pytest.approx(expected_x, abs=1e-6)
    assert merged[1].box[0] == pytest.approx(0.6)


def test_decode_applies_anchors_and_threshold() -> None:
    anchor_xy = bf.anchors(bf.SHORT_RANGE)
    raw_boxes = np.zeros((896, 16), dtype=np.float32)
    raw_boxes[5, :4] = [12.8, 0, 25.6, 25.6]  # +0.1 in x, 0.2 wide and tall (in 128 px units)
    raw_scores = np.full((896, 1), -10.0, dtype=np.float32)
    raw_scores[5] = 3.0

    [found] = bf.decode(bf.SHORT_RANGE, raw_boxes, raw_scores, anchor_xy)

    cx, cy = anchor_xy[5]
    assert found.box == pytest.approx([cx, cy - 0.1, cx + 0.2, cy + 0.1], abs=1e-5)
    assert found.score == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_missing_model_names_make_models(tmp_path: Path) -> None:
    with pytest.raises(ModelsMissing) as caught:
        model_path("face_landmark", tmp_path)
    assert "make models" in caught.value.detail
    assert caught.value.status == 503


def test_detector_without_models_is_a_clear_503(tmp_path: Path) -> None:
    detector = LocalDetector(ModelRunner(tmp_path))
    with pytest.raises(ModelsMissing, match="make models"):
        detector.detect(load_photo("astronaut"))


def test_fetch_models_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import fetch_models

    def no_download(dest: Path) -> Path:
        raise AssertionError("downloaded although every model is present")

    monkeypatch.setattr(fetch_models, "download_wheel", no_download)
    monkeypatch.setattr(
        sys, "argv", ["fetch_models.py", "--model-dir", str(get_settings().model_dir)]
    )
    fetch_models.main()
    assert len(MODELS) == 4


def test_mesh_and_contour_describe_the_face() -> None:
    [face] = LocalDetector(ModelRunner(get_settings().model_dir)).detect(load_photo("astronaut"))

    assert face.mesh is not None
    assert face.mesh.shape == (468, 3)
    assert face.contour.shape == (36, 2)
    x0, y0 = face.contour.min(axis=0)
    x1, y1 = face.contour.max(axis=0)
    assert (face.box.x, face.box.y) == pytest.approx((x0, y0), abs=0.5)
    assert (face.box.x + face.box.width, face.box.y + face.box.height) == pytest.approx(
        (x1, y1), abs=0.5
    )
    assert abs(face.roll_deg) < 10


def test_segmentation_mask_stays_inside_the_oval() -> None:
    runner = ModelRunner(get_settings().model_dir)
    image = load_photo("grace_hopper")
    [face] = LocalDetector(runner).detect(image)

    refined = np.asarray(SegmentationMasker(runner).face_mask(image, face), dtype=np.int16)
    oval = np.asarray(ContourMasker().face_mask(image, face), dtype=np.int16)

    assert refined.shape == (image.height, image.width)
    assert (refined <= oval + 1).all()
    cx, cy = (round(v) for v in face.landmarks["nose_tip"])
    assert refined[cy, cx] == 255
    assert refined.sum() > 0.8 * oval.sum()


def test_interpreters_are_per_thread() -> None:
    runner = ModelRunner(get_settings().model_dir)
    detector = LocalDetector(runner)
    image = load_photo("astronaut")
    expected = detector.detect(image)[0].box
    boxes, interpreters = [], []

    def work() -> None:
        boxes.append(detector.detect(image)[0].box)
        interpreters.append(runner._interpreter("face_landmark"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert boxes == [expected] * 4
    assert len({id(i) for i in interpreters}) == 4


def fake_wheel(path: Path, contents: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in contents.items():
            wheel.writestr(name, data)
    return path


def test_fetch_extracts_pinned_models_from_the_wheel(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import fetch_models

    cached = get_settings().model_dir
    wheel = fake_wheel(
        tmp_path / "mediapipe.whl",
        {m.wheel_path: (cached / m.filename).read_bytes() for m in MODELS.values()},
    )
    target = tmp_path / "models"
    target.mkdir()
    for model in MODELS.values():
        fetch_models.extract(wheel, model, target)

    assert sorted(p.name for p in target.iterdir()) == sorted(m.filename for m in MODELS.values())


def test_fetch_refuses_a_model_with_the_wrong_hash(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import fetch_models

    model = MODELS["face_landmark"]
    wheel = fake_wheel(tmp_path / "mediapipe.whl", {model.wheel_path: b"tampered"})
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        fetch_models.extract(wheel, model, tmp_path)
    assert list(tmp_path.glob("*.tflite")) == []


def test_fetch_downloads_one_fixed_wheel_whatever_python_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip is asked for the cp311 manylinux_2_28 wheel (0.10.21 has none for Python 3.13), the
    models come out with their pins, and a second run downloads nothing."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import fetch_models

    cached = get_settings().model_dir
    commands: list[list[str]] = []

    def fake_pip(command: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        commands.append(command)
        dest = Path(command[command.index("--dest") + 1])
        name = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
        fake_wheel(
            dest / name, {m.wheel_path: (cached / m.filename).read_bytes() for m in MODELS.values()}
        )
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(fetch_models.subprocess, "run", fake_pip)
    target = tmp_path / "models"
    monkeypatch.setattr(sys, "argv", ["fetch_models.py", "--model-dir", str(target)])

    fetch_models.main()
    fetch_models.main()

    [command] = commands
    pinned = " ".join(command)
    assert "mediapipe==0.10.21 " in pinned
    for flag in (
        "--no-deps",
        "--only-binary=:all:",
        "--implementation cp",
        "--python-version 3.11",
        "--abi cp311",
        "--platform manylinux_2_28_x86_64",
    ):
        assert flag in pinned, flag
    assert all(is_valid(m, target) for m in MODELS.values())
