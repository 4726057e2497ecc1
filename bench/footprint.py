"""The API's footprint: its virtual environment on disk, and its process's memory after start-up.

Builds the API's own environment from requirements.txt and, as the baseline in the same run,
one that also holds the function's packages (cloud_functions/requirements-local.txt: what the
API image installed while the API imported the function's code). Then starts the API under
uvicorn (SQLite, local store) from the API's environment --repeat times and reports the
resident set size once /healthz answers and after a few requests, and which heavy packages the
process loaded. The environments are built once under .cache/footprint and reused until a
requirements file changes. `--baseline-repo DIR --baseline-venv DIR` also starts another
checkout of the API (e.g. a git worktree of an older commit) from another environment.

    .venv/bin/python bench/footprint.py [--repeat 5] [--venvs DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from benchproc import free_port, memory_mb, wait_up

REPO = Path(__file__).resolve().parents[1]
HEAVY = (
    "numpy",
    "PIL",
    "avatar",
    "google.cloud.vision",
    "google.cloud.aiplatform",
    "ai_edge_litert",
)
# Printed by the API process at exit: which of the heavy packages it had loaded.
SITECUSTOMIZE = """
import atexit, sys
HEAVY = {heavy!r}
def _report():
    loaded = sorted(h for h in HEAVY if h in sys.modules)
    print("FOOTPRINT-LOADED " + ",".join(loaded), file=sys.stderr, flush=True)
atexit.register(_report)
"""


def build_venv(root: Path, name: str, *requirements: Path) -> Path:
    """A virtual environment with these requirement files installed, under `root`; reused by
    later runs until a requirements file changes (its folder is named after their contents)."""
    digest = hashlib.sha256()
    for requirement in (REPO / "requirements.txt", *REPO.glob("cloud_functions/requirements*")):
        digest.update(requirement.read_bytes())
    path = root / f"{name}-{digest.hexdigest()[:12]}"
    stamp = path / ".bench-installed"
    if stamp.exists():
        return path
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    args = [str(path / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    for requirement in requirements:
        args += ["-r", str(requirement)]
    subprocess.run(args, check=True)
    stamp.touch()
    return path


def size_mb(path: Path) -> float:
    """Disk usage of a folder, as du counts it."""
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0]) / 1024


def start_api(venv: Path, path: str, repo: Path, workdir: Path) -> tuple[float, float, str]:
    """(RSS after start-up, RSS after requests, heavy packages loaded) of one API process, on
    `workdir`'s database and hooks (see prepare_workdir)."""
    port = free_port()
    hooks = workdir / "hooks"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": f"{path}:{hooks}",
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/footprint.db",
        "STORAGE_DIR": str(workdir / "media"),
        "FUNCTION_URL": "http://127.0.0.1:9",
    }
    command = [str(venv / "bin" / "python"), "-m", "uvicorn", "api.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(f"{url}/healthz", process)
        started = memory_mb(process.pid)
        for route in ("/v1/animals", "/openapi.json", "/problems/not_found", "/healthz"):
            httpx.get(f"{url}{route}", timeout=10)
        after = memory_mb(process.pid)
    finally:
        # SIGINT, not SIGTERM: uvicorn re-raises the signal after its shutdown, and only
        # SIGINT's default (KeyboardInterrupt) lets the interpreter run its atexit report.
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    loaded = next(
        (line.split(" ", 1)[1] for line in stderr.splitlines() if line.startswith("FOOTPRINT-")),
        "?",
    )
    return started, after, loaded or "none"


def measure(label: str, venv: Path, path: str, repo: Path, repeat: int) -> float:
    """Start the API `repeat` times and print the medians; returns the start-up RSS median.

    `path`: the API process's PYTHONPATH (the old image also had cloud_functions/ on it).
    """
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        workdir = Path(tmp)
        prepare_workdir(venv, path, repo, workdir)
        runs = [start_api(venv, path, repo, workdir) for _ in range(repeat)]
    started = statistics.median(run[0] for run in runs)
    after = statistics.median(run[1] for run in runs)
    print(f"  {label:<34} RSS after start-up {started:6.1f} MB, after requests {after:6.1f} MB"
          f"   loaded: {runs[-1][2]}")  # fmt: skip
    return started


def prepare_workdir(venv: Path, path: str, repo: Path, workdir: Path) -> None:
    """A migrated SQLite database and the sitecustomize hook, shared by the starts (the requests
    made only read)."""
    hooks = workdir / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE.format(heavy=HEAVY))
    env = dict(os.environ) | {
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/footprint.db",
        "PYTHONPATH": path,
    }
    subprocess.run([str(venv / "bin" / "alembic"), "-c", "api/alembic.ini", "upgrade", "head"],
                   cwd=repo, env=env, check=True, capture_output=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--venvs", type=Path, default=REPO / ".cache" / "footprint",
                        help="where the measured environments are built and kept")  # fmt: skip
    parser.add_argument("--baseline-repo", type=Path, help="another checkout of the API")
    parser.add_argument("--baseline-venv", type=Path, help="the environment to run it from")
    args = parser.parse_args()
    api = build_venv(args.venvs, "api", REPO / "requirements.txt")
    both = build_venv(
        args.venvs,
        "api+function",
        REPO / "requirements.txt",
        REPO / "cloud_functions" / "requirements-local.txt",
    )
    api_mb, both_mb = size_mb(api), size_mb(both)
    print("Virtual environment (du):")
    print(f"  {'API only (requirements.txt)':<34} {api_mb:7.1f} MB")
    print(f"  {'baseline: API + function packages':<34} {both_mb:7.1f} MB"
          f"   API only is {api_mb / both_mb:.2f}x of it")  # fmt: skip
    print(f"The API process, medians of {args.repeat} starts:")
    rss = measure("this checkout, API-only venv", api, str(REPO), REPO, args.repeat)
    if args.baseline_repo and args.baseline_venv:
        base_repo = args.baseline_repo.resolve()
        path = f"{base_repo}:{base_repo / 'cloud_functions'}"
        base = measure("baseline checkout and venv", args.baseline_venv, path, base_repo,
                       args.repeat)  # fmt: skip
        print(f"  start-up RSS ratio {rss / base:.2f}x of the baseline")


if __name__ == "__main__":
    main()
