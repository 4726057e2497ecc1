"""Sharding across the tasks of a Cloud Run job: CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT.

A task takes the inputs whose name hashes to its index: a stable, disjoint share, the same on a
rerun (a task retried by Cloud Run redoes its own share and finds its own manifest part).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from batch.errors import BatchError
from batch.manifest import part_name


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Shard:
        """The task's share, from Cloud Run's variables (one share of one when unset)."""
        raw_index = env.get("CLOUD_RUN_TASK_INDEX", "0")
        raw_count = env.get("CLOUD_RUN_TASK_COUNT", "1")
        try:
            index, count = int(raw_index), int(raw_count)
        except ValueError as exc:
            msg = f"CLOUD_RUN_TASK_INDEX={raw_index!r} and CLOUD_RUN_TASK_COUNT={raw_count!r}"
            raise BatchError(f"{msg} must be whole numbers") from exc
        if count < 1 or not 0 <= index < count:
            msg = f"CLOUD_RUN_TASK_INDEX={index} must be from 0 to {count - 1} (the count less one)"
            raise BatchError(msg)
        return cls(index, count)

    def takes(self, name: str) -> bool:
        """Whether an input (by its name relative to INPUT) is this task's."""
        if self.count == 1:
            return True
        digest = hashlib.sha256(name.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    @property
    def manifest(self) -> str:
        """The manifest (or part) this task writes."""
        return part_name(self.index, self.count)
