"""A real webhook receiver on 127.0.0.1 for the tests (tests/fake_http.py's server): it records
each request with its arrival time and answers from a script (a status, or HANG: no answer
until the test ends)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.fake_http import FakeServer, Recorded, Reply

HANG = "hang"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.time() on arrival


class Receiver:
    """`answers`: what to answer the next requests, in order (then `default`)."""

    def __init__(self, *answers: int | str, default: int = 204) -> None:
        self.answers: list[int | str] = list(answers)
        self.default = default
        self.received: list[Received] = []
        self._arrived = threading.Condition()
        self._server = FakeServer(self._answer)

    @property
    def url(self) -> str:
        return f"{self._server.url}/hooks/avatars"

    def _answer(self, request: Recorded) -> Reply:
        with self._arrived:
            self.received.append(Received(request.path, request.headers, request.body, time.time()))
            self._arrived.notify_all()
            answer = self.answers.pop(0) if self.answers else self.default
        if answer == HANG:
            return Reply(b"", delay_s=60)  # cut short, unanswered, when the server stops
        return Reply(b"" if answer == 204 else b"ok", status=int(answer))

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """Block until `count` requests arrived (async tests call it in a thread)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout_s):
                raise AssertionError(f"{len(self.received)} of {count} requests arrived")
            return list(self.received)

    def start(self) -> Receiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


@contextmanager
def receiving(*answers: int | str, default: int = 204) -> Iterator[Receiver]:
    receiver = Receiver(*answers, default=default).start()
    try:
        yield receiver
    finally:
        receiver.stop()
