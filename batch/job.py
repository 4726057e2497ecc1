"""The job: list INPUT, take this task's share, leave out what the manifest has, run the rest on
the workers, and write each input's lines to the manifest (and the history) as it finishes.

Stopping: the first Ctrl-C (or the SIGTERM Cloud Run sends) stops handing out inputs and lets
the ones in progress finish and be written; a second stops at once (worker processes are
terminated). Either way every manifest line written is whole and its images are in place, so
running the same command again goes on where this run stopped.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, TYPE_CHECKING, Protocol

from avatar.catalogue import DEFAULT_STYLE
from batch import manifest
from batch.errors import BatchError
from batch.locations import GcsPrefix, Item, location
from batch.progress import Tally, progress_for
from batch.shards import Shard
from batch.work import INTERNAL_ERROR, Auth, Result, Spec, Task, attempt, failed

if TYPE_CHECKING:
    from batch.history import History

GCS_MANIFEST_EVERY_S = 10.0  # a bucket's manifest is appended to at most this often
IN_FLIGHT_PER_WORKER = 2  # inputs handed out ahead, so no worker waits for the next one
EXIT_OK, EXIT_INTERRUPTED = 0, 130


@dataclass(frozen=True)
class Options:
    input: str
    output: str
    animals: tuple[str, ...]
    workers: int
    all_faces: bool = False
    style: str = DEFAULT_STYLE
    function_url: str | None = None
    function_auth: Auth = "auto"
    retry_failed: bool = False
    user_id: uuid.UUID | None = None
    shard: Shard = field(default_factory=Shard)


class Stop:
    """Ctrl-C and SIGTERM: the first asks to stop after the inputs in progress, a second to stop
    at once. Only sets flags: nothing is interrupted halfway through a write."""

    def __init__(self, stream: IO[str] = sys.stderr) -> None:
        self.requests = 0
        self.stream = stream

    @property
    def asked(self) -> bool:
        return self.requests > 0

    @property
    def forced(self) -> bool:
        return self.requests > 1

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.requests += 1
        if self.requests == 1:
            name = signal.Signals(signum).name
            self.stream.write(
                f"\nbatch: {name}: finishing the inputs in progress "
                "(Ctrl-C again to stop at once)\n"
            )
        elif self.requests == 2:
            self.stream.write("batch: stopping at once\n")

    @contextmanager
    def installed(self) -> Iterator[Stop]:
        """Handle the signals while the job runs (only a main thread can; elsewhere, as when
        a test runs the job on a thread, the signals stay as they were)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Engine(Protocol):
    """Runs tasks: a pool of threads (one in-process pipeline, or calls to the function) or of
    processes (the pipeline in each)."""

    width: int
    spec: Spec

    def submit(self, task: Task) -> Future[list[Result]]: ...

    def restart(self) -> None: ...

    def abandon(self) -> None: ...

    def close(self) -> None: ...


