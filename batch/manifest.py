"""`manifest.jsonl`: one JSON line per input and animal, the job's record and its resume point.

A line is `{input, animal, status, output, error, faces, timings_ms}` (SPEC.md) and the
`style` the job drew its animals in (`--style`), plus `generation_id` when the result was
recorded in a user's history (a line without `style` was written before styles, in `paint`).
A line is keyed by input and animal: a rerun resumes OUTPUT in the style its lines were drawn
in, and a job asking for another style there is refused. A task of a sharded run
(CLOUD_RUN_TASK_COUNT > 1) writes its own part, `manifest.part-00003-of-00010.jsonl`; the reader
combines the manifest and every part, and `--merge` writes the combination back as one manifest.

Lines are only ever appended, whole (one write per input), after the input's images are in
place. When a line appears twice (a failure redone with `--retry-failed`, or a share redone
under another task count) a success wins over a failure, and otherwise the later line wins.
A torn last line (a machine that lost power mid-write) is ignored, and cut off before the
next append, so its input is simply done again.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from batch.locations import Location

MANIFEST = "manifest.jsonl"
PART_PREFIX = "manifest.part-"
PART = re.compile(r"manifest\.part-\d{5}-of-\d{5}\.jsonl")

CONTENT_TYPE = "application/x-ndjson"

EARLIER_STYLE = "paint"  # the style of a line written before lines named theirs
Line = dict[str, Any]
Key = tuple[str, str]  # (input, animal)


def part_name(index: int, count: int) -> str:
    """The manifest a task writes: the manifest itself for an unsharded run, else its part."""
    return MANIFEST if count == 1 else f"{PART_PREFIX}{index:05d}-of-{count:05d}.jsonl"


def key(line: Line) -> Key:
    return (line["input"], line["animal"])


def parse(data: bytes, source: str) -> list[Line]:
    """The whole, valid lines of a manifest; a torn last line (no newline) is left out."""
    lines: list[Line] = []
    complete, _, _torn = data.rpartition(b"\n")
    for number, raw in enumerate(complete.split(b"\n") if complete else [], start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            if not isinstance(line["status"], str):  # KeyError/TypeError: not a line of ours
                raise TypeError(line["status"])
            key(line)
        except (ValueError, TypeError, KeyError):
            print(f"batch: {source}:{number} is not a manifest line; ignored", file=sys.stderr)
            continue
        lines.append(line)
    return lines


def combine(lines: Iterable[Line]) -> dict[Key, Line]:
    """One line per (input, animal): a success over a failure, else the later line."""
    kept: dict[Key, Line] = {}
    for line in lines:
        seen = kept.get(key(line))
        if seen is None or line["status"] == "succeeded" or seen["status"] != "succeeded":
            kept.pop(key(line), None)  # the later line also takes the later place
            kept[key(line)] = line
    return kept


def fetch(output: Location) -> dict[str, bytes]:
    """The manifest and its parts present in OUTPUT, by name: listed and read once."""
    names = output.names("manifest.")
    ordered = [name for name in names if name == MANIFEST]
    ordered += sorted(name for name in names if PART.fullmatch(name))
    found = {name: output.fetch(name) for name in ordered}
    return {name: data for name, data in found.items() if data is not None}


def lines_of(output: Location, sources: dict[str, bytes]) -> dict[Key, Line]:
    """Everything the fetched manifest and parts say, combined."""
    return combine(
        line for name, data in sources.items() for line in parse(data, output.join(name))
    )


def encode(lines: Sequence[Line]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


@dataclass
class Writer:
    """Appends lines to one manifest (or part) of OUTPUT.

    A folder's manifest is appended to at once; a bucket's in batches (every `every_s`
    seconds, and on close), each one compose; lines not yet written when the job is killed
    outright are redone by the next run, over the same output names.
    """

    output: Location
    name: str
    every_s: float = 0.0
    existing: bytes | None = None  # what the manifest (or part) holds already, as fetched

    def __post_init__(self) -> None:
        self._pending: list[Line] = []
        self._last = time.monotonic()
        self._repair()

    def add(self, lines: Sequence[Line]) -> None:
        self._pending.extend(lines)
        if time.monotonic() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.output.append(self.name, encode(self._pending))
            self._pending = []
        self._last = time.monotonic()

    def _repair(self) -> None:
        """Cut a torn last line off, so that the next line starts on a line of its own."""
        data = self.existing
        if data and not data.endswith(b"\n"):
            self.output.write(self.name, data[: data.rfind(b"\n") + 1], CONTENT_TYPE)


def merge(output: Location) -> tuple[int, list[str]]:
    """Combine the manifest and its parts into one manifest; (lines written, parts removed)."""
    sources = fetch(output)
    combined = lines_of(output, sources)
    parts = [name for name in sources if name != MANIFEST]
    output.write(MANIFEST, encode(list(combined.values())), CONTENT_TYPE)
    for name in parts:  # only once the merged manifest holds their lines
        output.delete(name)
    return len(combined), parts
