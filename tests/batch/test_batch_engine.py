"""The job's loop on its own: a bug on one input fails that input, a worker process that dies
is replaced, and an input that kills workers again and again is failed, not retried forever."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from batch.job import Stop, drive
from batch.locations import Folder, Item
from batch.work import INTERNAL_ERROR, Result, Spec, Task, attempt

SPEC = Spec(Folder("in", Path("in")), Folder("out", Path("out")))


class FakeProcesses:
    """An engine whose pool "dies" while a given input is in it."""

    width = 2
    spec = SPEC

    def __init__(self, deadly: set[str]) -> None:
        self.deadly = deadly
        self.restarts = 0
        self.handed: Counter[str] = Counter()
        self.pending: list[tuple[Future[list[Result]], Task]] = []
        self.solo: set[str] = set()  # handed out again after a death: settled on their own

    def submit(self, task: Task) -> Future[list[Result]]:
        self.handed[task.item.name] += 1
        future: Future[list[Result]] = Future()
        self.pending.append((future, task))
        if len(self.pending) == self.width or task.item.name in ("last", *self.solo):
            self._settle()
        return future

    def _settle(self) -> None:
        dies = any(task.item.name in self.deadly for _, task in self.pending)
        for future, task in self.pending:
            if dies:
                future.set_exception(BrokenProcessPool("a worker died"))
            else:
                future.set_result([Result(animal) for animal in task.animals])
        self.pending = []

    def restart(self) -> None:
        self.restarts += 1
        self.solo = set(self.handed)

    def abandon(self) -> None: ...

    def close(self) -> None: ...


def test_a_dying_worker_is_replaced_and_its_killer_failed() -> None:
    names = ["a", "b", "killer", "c", "d", "last"]
    tasks = [Task(Item(name, 1), ("fox",)) for name in names]
    engine = FakeProcesses(deadly={"killer"})
    finished: dict[str, list[Result]] = {}

    drive(engine, tasks, lambda task, results: finished.setdefault(task.item.name, results), Stop())

    assert set(finished) == set(names)  # every input ends, once
    [killed] = finished["killer"]
    assert killed.error is not None
    assert killed.error[0] == INTERNAL_ERROR
    assert all(finished[name][0].succeeded for name in names if name != "killer")
    assert engine.handed["killer"] == 2  # alone on a fresh pool, where it killed again: failed
    assert engine.handed["c"] == 2  # beside it when the pool died: again, alone, fine
    assert engine.restarts == 2


def test_a_bug_on_one_input_fails_that_input() -> None:
    def buggy(task: Task) -> list[Result]:
        raise ZeroDivisionError

    [result] = attempt(buggy, Task(Item("x.jpg", 1), ("cat",)), SPEC)

    assert result.error is not None
    assert result.error[0] == INTERNAL_ERROR
    assert "log" in result.error[1]


def test_a_stop_hands_out_nothing_more() -> None:
    stop = Stop()
    stop.requests = 1
    engine = FakeProcesses(deadly=set())
    drive(engine, [Task(Item("a", 1), ("fox",))], lambda task, results: None, stop)
    assert not engine.handed


def test_a_terminal_gets_a_bar_and_a_log_gets_a_line_per_hundred() -> None:
    import io

    from batch.progress import EVERY, Bar, Plain, Tally, progress_for

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    bar = progress_for(3, terminal)
    assert isinstance(bar, Bar)
    tally = Tally(todo=3)
    for _ in range(3):
        tally.add([Result("fox")])
        bar.advance(tally)
    bar.close()
    assert "3/3" in terminal.getvalue()

    log = io.StringIO()
    plain = progress_for(250, log)
    assert isinstance(plain, Plain)
    tally = Tally(todo=250)
    for _ in range(250):
        tally.add([Result("fox", error=("no_face_detected", "no face"))])
        plain.advance(tally)
    printed = log.getvalue().splitlines()
    assert [line.split()[1] for line in printed] == [f"{EVERY}/250", "200/250", "250/250"]
    assert "250 failed results" in printed[-1]
    assert "no_face_detected       250" in tally.summary()
