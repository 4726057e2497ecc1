"""A real webhook receiver on 127.0.0.1 for the tests: a threaded HTTP server that records
each request (headers, body, arrival time) and answers from a script (a status, or "hang":
no answer until the test ends)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival


class Receiver:
    """`answers`: what to answer the next requests, in order (then `default`)."""

    def __init__(self, *answers: int | str, default: int = 204) -> None:
        self.answers: list[int | str] = list(answers)
        self.default = default
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._record(self.path, headers, body)
                if answer == HANG:
                    receiver._stopping.wait(60)
                    return
                payload = b"ok" if answer != 204 else b""
                self.send_response(int(answer))
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/avatars"

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int | str:
        with self._lock:
            self.received.append(Received(path, headers, body, time.time()))
            self._arrived.notify_all()
            return self.answers.pop(0) if self.answers else self.default

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """Block until `count` requests arrived (for threads; async tests poll `received`)."""
        with self._lock:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout_s):
                raise AssertionError(f"{len(self.received)} of {count} requests arrived")
            return list(self.received)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiving(*answers: int | str, default: int = 204) -> Iterator[Receiver]:
    receiver = Receiver(*answers, default=default).start()
    try:
        yield receiver
    finally:
        receiver.stop()
