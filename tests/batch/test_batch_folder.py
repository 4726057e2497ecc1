"""The batch job over a local folder: the manifest's lines and images, reruns, retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_testing import BROKEN, FACES, INPUTS, NO_FACE, NOT_AN_IMAGE, RunBatch
from PIL import Image

from batch.manifest import MANIFEST
from tests.compositor_recording import record_drawn

ANIMALS = ("fox", "panda")
EXPECTED_ERRORS = {
    NO_FACE: "no_face_detected",
    BROKEN: "invalid_image",
    NOT_AN_IMAGE: "unsupported_image",
}


def read_lines(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / MANIFEST).read_text().splitlines()]


def by_key(lines: list[dict]) -> dict[tuple[str, str], dict]:
    return {(line["input"], line["animal"]): line for line in lines}


def test_a_folder_gives_one_line_per_input_and_animal(
    run_batch: RunBatch, inputs: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    run = run_batch("--input", str(inputs), "--output", str(output), "--animal", "fox,panda",
                    "--workers", "1")  # fmt: skip
    assert run.code == 0, run.err

    lines = read_lines(output)
    assert len(lines) == len(INPUTS) * len(ANIMALS)  # .DS_Store is not an input
    assert set(by_key(lines)) == {(f"{inputs}/{name}", a) for name in INPUTS for a in ANIMALS}
    for line in lines:
        assert set(line) == {
            "input", "animal", "style", "status", "output", "error", "faces", "timings_ms"
        }  # fmt: skip
        assert line["style"] == "character"  # the default
        name = line["input"].removeprefix(f"{inputs}/")
        if name in FACES:
            assert line["status"] == "succeeded", line
            assert line["error"] is None
            assert len(line["faces"]) == 1
            assert set(line["faces"][0]) >= {"box", "landmarks"}
            # An RGB PNG in gives a JPEG out (PNG only for images with transparency).
            assert line["output"] == f"{output}/{name}.{line['animal']}.jpg"
            with Image.open(line["output"]) as image:
                assert image.format == "JPEG"
                assert image.size[0] > 0
                assert "exif" not in image.info
            assert line["timings_ms"]["compose"] > 0
        else:
            assert line["status"] == "failed", line
            assert line["output"] is None
            assert line["error"]["code"] == EXPECTED_ERRORS[name], line
            assert line["error"]["detail"]
            assert line["faces"] == ([] if name == NO_FACE else None)

    written = {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()}
    expected = {f"{name}.{animal}.jpg" for name in FACES for animal in ANIMALS}
    assert written == expected | {MANIFEST}  # nothing half-written or temporary is left

    assert "succeeded  4" in run.out
    assert "failed     6" in run.out
    assert "no_face_detected       2" in run.out
    assert "images/s" in run.out
    assert f"{len(INPUTS)}/{len(INPUTS)} inputs" in run.err  # the plain progress line


def test_a_rerun_does_nothing(run_batch: RunBatch, inputs: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    argv = ("--input", str(inputs), "--output", str(output), "--animal", "cat", "--workers", "1")
    assert run_batch(*argv).code == 0
    manifest = (output / MANIFEST).read_bytes()
    images = {p: p.stat().st_mtime_ns for p in output.rglob("*.jpg")}

    again = run_batch(*argv)

    assert again.code == 0
    assert (output / MANIFEST).read_bytes() == manifest
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*.jpg")} == images
    assert "0 of 0 inputs" in again.out
    assert f"skipped    {len(INPUTS)}" in again.out


def test_new_animals_and_retried_failures_add_lines(
    run_batch: RunBatch, inputs: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    base = ("--input", str(inputs), "--output", str(output), "--workers", "1")
    run_batch(*base, "--animal", "cat")

    more = run_batch(*base, "--animal", "cat,dog")  # only dog is new
    assert more.code == 0
    lines = read_lines(output)
    assert len(lines) == 2 * len(INPUTS)
    assert len(by_key(lines)) == 2 * len(INPUTS)

    retried = run_batch(*base, "--animal", "cat,dog", "--retry-failed")
    assert retried.code == 0
    failures = len(INPUTS) - len(FACES)
    assert f"{failures} of {failures} inputs" in retried.out  # only the failed inputs again
    lines = read_lines(output)
    assert len(lines) == 2 * len(INPUTS) + 2 * failures  # appended, never rewritten
    assert len(by_key(lines)) == 2 * len(INPUTS)


def test_a_torn_last_line_is_cut_off_and_its_input_done_again(
    run_batch: RunBatch, inputs: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    argv = ("--input", str(inputs), "--output", str(output), "--animal", "fox", "--workers", "1")
    run_batch(*argv)
    whole = (output / MANIFEST).read_bytes().splitlines(keepends=True)
    torn = b"".join(whole[:-1]) + whole[-1][:25]  # power lost in the middle of the last line
    (output / MANIFEST).write_bytes(torn)

    again = run_batch(*argv)

    assert again.code == 0
    assert "1 of 1 inputs" in again.out
    lines = read_lines(output)  # every line parses: the torn one was cut off
    assert len(lines) == len(INPUTS) == len(by_key(lines))


def test_output_inside_input_is_not_read_as_input(run_batch: RunBatch, inputs: Path) -> None:
    output = inputs / "results"
    argv = ("--input", str(inputs), "--output", str(output), "--animal", "fox", "--workers", "1")
    assert run_batch(*argv).code == 0
    again = run_batch(*argv)
    assert "0 of 0 inputs" in again.out  # its own results are not new inputs


def test_several_faces_with_faces_all(run_batch: RunBatch, tmp_path: Path) -> None:
    from batch_testing import image_bytes, skimage_photo

    face = skimage_photo("astronaut").crop((96, 0, 352, 256))
    pair = Image.new("RGB", (512, 256))
    pair.paste(face, (0, 0))
    pair.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (256, 0))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pair.jpg").write_bytes(image_bytes(pair, "JPEG"))

    run = run_batch("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                    "--animal", "bear", "--faces", "all", "--workers", "1")  # fmt: skip

    assert run.code == 0
    [line] = read_lines(tmp_path / "out")
    assert line["status"] == "succeeded"
    assert len(line["faces"]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--animal", "zebra"), "unknown animal 'zebra'"),
        (("--animal", "fox,fox"), "names 'fox' twice"),
        (("--animal", "fox", "--workers", "0"), "at least 1"),
        (("--animal", "fox", "--user-id", "42"), "not a user id"),
        (("--animal", "fox", "--function-url", "ftp://x"), "not an http(s) URL"),
        (("--animal", "fox", "--style", "watercolour"), "invalid choice: 'watercolour'"),
        ((), "--input and --animal are needed"),
    ],
)
def test_usage_errors_exit_1_with_a_message(
    run_batch: RunBatch, inputs: Path, tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    run = run_batch("--input", str(inputs), "--output", str(tmp_path / "out"), *argv)
    assert run.code == 1
    assert message in run.err
    assert not (tmp_path / "out").exists()


def test_the_style_asked_for_is_drawn_and_recorded(
    run_batch: RunBatch, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = record_drawn(monkeypatch)
    output = tmp_path / "out"
    run = run_batch("--input", str(inputs), "--output", str(output), "--animal", "fox,panda",
                    "--style", "Paint", "--workers", "1")  # fmt: skip
    assert run.code == 0, run.err

    lines = read_lines(output)
    assert {line["style"] for line in lines} == {"paint"}
    assert set(drawn) == {("fox", "paint"), ("panda", "paint")}
    assert len(drawn) == len(FACES) * len(ANIMALS)


def test_a_rerun_in_another_style_is_refused_not_skipped(
    run_batch: RunBatch, inputs: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    first = run_batch("--input", str(inputs), "--output", str(output), "--animal", "fox",
                      "--style", "paint", "--workers", "1")  # fmt: skip
    assert first.code == 0, first.err
    before = read_lines(output)

    other = run_batch("--input", str(inputs), "--output", str(output), "--animal", "fox",
                      "--workers", "1")  # fmt: skip

    assert other.code == 1
    assert "drawn in style paint" in other.err
    assert "--style paint" in other.err
    assert read_lines(output) == before
    again = run_batch("--input", str(inputs), "--output", str(output), "--animal", "fox",
                      "--style", "paint", "--workers", "1")  # fmt: skip
    assert again.code == 0, again.err


def test_configuration_errors_exit_1(run_batch: RunBatch, inputs: Path, tmp_path: Path) -> None:
    missing = run_batch("--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"),
                        "--animal", "fox")  # fmt: skip
    assert missing.code == 1
    assert "is not a folder" in missing.err

    same = run_batch("--input", str(inputs), "--output", str(inputs), "--animal", "fox")
    assert same.code == 1
    assert "OUTPUT must not be INPUT" in same.err


def test_an_unreadable_output_stops_the_job(
    run_batch: RunBatch, inputs: Path, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output folder should be")
    run = run_batch("--input", str(inputs), "--output", str(blocked / "out"), "--animal", "fox",
                    "--workers", "1")  # fmt: skip
    assert run.code == 1
    assert "batch: error: cannot" in run.err
    assert "blocked/out" in run.err


@pytest.mark.parametrize(
    ("limit", "value", "unit"),
    [("MAX_REQUEST_BYTES", "20000", "bytes"), ("MAX_PIXELS", "100000", "pixels")],
    ids=["bytes", "pixels"],
)
def test_too_large_images_are_lines_with_the_functions_code(
    run_batch: RunBatch,
    inputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
    value: str,
    unit: str,
) -> None:
    monkeypatch.setenv(limit, value)  # the function's own limits, from its settings
    output = tmp_path / "out"
    run = run_batch("--input", str(inputs), "--output", str(output), "--animal", "fox",
                    "--workers", "1")  # fmt: skip

    assert run.code == 0
    line = by_key(read_lines(output))[(f"{inputs}/astronaut.jpg", "fox")]  # 512x512, 30+ kB
    assert line["status"] == "failed"
    assert line["error"]["code"] == "image_too_large"
    assert unit in line["error"]["detail"]
