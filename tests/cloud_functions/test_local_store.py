"""LocalFileStore: create-only atomic writes, no path escapes, the media URL contract."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from avatar.backends import build_backends
from avatar.backends.local.store import LocalFileStore
from avatar.config import Settings
from avatar.errors import Conflict, InvalidRequest

KEY = b"k"


def store(root: Path, bucket: str | None = "inputs-bucket") -> LocalFileStore:
    media = "http://api.test/media/"
    return LocalFileStore(root, media, KEY, clock=lambda: 1_000_000.5, bucket=bucket)


def test_put_then_get_an_upload_by_name_or_gs_uri(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.put("uploads/u/in.jpg", b"data", "image/jpeg")

    assert files.get("uploads/u/in.jpg") == b"data"
    assert files.get("gs://inputs-bucket/uploads/u/in.jpg") == b"data"
    assert [p.name for p in (tmp_path / "uploads" / "u").iterdir()] == ["in.jpg"]  # no temp left


@pytest.mark.parametrize(
    "uri",
    [
        "avatars/u/g.jpg",  # another user's result
        "gs://inputs-bucket/avatars/u/g.jpg",
        "gs://other-bucket/uploads/u/in.jpg",
        "uploads/../avatars/u/g.jpg",
        "uploads/",
        "gs://inputs-bucket/",
    ],
)
def test_get_reads_only_uploads_of_the_configured_bucket(tmp_path: Path, uri: str) -> None:
    files = store(tmp_path)
    files.put("avatars/u/g.jpg", b"someone's avatar", "image/jpeg")
    files.put("uploads/u/in.jpg", b"data", "image/jpeg")

    with pytest.raises(InvalidRequest):
        files.get(uri)


def test_without_a_bucket_only_bare_upload_names_are_read(tmp_path: Path) -> None:
    files = store(tmp_path, bucket=None)
    files.put("uploads/u/in.jpg", b"data", "image/jpeg")

    assert files.get("uploads/u/in.jpg") == b"data"
    with pytest.raises(InvalidRequest, match="GCS_BUCKET is unset"):
        files.get("gs://any-bucket/uploads/u/in.jpg")


def test_put_the_same_bytes_again_succeeds_without_writing(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.put("a/b.png", b"same", "image/png")
    first = (tmp_path / "a" / "b.png").stat()

    files.put("a/b.png", b"same", "image/png")  # a retry of the same write

    again = (tmp_path / "a" / "b.png").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.png"]  # no temp left


def test_put_other_bytes_is_a_conflict_and_keeps_the_old_ones(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.put("avatars/u1/g1.jpg", b"theirs", "image/jpeg")

    with pytest.raises(Conflict) as raised:
        files.put("avatars/u1/g1.jpg", b"mine", "image/jpeg")

    assert (raised.value.code, raised.value.status) == ("conflict", 409)
    assert raised.value.detail == (
        "an object named 'avatars/u1/g1.jpg' already exists; a result is never replaced"
    )
    assert (tmp_path / "avatars" / "u1" / "g1.jpg").read_bytes() == b"theirs"
    assert [p.name for p in (tmp_path / "avatars" / "u1").iterdir()] == ["g1.jpg"]


def test_a_name_taken_by_a_folder_is_a_conflict(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.put("avatars/u1/g1.jpg", b"data", "image/jpeg")

    with pytest.raises(Conflict):
        files.put("avatars/u1", b"data", "image/jpeg")
    assert (tmp_path / "avatars" / "u1" / "g1.jpg").read_bytes() == b"data"


def race(put: Callable[[bytes], None], payloads: list[bytes]) -> list[bytes]:
    """Every payload put at once, each on its own thread; the ones that won (no Conflict)."""
    start = threading.Barrier(len(payloads))
    won: list[bytes] = []

    def one(data: bytes) -> None:
        start.wait()
        try:
            put(data)
        except Conflict:
            return
        won.append(data)  # list.append is atomic

    threads = [threading.Thread(target=one, args=(data,)) for data in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


@pytest.mark.parametrize("attempt", range(10))
def test_concurrent_puts_of_different_bytes_have_exactly_one_winner(
    tmp_path: Path, attempt: int
) -> None:
    files = store(tmp_path)
    payloads = [f"writer {n} ".encode() * 10_000 for n in range(8)]

    won = race(lambda data: files.put("avatars/u/g.jpg", data, "image/jpeg"), payloads)

    assert len(won) == 1
    assert (tmp_path / "avatars" / "u" / "g.jpg").read_bytes() == won[0]
    assert [p.name for p in (tmp_path / "avatars" / "u").iterdir()] == ["g.jpg"]


def test_concurrent_puts_of_the_same_bytes_all_succeed(tmp_path: Path) -> None:
    files = store(tmp_path)
    payloads = [b"one result " * 10_000] * 8

    won = race(lambda data: files.put("avatars/u/g.jpg", data, "image/jpeg"), payloads)

    assert len(won) == len(payloads)
    assert (tmp_path / "avatars" / "u" / "g.jpg").read_bytes() == payloads[0]
    assert [p.name for p in (tmp_path / "avatars" / "u").iterdir()] == ["g.jpg"]


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../x", "/etc/passwd", "", "a\\..\\x", "gs://b/../x", "uploads/../../x"],
)
def test_names_cannot_escape_the_root(tmp_path: Path, name: str) -> None:
    files = store(tmp_path / "root")
    with pytest.raises(InvalidRequest):
        files.get(name)
    with pytest.raises(InvalidRequest):
        files.put(name.removeprefix("gs://b/"), b"x", "image/jpeg")


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("s")
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    (tmp_path / "root" / "uploads").symlink_to(tmp_path)
    with pytest.raises(InvalidRequest):
        store(tmp_path / "root").get("uploads/secret.txt")
    with pytest.raises(InvalidRequest):
        store(tmp_path / "root").signed_url("link/secret.txt", ttl_s=60)


def test_signed_url_contract(tmp_path: Path) -> None:
    url = store(tmp_path).signed_url("avatars/u1/g1.jpg", ttl_s=3600)

    expected = hmac.new(KEY, b"avatars/u1/g1.jpg\n1003600", hashlib.sha256).hexdigest()
    assert url == f"http://api.test/media/avatars/u1/g1.jpg?expires=1003600&signature={expected}"


def test_factory_builds_local_backends_once(tmp_path: Path) -> None:
    settings = Settings(storage_dir=tmp_path, avatar_backend="local")

    backends = build_backends(settings)

    assert build_backends(settings) is backends
    assert (backends.detector.name, backends.compositor.name, backends.store.name) == (
        "local",
        "local",
        "local",
    )
    assert type(backends.masker).__name__ == "SegmentationMasker"


def test_the_api_accepts_the_signed_url(tmp_path: Path) -> None:
    from urllib.parse import parse_qs, urlsplit

    from api.security import media_signature_valid

    url = urlsplit(store(tmp_path).signed_url("avatars/u1/g1.jpg", ttl_s=60))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    name = url.path.removeprefix("/media/")

    valid = media_signature_valid(
        KEY.decode(), name, int(query["expires"]), query["signature"], now=1_000_000
    )
    assert valid
    assert not media_signature_valid(
        KEY.decode(), name, int(query["expires"]), query["signature"], now=1_000_061
    )


def test_factory_wires_gcp_adapters_by_settings(tmp_path: Path) -> None:
    settings = Settings(avatar_backend="gcp", gcp_project="p", gcs_bucket="b", storage_dir=tmp_path)

    backends = build_backends(settings)

    assert (backends.detector.name, backends.compositor.name, backends.store.name) == (
        "gcp",
        "gcp",
        "gcs",
    )
    assert type(backends.masker).__name__ == "ContourMasker"  # Vision gives no segmentation


def test_factory_mixes_local_detection_with_gcp_compositing(tmp_path: Path) -> None:
    settings = Settings(
        avatar_backend="gcp", avatar_detector="local", avatar_store="local",
        gcp_project="p", storage_dir=tmp_path,
    )  # fmt: skip

    backends = build_backends(settings)

    assert (backends.detector.name, backends.compositor.name, backends.store.name) == (
        "local",
        "gcp",
        "local",
    )
    assert type(backends.masker).__name__ == "SegmentationMasker"