class Threads:
    """Tasks on threads of this process, all sharing one worker."""

    def __init__(self, work: Callable[[Task], list[Result]], spec: Spec, width: int) -> None:
        self.work, self.spec, self.width = work, spec, width
        self.pool = ThreadPoolExecutor(width, thread_name_prefix="batch")

    def submit(self, task: Task) -> Future[list[Result]]:
        return self.pool.submit(attempt, self.work, task, self.spec)

    def restart(self) -> None:
        return None

    def abandon(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        close = getattr(self.work, "close", None)
        if close is not None:
            close()


class Processes:
    """Tasks on worker processes, each with the pipeline's models loaded once.

    The workers are forked while this process has a single thread (before the progress bar's),
    so they start with the pipeline's modules already imported (about 0.8 s less per start on
    this machine than a fresh interpreter); once other threads run (a later restart, or a
    database driver's thread), or off Linux, they are spawned: a fork then could inherit a lock
    held by another thread.
    """

    def __init__(self, spec: Spec, width: int) -> None:
        self.spec, self.width = spec, width
        self.pool = self._pool()

    def _pool(self) -> ProcessPoolExecutor:
        from batch.inprocess import start_worker  # imports the pipeline here, before a fork

        forkable = sys.platform == "linux" and threading.active_count() == 1
        pool = ProcessPoolExecutor(
            self.width,
            mp_context=multiprocessing.get_context("fork" if forkable else "spawn"),
            initializer=start_worker,
            initargs=(self.spec,),
        )
        pool.submit(int)  # starts every worker now, while this is the only thread
        return pool

    def submit(self, task: Task) -> Future[list[Result]]:
        from batch.inprocess import run_in_worker

        return self.pool.submit(run_in_worker, task)

    def restart(self) -> None:
        """A worker died (killed, out of memory): a fresh pool."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._pool()

    def abandon(self) -> None:
        for child in multiprocessing.active_children():
            child.terminate()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def engine_for(options: Options, spec: Spec) -> Engine:
    if options.function_url:
        from batch.remote import FunctionWorker

        worker = FunctionWorker(spec, options.function_url, auth=options.function_auth)
        return Threads(worker, spec, options.workers)
    if options.workers == 1:  # no process to start: the pipeline on one thread of this one
        from batch.inprocess import PipelineWorker

        return Threads(PipelineWorker(spec), spec, 1)
    return Processes(spec, options.workers)


def line(spec: Spec, item: Item, result: Result) -> manifest.Line:
    """The manifest line of one result (SPEC.md), with `generation_id` when it was recorded."""
    code_detail = result.error
    entry: manifest.Line = {
        "input": spec.input.join(item.name),
        "animal": result.animal,
        "style": spec.style,
        "status": "succeeded" if result.succeeded else "failed",
        "output": spec.output.join(result.output) if result.output else None,
        "error": {"code": code_detail[0], "detail": code_detail[1]} if code_detail else None,
        "faces": result.faces,
        "timings_ms": result.timings_ms,
    }
    if result.generation_id is not None:
        entry["generation_id"] = result.generation_id
    return entry


def plan(
    spec: Spec,
    items: Sequence[Item],
    animals: Sequence[str],
    done: dict[manifest.Key, manifest.Line],
    retry_failed: bool,
) -> tuple[list[Task], int]:
    """The tasks left to do (each input with the animals it still needs) and how many results
    the manifest settles already: a success always, a failure unless `retry_failed`."""
    tasks, skipped = [], 0
    for item in items:
        name = spec.input.join(item.name)
        needed = []
        for animal in animals:
            seen = done.get((name, animal))
            if seen is not None and (seen["status"] == "succeeded" or not retry_failed):
                skipped += 1
            else:
                needed.append(animal)
        if needed:
            tasks.append(Task(item, tuple(needed)))
    return tasks, skipped


def check_style(spec: Spec, done: dict[manifest.Key, manifest.Line]) -> None:
    """A rerun resumes OUTPUT, so the results there must be drawn in the style asked for: a
    job in another style would skip them silently. BatchError when they are not."""
    drawn = {line.get("style", manifest.EARLIER_STYLE) for line in done.values()}
    others = sorted(drawn - {spec.style})
    if others:
        msg = (
            f"OUTPUT holds results drawn in style {others[0]}: resume it with --style "
            f"{others[0]}, or give style {spec.style} an OUTPUT of its own"
        )
        raise BatchError(msg)


def run(
    options: Options, stop: Stop, *, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr
) -> int:
    """The whole job; its exit code (BatchError for a usage or configuration problem)."""
    spec = Spec(
        location(options.input),
        location(options.output),
        options.all_faces,
        options.user_id,
        options.style,
    )
    history = _history(options)
    try:
        sources = manifest.fetch(spec.output)
        done = manifest.lines_of(spec.output, sources)
        check_style(spec, done)
        tasks, skipped = _tasks(options, spec, done)
        every_s = GCS_MANIFEST_EVERY_S if isinstance(spec.output, GcsPrefix) else 0.0
        name = options.shard.manifest
        writer = manifest.Writer(spec.output, name, every_s, existing=sources.get(name))
        tally = Tally(todo=len(tasks), skipped=skipped)

        def finish(task: Task, results: list[Result]) -> None:
            if history is not None:  # the records first: a line in the manifest is final
                history.record([r for r in results if r.generation_id is not None])
            writer.add([line(spec, task.item, result) for result in results])
            tally.add(results)
            progress.advance(tally)

        engine = engine_for(options, spec) if tasks else None
        progress = progress_for(len(tasks), err)
        try:
            if engine is not None:
                drive(engine, tasks, finish, stop)
        finally:
            progress.close()
            writer.flush()
            if engine is not None:
                (engine.abandon if stop.forced else engine.close)()
    finally:
        if history is not None:
            history.close()
    interrupted = stop.asked and tally.inputs < tally.todo
    out.write(tally.summary(interrupted=interrupted) + "\n")
    out.flush()
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _history(options: Options) -> History | None:
    """The user's history (--user-id), checked: the database answers and the user exists."""
    if options.user_id is None:
        return None
    from batch.history import History  # the API's models: only when asked for

    history = History(options.user_id, style=options.style)
    try:
        history.check()
    except BatchError:
        history.close()
        raise
    return history


def _tasks(
    options: Options, spec: Spec, done: dict[manifest.Key, manifest.Line]
) -> tuple[list[Task], int]:
    """This task's share of INPUT, less what the manifest settles."""
    if spec.input.inside(spec.output) == "":
        msg = "OUTPUT must not be INPUT: give the results a folder or prefix of their own"
        raise BatchError(msg)
    skip = spec.input.inside(spec.output)  # OUTPUT inside INPUT: not an input
    items = [item for item in spec.input.items(skip) if options.shard.takes(item.name)]
    return plan(spec, items, options.animals, done, options.retry_failed)


def drive(
    engine: Engine,
    tasks: Sequence[Task],
    finish: Callable[[Task, list[Result]], None],
    stop: Stop,
) -> None:
    """Hand tasks out (a few ahead per worker), finish each as it comes back; stop when asked.

    A worker process that dies takes every task in progress with it, and says nothing of which
    one killed it: on a fresh pool, each of them is run again on its own, and one that kills
    its worker on its own too is failed (not retried forever).
    """
    queue = deque(tasks)
    suspects: deque[Task] = deque()
    in_flight: dict[Future[list[Result]], Task] = {}
    alone: Task | None = None  # a suspect, run with nothing beside it
    while True:
        if not stop.asked and alone is None:
            if suspects and not in_flight:
                alone = suspects.popleft()
                in_flight[engine.submit(alone)] = alone
            while not suspects and queue and len(in_flight) < engine.width * IN_FLIGHT_PER_WORKER:
                task = queue.popleft()
                in_flight[engine.submit(task)] = task
        if not in_flight or stop.forced:
            return
        done, _ = wait_for(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
        broken = False
        for future in done:
            task = in_flight.pop(future)
            try:
                results = future.result()
            except BrokenProcessPool:
                broken = True
                if task is not alone:
                    suspects.append(task)
                    continue
                detail = "the worker process died on this input (out of memory?)"
                results = failed(task, engine.spec, INTERNAL_ERROR, detail)
            if task is alone:
                alone = None
            finish(task, results)
        if broken:
            suspects.extend(in_flight.values())  # the dead pool's other tasks
            in_flight.clear()
            engine.restart()
