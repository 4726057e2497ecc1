"""Sharding across the tasks of a Cloud Run job, and merging the tasks' manifest parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_testing import INPUTS, RunBatch

from batch.errors import BatchError
from batch.manifest import MANIFEST, combine, parse
from batch.shards import Shard


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_shards_cover_every_input_exactly_once_and_merge(
    run_batch: RunBatch, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    argv = ("--input", str(inputs), "--output", str(output), "--animal", "fox", "--workers", "1")
    monkeypatch.setenv("CLOUD_RUN_TASK_COUNT", "2")
    for index in ("0", "1"):
        monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", index)
        assert run_batch(*argv).code == 0

    parts = sorted(output.glob("manifest.part-*.jsonl"))
    assert [p.name for p in parts] == [
        "manifest.part-00000-of-00002.jsonl",
        "manifest.part-00001-of-00002.jsonl",
    ]
    shares = [{line["input"] for line in lines_of(part)} for part in parts]
    assert all(shares), "both tasks got a share of the 5 inputs"
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == {f"{inputs}/{name}" for name in INPUTS}
    assert not (output / MANIFEST).exists()

    monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", "0")  # a retried task redoes nothing
    assert "0 of 0 inputs" in run_batch(*argv).out

    monkeypatch.delenv("CLOUD_RUN_TASK_INDEX")
    monkeypatch.delenv("CLOUD_RUN_TASK_COUNT")
    merged = run_batch("--output", str(output), "--merge")
    assert merged.code == 0
    assert "merged 2 parts" in merged.out
    assert not list(output.glob("manifest.part-*"))
    lines = lines_of(output / MANIFEST)
    assert sorted(line["input"] for line in lines) == sorted(f"{inputs}/{n}" for n in INPUTS)
    assert "0 of 0 inputs" in run_batch(*argv).out  # the merged manifest is the resume point


def test_the_reader_combines_parts_before_a_merge(
    run_batch: RunBatch, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    argv = ("--input", str(inputs), "--output", str(output), "--animal", "fox", "--workers", "1")
    monkeypatch.setenv("CLOUD_RUN_TASK_COUNT", "3")
    for index in ("0", "1", "2"):
        monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", index)
        run_batch(*argv)
    monkeypatch.setenv("CLOUD_RUN_TASK_COUNT", "1")  # now one task: it reads all three parts
    monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", "0")
    assert "0 of 0 inputs" in run_batch(*argv).out


def test_shares_are_stable_and_disjoint() -> None:
    names = [f"user-{n}.jpg" for n in range(1000)]
    shards = [Shard(index, 4) for index in range(4)]
    owners = [[s.index for s in shards if s.takes(name)] for name in names]
    assert all(len(owner) == 1 for owner in owners)
    sizes = [sum(1 for owner in owners if owner == [i]) for i in range(4)]
    assert all(200 < size < 300 for size in sizes), sizes  # a hash, not an order
    assert owners == [[s.index for s in shards if s.takes(name)] for name in names]


@pytest.mark.parametrize(
    "env",
    [
        {"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "2"},
        {"CLOUD_RUN_TASK_INDEX": "-1", "CLOUD_RUN_TASK_COUNT": "2"},
        {"CLOUD_RUN_TASK_INDEX": "x", "CLOUD_RUN_TASK_COUNT": "2"},
        {"CLOUD_RUN_TASK_COUNT": "0"},
    ],
)
def test_bad_task_variables_are_a_configuration_error(env: dict[str, str]) -> None:
    with pytest.raises(BatchError, match="CLOUD_RUN_TASK"):
        Shard.from_env(env)


def test_a_success_outranks_a_failure_whatever_the_order() -> None:
    ok = {"input": "a", "animal": "fox", "status": "succeeded"}
    bad = {"input": "a", "animal": "fox", "status": "failed"}
    assert combine([ok, bad])[("a", "fox")] is ok
    assert combine([bad, ok])[("a", "fox")] is ok
    later = {**bad, "error": "later"}
    assert combine([bad, later])[("a", "fox")] is later


def test_lines_that_are_not_ours_are_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    data = b'{"input":"a","animal":"fox","status":"failed"}\nnot json\n[1]\n{"input":"b"}\n{"inp'
    assert [line["input"] for line in parse(data, "m.jsonl")] == ["a"]
    assert capsys.readouterr().err.count("is not a manifest line") == 3
