"""Ctrl-C in the middle of a run on worker processes, then the same command again: every input
ends with exactly one line, and nothing half-written is left (`python -m batch`, as a user runs
it, in a process group of its own so that the signal reaches the workers too, as a terminal's
does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_testing import image_bytes, skimage_photo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COUNT = 48


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COUNT selfies big enough (1600x1200) to be interrupted in the middle of."""
    folder = tmp_path_factory.mktemp("many")
    face = skimage_photo("astronaut").crop((0, 0, 512, 384))
    for n in range(COUNT):
        shifted = face.rotate(n % 7 - 3).resize((1600, 1200))
        (folder / f"selfie-{n:03d}.jpg").write_bytes(image_bytes(shifted, "JPEG"))
    return folder


def start(inputs: Path, output: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "batch", "--input", str(inputs), "--output", str(output),
               "--animal", "fox", "--workers", "2"]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def wait_for_lines(manifest: Path, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= count:
            return
        time.sleep(0.02)
    pytest.fail(f"no {count} lines before the job ended: {process.communicate()}")


def lines(manifest: Path) -> list[dict]:
    text = manifest.read_text()
    assert text.endswith("\n"), "the manifest ends with a whole line"
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("presses", [1, 2])
def test_interrupted_then_resumed_gives_every_input_exactly_once(
    many: Path, tmp_path: Path, presses: int
) -> None:
    output = tmp_path / "out"
    process = start(many, output)
    wait_for_lines(output / "manifest.jsonl", 4, process)
    for _ in range(presses):  # once: finish what is in progress; twice: stop at once
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.05)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    assert "interrupted" in out
    assert "run the same command again" in out
    first = lines(output / "manifest.jsonl")
    assert 4 <= len(first) < COUNT
    assert len({line["input"] for line in first}) == len(first)
    for line in first:  # every line's image is whole
        assert Path(line["output"]).stat().st_size > 10_000
    hidden = [p.name for p in output.iterdir() if p.name.startswith(".")]
    assert presses == 2 or not hidden, hidden  # a hard stop may leave a temporary file

    again = start(many, output)
    out, err = again.communicate(timeout=180)

    assert again.returncode == 0, err
    done = lines(output / "manifest.jsonl")
    assert len(done) == COUNT
    assert sorted(line["input"] for line in done) == sorted(str(p) for p in many.iterdir())
    assert all(line["status"] == "succeeded" for line in done)
    assert f"skipped    {len(first)}" in out
