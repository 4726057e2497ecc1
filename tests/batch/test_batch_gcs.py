"""INPUT and OUTPUT as gs:// prefixes, through google-cloud-storage and gcp-storage-emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from batch_testing import BUCKET, FACES, INPUTS, RunBatch

from batch.manifest import MANIFEST


def upload(bucket: Any, photos: dict[str, bytes], prefix: str) -> None:
    for name, data in photos.items():
        bucket.blob(f"{prefix}{name}").upload_from_string(data)
    bucket.blob(f"{prefix}.hidden/x.jpg").upload_from_string(b"not an input")
    bucket.blob(f"{prefix}empty-folder/").upload_from_string(b"")  # a console "folder"


def manifest_lines(bucket: Any, prefix: str, name: str = MANIFEST) -> list[dict[str, Any]]:
    text = bucket.blob(f"{prefix}{name}").download_as_text()
    return [json.loads(line) for line in text.splitlines()]


def names(bucket: Any, prefix: str) -> set[str]:
    return {b.name.removeprefix(prefix) for b in bucket.client.list_blobs(BUCKET, prefix=prefix)}


def test_a_bucket_prefix_in_and_out(
    run_batch: RunBatch, bucket: Any, photos: dict[str, bytes]
) -> None:
    upload(bucket, photos, "drop/")
    argv = ("--input", f"gs://{BUCKET}/drop", "--output", f"gs://{BUCKET}/results/",
            "--workers", "1")  # fmt: skip

    run = run_batch(*argv, "--animal", "fox")

    assert run.code == 0, run.err
    lines = manifest_lines(bucket, "results/")
    assert len(lines) == len(INPUTS)
    by_input = {line["input"]: line for line in lines}
    for name in FACES:
        line = by_input[f"gs://{BUCKET}/drop/{name}"]
        assert line["status"] == "succeeded"
        assert line["output"] == f"gs://{BUCKET}/results/{name}.fox.jpg"
        blob = bucket.get_blob(f"results/{name}.fox.jpg")
        assert blob.content_type == "image/jpeg"
        assert blob.download_as_bytes()[:3] == b"\xff\xd8\xff"
    assert {line["status"] for line in lines} == {"succeeded", "failed"}

    assert "0 of 0 inputs" in run_batch(*argv, "--animal", "fox").out  # a rerun does nothing

    more = run_batch(*argv, "--animal", "fox,koala")  # appended to the manifest object
    assert more.code == 0
    assert len(manifest_lines(bucket, "results/")) == 2 * len(INPUTS)
    assert names(bucket, "results/") == {MANIFEST} | {
        f"{name}.{animal}.jpg" for name in FACES for animal in ("fox", "koala")
    }  # no append chunk is left behind


def test_shards_and_merge_in_a_bucket(
    run_batch: RunBatch, bucket: Any, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(bucket, photos, "in/")
    argv = ("--input", f"gs://{BUCKET}/in", "--output", f"gs://{BUCKET}/out",
            "--animal", "cat", "--workers", "1")  # fmt: skip
    monkeypatch.setenv("CLOUD_RUN_TASK_COUNT", "2")
    for index in ("0", "1"):
        monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", index)
        assert run_batch(*argv).code == 0
    parts = sorted(name for name in names(bucket, "out/") if name.startswith("manifest."))
    assert parts == ["manifest.part-00000-of-00002.jsonl", "manifest.part-00001-of-00002.jsonl"]

    monkeypatch.delenv("CLOUD_RUN_TASK_COUNT")
    monkeypatch.delenv("CLOUD_RUN_TASK_INDEX")
    assert run_batch("--output", f"gs://{BUCKET}/out", "--merge").code == 0

    assert sorted(n for n in names(bucket, "out/") if n.startswith("manifest")) == [MANIFEST]
    inputs = sorted(line["input"] for line in manifest_lines(bucket, "out/"))
    assert inputs == sorted(f"gs://{BUCKET}/in/{name}" for name in INPUTS)


def test_a_missing_bucket_is_a_configuration_error(run_batch: RunBatch, bucket: Any) -> None:
    run = run_batch("--input", "gs://no-such-bucket/in", "--output", f"gs://{BUCKET}/out",
                    "--animal", "fox")  # fmt: skip
    assert run.code == 1
    assert "gs://no-such-bucket" in run.err
