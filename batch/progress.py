"""What the job shows while it runs and says when it ends.

On a terminal a progress bar (rich); anywhere else (Cloud Logging, CI, a pipe) a plain line
every EVERY inputs, so a log shows progress without a bar's control characters. At the end a
summary: results by status and failures by error code, inputs per second.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from batch.work import Result

EVERY = 100


@dataclass
class Tally:
    """Counts of this run: inputs processed, results by status and by error code."""

    todo: int
    skipped: int = 0  # results the manifest already had
    inputs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    def add(self, results: Sequence[Result]) -> None:
        self.inputs += 1
        for result in results:
            self.statuses["succeeded" if result.succeeded else "failed"] += 1
            if result.error is not None:
                self.codes[result.error[0]] += 1

    @property
    def rate(self) -> float:
        """Inputs per second so far."""
        elapsed = time.perf_counter() - self.started
        return self.inputs / elapsed if elapsed > 0 else 0.0

    def summary(self, *, interrupted: bool = False) -> str:
        elapsed = time.perf_counter() - self.started
        done = sum(self.statuses.values())
        head = "batch: interrupted" if interrupted else "batch: done"
        lines = [
            f"{head}: {self.inputs} of {self.todo} inputs in {elapsed:.1f} s "
            f"({self.rate:.2f} images/s), {done} results",
            f"  succeeded  {self.statuses['succeeded']}",
            f"  failed     {self.statuses['failed']}",
        ]
        lines += [f"    {code:<22} {count}" for code, count in sorted(self.codes.items())]
        lines.append(f"  skipped    {self.skipped} (already in the manifest)")
        if interrupted:
            lines.append("  run the same command again to go on where this run stopped")
        return "\n".join(lines)


class Progress(Protocol):
    def advance(self, tally: Tally) -> None: ...

    def close(self) -> None: ...


class Plain:
    """A line every EVERY inputs, and at the last one."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def advance(self, tally: Tally) -> None:
        if tally.inputs % EVERY == 0 or tally.inputs == tally.todo:
            failed = tally.statuses["failed"]
            self.stream.write(
                f"batch: {tally.inputs}/{tally.todo} inputs, {failed} failed results, "
                f"{tally.rate:.2f} images/s\n"
            )
            self.stream.flush()

    def close(self) -> None:
        return None


class Bar:
    """rich's progress bar on the terminal."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} images/s"),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
        )
        self.task = self.progress.add_task("batch", total=total, rate=0.0, failed=0)
        self.progress.start()

    def advance(self, tally: Tally) -> None:
        self.progress.update(
            self.task, completed=tally.inputs, rate=tally.rate, failed=tally.statuses["failed"]
        )

    def close(self) -> None:
        self.progress.stop()


def progress_for(total: int, stream: IO[str] = sys.stderr) -> Progress:
    """A bar on a terminal, plain lines elsewhere."""
    return Bar(total, stream) if stream.isatty() else Plain(stream)
