"""gcp path overhead: time spent in our own code per request when the Google fakes answer at once.

A 12 MP selfie goes through the real pipeline with the gcp backends (real google-cloud-vision,
aiplatform_v1 and google-cloud-storage clients over REST) against local fakes that answer
instantly with canned bodies, served from a separate process. The gcp adapters' calls
(detect, compose, put, signed_url) are timed, wall clock and the request thread's own CPU
time. Printed, median and p90:
  * gcp adapters, wall: what a request spends in them, the fakes' round trips included;
  * baseline: the same HTTP exchanges (identical request bodies) replayed with a bare
    requests.Session against the same fakes, i.e. the fakes' round trips alone;
  * adapters' thread CPU: our code's own time, without the fakes or the scheduler's waits;
    the goal is a median <= 40 ms;
  * adapters' wall - round trips: the same seen from the clock, load included;
  * the rest of the request (decode, mask, encode), which the local path shares.
Then the import time of the gcp client libraries against the local path's, in fresh processes.
The machine's load average is printed too: other work on it slows every figure alike.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cloud_functions")]

import requests  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from PIL import Image  # noqa: E402

from avatar import pipeline  # noqa: E402
from avatar.backends import Backends, build_backends  # noqa: E402
from avatar.config import Settings  # noqa: E402
from avatar.inputs import AvatarRequest  # noqa: E402
from tests.cloud_functions.gcp.fakes import (  # noqa: E402
    FakeServer,
    Recorded,
    Reply,
    vertex_image_reply,
    vision_face,
    vision_reply,
)

RUNS = 30
WARMUP = 3
SIZE = (4000, 3000)
SCALE = 1600 / 512  # astronaut pixels -> working-image pixels (the 12 MP image shrinks to 1600)
BUCKET = "bench-bucket"
GOAL_MS = 40.0


def selfie_12mp_jpeg() -> bytes:
    """The astronaut photo cropped to 4:3 and upscaled to 4000x3000 (as bench/pipeline.py)."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).crop((0, 0, 512, 384))
    buffer = io.BytesIO()
    photo.resize(SIZE, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def model_answer() -> dict[str, Any]:
    """What the model sends back as asked (a 1024x1024 JPEG), generated once up front."""
    from skimage import data

    art = Image.fromarray(data.chelsea()).resize((1024, 1024), Image.Resampling.BILINEAR)
    return vertex_image_reply(art, fmt="JPEG")


GCS_OBJECT = {"bucket": BUCKET, "name": "avatars/bench/x.jpg", "generation": "1"}


def canned(reply: Reply, last: dict[str, Recorded]) -> Any:
    """A fake's handler: the same instant reply every time; GET /__last__ shows the last request
    (the baseline replays exactly what the clients sent)."""

    def handle(request: Recorded) -> Reply:
        if request.path == "/__last__":
            sent = last["request"]
            return Reply({"path": sent.path, "query": sent.query, "body": sent.body.hex(),
                          "content_type": sent.headers.get("content-type", "")})  # fmt: skip
        if request.method == "POST":
            last["request"] = request
        return reply

    return handle


def serve_fakes() -> None:
    """`--serve-fakes`: Vision, Vertex and Cloud Storage fakes answering at once with canned
    bodies, in this separate process so they take no CPU or GIL from the measured one."""
    face = vision_face(171 * SCALE, 61 * SCALE, 110 * SCALE)
    replies = {
        "vision": Reply(json.dumps(vision_reply([face])).encode()),
        "vertex": Reply(json.dumps(model_answer()).encode()),
        "gcs": Reply(json.dumps(GCS_OBJECT).encode()),
    }
    fakes = {name: FakeServer(canned(reply, {})).start() for name, reply in replies.items()}
    print(json.dumps({name: fake.url for name, fake in fakes.items()}), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    for fake in fakes.values():
        fake.stop()


def signing_key_file(folder: Path) -> Path:
    """Application Default Credentials with a throwaway key, so URLs are signed locally."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {"type": "service_account", "project_id": "bench", "private_key_id": "k",
            "private_key": pem, "client_email": "bench@bench.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}  # fmt: skip
    path = folder / "sa.json"
    path.write_text(json.dumps(info))
    return path


class Timed:
    """An adapter whose method calls add their wall and thread-CPU milliseconds to `tally`."""

    def __init__(self, inner: Any, tally: dict[str, float]) -> None:
        self._inner, self._tally = inner, tally

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return attr(*args, **kwargs)
            finally:
                self._tally["wall"] += (time.perf_counter() - wall) * 1000
                self._tally["cpu"] += (time.thread_time() - cpu) * 1000

        return timed


def run_pipeline(data: bytes, urls: dict[str, str]) -> list[dict[str, float]]:
    """Per request: the pipeline's total and the gcp adapters' wall and CPU milliseconds."""
    settings = Settings(
        avatar_backend="gcp", gcp_project="bench", gcs_bucket=BUCKET, compose_fallback="none",
        vision_api_endpoint=urls["vision"], vertex_api_endpoint=urls["vertex"],
    )  # fmt: skip
    built = build_backends(settings)
    runs = []
    for i in range(WARMUP + RUNS):
        tally = {"wall": 0.0, "cpu": 0.0}
        backends = Backends(
            Timed(built.detector, tally), built.masker, Timed(built.compositor, tally),
            Timed(built.store, tally),
        )  # fmt: skip
        job = AvatarRequest("cat", "bench", f"g{i}", all_faces=False, image=data)
        total = pipeline.generate_avatar(job, backends, settings)["timings_ms"]["total"]
        runs.append({**tally, "rest": total - tally["wall"]})
    return runs[WARMUP:]


def replay_round_trips(urls: dict[str, str]) -> list[float]:
    """Milliseconds per request for the same three exchanges sent by a bare requests.Session."""
    session = requests.Session()
    sent = {name: session.get(f"{url}/__last__", timeout=5).json() for name, url in urls.items()}
    times = []
    for _ in range(WARMUP + RUNS):
        start = time.perf_counter()
        for name, request in sent.items():
            query = "&".join(f"{k}={v}" for k, vs in request["query"].items() for v in vs)
            url = f"{urls[name]}{request['path']}?{query}"
            headers = {"Content-Type": request["content_type"]}
            body = bytes.fromhex(request["body"])
            session.post(url, data=body, headers=headers, timeout=10).content  # noqa: B018
        times.append((time.perf_counter() - start) * 1000)
    return times[WARMUP:]


def import_seconds(code: str, repeats: int = 3) -> float:
    """Median wall time of `code` in a fresh interpreter (the interpreter's own start excluded)."""
    probe = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cloud_functions'}"}
    runs = [
        float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True, env=env).stdout)
        for _ in range(repeats)
    ]  # fmt: skip
    return statistics.median(runs)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def report(label: str, values: list[float]) -> None:
    print(f"  {label:<34} median {statistics.median(values):7.1f} ms   p90 {p90(values):7.1f} ms")


def main() -> None:
    data = selfie_12mp_jpeg()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-fakes"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        urls = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory() as folder:
            os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(signing_key_file(Path(folder)))
            os.environ["STORAGE_EMULATOR_HOST"] = urls["gcs"]
            runs = run_pipeline(data, urls)
            round_trips = replay_round_trips(urls)
    finally:
        server.stdin.close()
        server.wait(timeout=10)

    wall, cpu = [run["wall"] for run in runs], [run["cpu"] for run in runs]
    print(f"gcp path, 12 MP JPEG in ({SIZE[0]}x{SIZE[1]}, working 1600x1200), {RUNS} runs, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:")  # fmt: skip
    report("gcp adapters, wall", wall)
    report("baseline: the fakes' round trips", round_trips)
    report("gcp adapters, request thread CPU", cpu)
    report("rest of the request (shared)", [run["rest"] for run in runs])
    wall_overhead = statistics.median(wall) - statistics.median(round_trips)
    ratio = statistics.median(wall) / statistics.median(round_trips)
    verdict = "ok" if statistics.median(cpu) <= GOAL_MS else "OVER"
    print(f"  our code per request: CPU median {statistics.median(cpu):.1f} ms "
          f"(goal <= {GOAL_MS:.0f} ms: {verdict}); wall - round trips {wall_overhead:.1f} ms; "
          f"adapters / round trips {ratio:.1f}x")  # fmt: skip

    gcp_import = import_seconds(
        "import google.cloud.vision, google.cloud.aiplatform_v1, google.cloud.storage"
    )
    local_import = import_seconds(
        "import avatar.backends.local.detector, avatar.backends.local.compositor, "
        "avatar.backends.local.store"
    )
    print("import time, fresh process (median of 3):")
    print(f"  gcp clients (vision, aiplatform_v1, storage)  {gcp_import * 1000:7.0f} ms")
    print(f"  local backends (detector, compositor, store)  {local_import * 1000:7.0f} ms"
          f"   ratio {gcp_import / local_import:.1f}x")  # fmt: skip


if __name__ == "__main__":
    if "--serve-fakes" in sys.argv:
        serve_fakes()
    else:
        main()
