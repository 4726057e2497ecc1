"""Reading /metrics and log lines in tests."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.observability.logs import CloudLoggingFormatter

Sample = tuple[str, frozenset[tuple[str, str]]]


def samples(text: str) -> dict[Sample, float]:
    """Every sample of a Prometheus text page, by name and labels."""
    found: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def scrape(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[Sample, float]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def moved(before: dict[Sample, float], after: dict[Sample, float]) -> dict[Sample, float]:
    """The samples whose value changed, by how much."""
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


def sample(name: str, **labels: str) -> Sample:
    return (name, frozenset(labels.items()))


class JsonLines(logging.Handler):
    """Every record, formatted as the API writes it, as it is emitted (in its context)."""

    def __init__(self, project: str | None) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(CloudLoggingFormatter(project))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def json_lines(project: str | None = "test-project") -> Iterator[list[dict[str, Any]]]:
    handler = JsonLines(project)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
