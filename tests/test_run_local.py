"""scripts/run-local.sh (`make run`) as a process: a function that dies is restarted while the
API keeps serving, the API's exit stops everything, and Ctrl-C or SIGTERM leaves nothing behind.

The script runs in a session of its own, on free ports, with a database and a media folder in
a temporary directory (never the developer's var/). Processes are read from /proc.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes in /proc"),
]

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "run-local.sh"
BIN = Path(sys.executable).parent
UP_TIMEOUT_S = 60.0  # both servers answering after a cold start (about 2 s here)
STOP_TIMEOUT_S = 10.0
# The environment the script gets, besides its own settings: nothing of the developer's
# (DATABASE_URL, GCS_BUCKET, AVATAR_BACKEND=gcp, ...) leaks in.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    state: str
    argv: tuple[str, ...]

    def serves_port(self, program: str, port: int) -> bool:
        """Its command line runs `program` with `--port <port>`."""
        port_given = ("--port", str(port)) in pairwise(self.argv)
        return port_given and any(Path(arg).name == program for arg in self.argv)


def processes() -> list[Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        state, ppid, _pgrp, sid = stat.rpartition(")")[2].split()[:4]
        args = tuple(arg.decode(errors="replace") for arg in argv if arg)
        found.append(Proc(int(entry.name), int(ppid), int(sid), state, args))
    return found


def alive_in_session(sid: int) -> list[Proc]:
    # Zombies are dead: an orphan's is reaped by init, which in some containers never does.
    return [p for p in processes() if p.sid == sid and p.state != "Z"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until `condition` holds; the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - start


def answers(url: str) -> bool:
    """Any HTTP answer: the function answers a GET with 405 (JSON)."""
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


@dataclass
class RunLocal:
    process: subprocess.Popen[bytes]
    api_port: int
    function_port: int
    stderr_path: Path
    stdout_path: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def function_url(self) -> str:
        return f"http://127.0.0.1:{self.function_port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def one(self, program: str, port: int) -> Proc:
        """The server's own process: the one whose parent is not one of its kind (gunicorn's
        master, not its workers, which run the same command line)."""
        mine = [p for p in alive_in_session(self.process.pid) if p.serves_port(program, port)]
        pids = {p.pid for p in mine}
        roots = [p for p in mine if p.ppid not in pids]
        assert len(roots) == 1, f"{program} on :{port}: {roots}"
        return roots[0]

    def function(self) -> Proc:
        return self.one("functions-framework", self.function_port)

    def api(self) -> Proc:
        return self.one("uvicorn", self.api_port)

    def wait_until_up(self) -> float:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"run-local.sh exited early:\n{self.stderr()}")
            return answers(f"{self.api_url}/healthz") and answers(self.function_url)

        return wait_for(up, UP_TIMEOUT_S, "the API and the function answering")

    def wait_exit(self) -> int:
        start = time.monotonic()
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {STOP_TIMEOUT_S} s") from None
        print(f"run-local.sh exited with {code} after {time.monotonic() - start:.2f} s")
        return code


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file migrated to head, as `make migrate` does for `make run`."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'run_local.db'}"
    env = {k: os.environ[k] for k in INHERITED if k in os.environ} | {"DATABASE_URL": url}
    subprocess.run(
        [str(BIN / "alembic"), "-c", "api/alembic.ini", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return url


def default_sigint() -> None:
    # A shell started with SIGINT ignored (pytest run in the background of a script) could not
    # trap it: start the script as a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def run_local(database_url: str, tmp_path: Path) -> Iterator[RunLocal]:
    """run-local.sh started in a session of its own, both servers answering."""
    api_port, function_port = free_port(), free_port()
    env = {k: os.environ[k] for k in INHERITED if k in os.environ} | {
        "API_PORT": str(api_port),
        "FUNCTION_PORT": str(function_port),
        "DATABASE_URL": database_url,
        "STORAGE_DIR": str(tmp_path / "media"),
        "AVATAR_BACKEND": "local",
        "PYTHONUNBUFFERED": "1",
    }
    stdout_path, stderr_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            ["bash", str(SCRIPT)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=default_sigint,
        )
    running = RunLocal(process, api_port, function_port, stderr_path, stdout_path)
    try:
        print(f"up after {running.wait_until_up():.2f} s")
        yield running
    finally:
        # A failed test must not leave servers behind: whatever is left of the session goes.
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for leftover in alive_in_session(process.pid):
            os.kill(leftover.pid, signal.SIGKILL)


def test_a_killed_function_is_restarted_while_the_api_keeps_serving(
    run_local: RunLocal,
) -> None:
    old_function, api = run_local.function(), run_local.api()
    old_pids = {  # gunicorn's master and its workers
        p.pid
        for p in alive_in_session(run_local.process.pid)
        if p.serves_port("functions-framework", run_local.function_port)
    }

    os.kill(old_function.pid, signal.SIGKILL)

    # Meanwhile the API is up and reports the function as unreachable.
    assert httpx.get(f"{run_local.api_url}/healthz", timeout=5).status_code == 200
    wait_for(
        lambda: httpx.get(f"{run_local.api_url}/readyz", timeout=5).status_code == 503,
        3,
        "/readyz answering 503 while the function is down",
    )
    restart_line = r"function exited with status 137 \(SIGKILL\) after \d+ s; restarting in 1 s"
    wait_for(lambda: re.search(restart_line, run_local.stderr()) is not None, 5, "restart line")

    took = wait_for(lambda: answers(run_local.function_url), 15, "the function answering again")
    print(f"the function answered again {took:.2f} s after the restart line")
    assert httpx.get(f"{run_local.api_url}/readyz", timeout=5).status_code == 200
    new_function = run_local.function()
    assert new_function.pid != old_function.pid
    assert run_local.api().pid == api.pid  # the same API process all along
    # The killed master's workers went with it (they would hold the port).
    assert not old_pids & {p.pid for p in alive_in_session(run_local.process.pid)}

    os.killpg(run_local.process.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
    assert run_local.wait_exit() in (-signal.SIGINT, 128 + signal.SIGINT)
    assert alive_in_session(run_local.process.pid) == []
    assert refuses_connections(run_local.api_port)
    assert refuses_connections(run_local.function_port)
    assert run_local.stderr().count("restarting in") == 1  # none while stopping


def test_the_api_exiting_stops_the_function_and_the_script(run_local: RunLocal) -> None:
    os.kill(run_local.api().pid, signal.SIGKILL)

    assert run_local.wait_exit() == 128 + signal.SIGKILL
    assert "the API exited with status 137 (SIGKILL); stopping the function" in run_local.stderr()
    assert alive_in_session(run_local.process.pid) == []
    assert refuses_connections(run_local.function_port)
    assert "restarting in" not in run_local.stderr()


def test_sigterm_stops_both(run_local: RunLocal) -> None:
    run_local.process.terminate()  # what a process manager sends, to the script alone

    assert run_local.wait_exit() in (-signal.SIGTERM, 128 + signal.SIGTERM)
    assert alive_in_session(run_local.process.pid) == []
    assert refuses_connections(run_local.api_port)
    assert refuses_connections(run_local.function_port)
    assert "restarting in" not in run_local.stderr()


def test_the_api_logs_json_lines_when_stdout_is_not_a_terminal(run_local: RunLocal) -> None:
    # LOG_FORMAT unset and stdout a file: JSON, through uvicorn's --log-config (uvicorn's own
    # lines too), one Cloud Logging object per line; the script's URLs stay plain lines.
    httpx.get(f"{run_local.api_url}/v1/animals", timeout=5)

    def api_lines() -> list[dict[str, Any]]:
        lines = [line for line in run_local.stdout().splitlines() if line.startswith("{")]
        return [entry for entry in map(json.loads, lines) if "logger" in entry]

    wait_for(
        lambda: any(entry["logger"] == "api.access" for entry in api_lines()),
        5,
        "the access line of GET /v1/animals",
    )
    entries = api_lines()
    assert any(entry["logger"] == "uvicorn.error" for entry in entries)
    access = next(entry for entry in entries if entry["logger"] == "api.access")
    assert access["severity"] == "INFO"
    assert access["httpRequest"]["requestUrl"] == "/v1/animals"
    assert "logging.googleapis.com/trace" in access
    assert f"API      {run_local.api_url}" in run_local.stdout()
