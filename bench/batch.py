"""Batch benchmark: a folder of selfies through `python -m batch` with 1 and 2 workers (issue 13).

Generates --images selfie JPEGs (4:3, 1 MP to 12 MP spread evenly, a fixed seed; the astronaut
photo cropped around its face, now and then mirrored, upscaled, JPEG quality 90) into a temp
folder, then measures images/s of
  * the floor: the same files through the function's whole pipeline (`generate_avatar`: decode,
    detect, mask, compose, encode, store to a local store) in one plain loop in this process,
    the backends warmed first (models loaded, not timed);
  * `python -m batch --animal fox --workers 1` and `--workers 2`, each into a fresh OUTPUT:
    the command's wall time (interpreter start, imports and model loading included) and the
    rate the job prints itself ("batch: done: ... (X images/s)", its clock starts once the
    inputs are listed; model loading is inside it).
Each is measured --runs times, the order alternating, and the medians printed; "ms/image" is the
mean of the pipeline's own per-image total (the manifest's `timings_ms`), which shows the work
per image growing when workers share the cores; "CPU ms/img" is the CPU time of the process
doing the work (this one, or the job with its worker processes) per image, and "cores" that CPU
time over the wall time: how many cores the run kept busy (on a machine busy with other work, a
2-worker run gets fewer than 2). "outside" is the wall time the job's clock does not see
(interpreter start, imports, listing). The load average is printed before and after.
Goals: 2 workers >= 1.8x one worker, and one worker >= 0.9x the plain loop.

    .venv/bin/python bench/batch.py [--images 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "cloud_functions")]

from PIL import Image  # noqa: E402

from avatar import pipeline  # noqa: E402
from avatar.backends import build_backends  # noqa: E402
from avatar.config import Settings  # noqa: E402
from avatar.errors import AvatarError  # noqa: E402
from avatar.inputs import AvatarRequest  # noqa: E402

SEED = 13
ANIMAL = "fox"
MIN_MP, MAX_MP = 1.0, 12.0
FACE = (160, 52, 292, 196)  # the astronaut's face with a margin: every crop keeps it whole
RATE = re.compile(r"batch: done: (\d+) of (\d+) inputs in [\d.]+ s \(([\d.]+) images/s\)")
GOAL_SCALING, GOAL_OVERHEAD = 1.8, 0.9


@dataclass(frozen=True)
class Measure:
    """One timed run: images/s by the wall clock (and by the job's own clock), results."""

    rate: float
    job_rate: float | None
    wall_s: float
    succeeded: int
    ms_per_image: float  # the pipeline's own per-image total (timings_ms), mean
    cpu_s: float  # CPU time of the process(es) doing the work, over the whole run

    @property
    def cores(self) -> float:
        """Cores kept busy on average (CPU time / wall time)."""
        return self.cpu_s / self.wall_s


def sizes(count: int) -> list[tuple[int, int]]:
    """`count` 4:3 sizes from MIN_MP to MAX_MP megapixels, evenly spread."""
    out = []
    for i in range(count):
        mp = MIN_MP + (MAX_MP - MIN_MP) * i / max(count - 1, 1)
        width = round(math.sqrt(mp * 1e6 * 4 / 3) / 4) * 4
        out.append((width, width * 3 // 4))
    return out


def selfie(photo: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A 4:3 crop of the astronaut photo around the face, upscaled to `size`."""
    left_max, top_max, right_min, bottom_min = FACE
    crop_w = rng.randrange(256, photo.width + 1, 4)
    crop_h = crop_w * 3 // 4
    left = rng.randint(max(0, right_min - crop_w), min(left_max, photo.width - crop_w))
    top = rng.randint(max(0, bottom_min - crop_h), min(top_max, photo.height - crop_h))
    image = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image.resize(size, Image.Resampling.BICUBIC)


def generate(folder: Path, count: int) -> list[Path]:
    """Write `count` selfie JPEGs (sizes shuffled over the names); their paths, sorted."""
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    rng = random.Random(SEED)
    chosen = sizes(count)
    rng.shuffle(chosen)
    paths = []
    for i, size in enumerate(chosen):
        buffer = io.BytesIO()
        selfie(photo, size, rng).save(buffer, "JPEG", quality=90)
        path = folder / f"selfie-{i:04d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def request(data: bytes) -> AvatarRequest:
    """A generation of its own (the store creates a result once and never replaces it)."""
    return AvatarRequest(
        animal=ANIMAL, user_id="bench", generation_id=uuid.uuid4().hex, all_faces=False, image=data
    )


def check_faces(paths: list[Path], settings: Settings) -> None:
    """Warm the backends (models loaded) on the smallest and the largest image; each has a face."""
    backends = build_backends(settings)
    for path in (min(paths, key=pixels), max(paths, key=pixels)):
        body = pipeline.generate_avatar(request(path.read_bytes()), backends, settings)
        assert body["faces"], f"{path.name}: no face found"
        print(f"  {path.name} ({pixels(path) / 1e6:.1f} MP): {len(body['faces'])} face(s)")


def pixels(path: Path) -> int:
    with Image.open(path) as image:
        return image.width * image.height


def floor(paths: list[Path], settings: Settings) -> Measure:
    """The function's pipeline over every file in one plain loop (backends already warm)."""
    backends = build_backends(settings)
    succeeded, totals = 0, []
    cpu = time.process_time()
    start = time.perf_counter()
    for path in paths:
        try:
            body = pipeline.generate_avatar(request(path.read_bytes()), backends, settings)
        except AvatarError:
            continue
        succeeded += 1
        totals.append(body["timings_ms"]["total"])
    wall = time.perf_counter() - start
    cpu_s = time.process_time() - cpu
    ms = statistics.fmean(totals or [0.0])
    return Measure(len(paths) / wall, None, wall, succeeded, ms, cpu_s)


def job(source: Path, output: Path, workers: int, count: int, env: dict[str, str]) -> Measure:
    """`python -m batch` over `source` into a fresh `output`, timed from spawn to exit."""
    cmd = [sys.executable, "-m", "batch", "--input", str(source), "--output", str(output),
           "--animal", ANIMAL, "--workers", str(workers)]  # fmt: skip
    cpu = children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu_s = children_cpu_s() - cpu
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    match = RATE.search(done.stdout)
    assert match, f"no summary line in:\n{done.stdout}"
    assert int(match[1]) == count, done.stdout
    lines = [json.loads(text) for text in (output / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == count, f"the manifest has {len(lines)} lines, not {count}"
    ok = [entry for entry in lines if entry["status"] == "succeeded"]
    ms = statistics.fmean([entry["timings_ms"]["total"] for entry in ok] or [0.0])
    shutil.rmtree(output)
    return Measure(count / wall, float(match[3]), wall, len(ok), ms, cpu_s)


def children_cpu_s() -> float:
    """CPU time of the ended children so far, theirs included (the job's worker processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews a core count."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def verdict(value: float, goal: float) -> str:
    return "PASS" if value >= goal else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="selfies to generate (200)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (3)")
    args = parser.parse_args()
    count, runs = args.images, args.runs
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(
        f"CPUs: {os.cpu_count()} (this process may use {affinity or os.cpu_count()}); "
        f"load average {load()} before"
    )

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        source, store = root / "in", root / "store"
        source.mkdir()
        start = time.perf_counter()
        paths = generate(source, count)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"{count} selfies, {MIN_MP:g}-{MAX_MP:g} MP JPEG q90: {megabytes:.0f} MB "
            f"in {time.perf_counter() - start:.1f} s (not measured)"
        )
        settings = Settings(storage_dir=store)
        print("warm-up (models loaded, faces found):")
        check_faces(paths, settings)
        env = {**os.environ, "STORAGE_DIR": str(store), "AVATAR_BACKEND": "local"}

        results: dict[str, list[Measure]] = {"floor": [], "1 worker": [], "2 workers": []}
        order = list(results)
        for run in range(runs):
            for name in order if run % 2 == 0 else order[::-1]:
                if name == "floor":
                    measure = floor(paths, settings)
                else:
                    workers = int(name.split()[0])
                    measure = job(source, root / f"out-{run}-{workers}", workers, count, env)
                results[name].append(measure)
                job_rate = f", job {measure.job_rate:.2f}/s" if measure.job_rate else ""
                print(
                    f"  run {run + 1} {name:<9} {measure.rate:6.2f} images/s{job_rate} "
                    f"({measure.wall_s:.1f} s, {measure.succeeded}/{count} succeeded, "
                    f"{measure.ms_per_image:.0f} ms/image, "
                    f"CPU {measure.cpu_s * 1000 / count:.0f} ms/image, {measure.cores:.2f} cores)"
                )

    print(f"\nmedians of {runs} runs, {count} images, animal {ANIMAL}; load average {load()} after")
    print(
        f"  {'':<10} {'images/s':>9} {'job img/s':>10} {'wall s':>7} {'outside s':>10} "
        f"{'ms/image':>9} {'CPU ms/img':>11} {'cores':>6} {'succeeded':>10}"
    )
    medians = {}
    for name, measures in results.items():
        rate = statistics.median(m.rate for m in measures)
        medians[name] = rate
        wall = statistics.median(m.wall_s for m in measures)
        job_rates = [m.job_rate for m in measures if m.job_rate]
        job_rate = f"{statistics.median(job_rates):10.2f}" if job_rates else f"{'-':>10}"
        outside = [m.wall_s - count / m.job_rate for m in measures if m.job_rate]
        outside_s = f"{statistics.median(outside):10.1f}" if outside else f"{'-':>10}"
        print(
            f"  {name:<10} {rate:9.2f} {job_rate} {wall:7.1f} {outside_s} "
            f"{statistics.median(m.ms_per_image for m in measures):9.0f} "
            f"{statistics.median(m.cpu_s * 1000 / count for m in measures):11.0f} "
            f"{statistics.median(m.cores for m in measures):6.2f} "
            f"{min(m.succeeded for m in measures):>6}/{count}"
        )

    def jobs(name: str) -> float:
        return statistics.median(m.job_rate or 0.0 for m in results[name])

    scaling = medians["2 workers"] / medians["1 worker"]
    overhead = medians["1 worker"] / medians["floor"]
    print("\nsummary (wall-clock images/s; the job's own rate in brackets)")
    print(
        f"  2 workers / 1 worker  {scaling:5.2f}x  (goal >= {GOAL_SCALING}) "
        f"{verdict(scaling, GOAL_SCALING)}  [{jobs('2 workers') / jobs('1 worker'):.2f}x]"
    )
    print(
        f"  1 worker / floor      {overhead:5.2f}x  (goal >= {GOAL_OVERHEAD}) "
        f"{verdict(overhead, GOAL_OVERHEAD)}  [{jobs('1 worker') / medians['floor']:.2f}x]"
    )


if __name__ == "__main__":
    main()
