"""LocalFileStore: atomic writes, no path escapes, the media URL contract."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from avatar.backends import build_backends
from avatar.backends.local.store import LocalFileStore
from avatar.config import Settings
from avatar.errors import InvalidRequest

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


def test_put_replaces_whole_files(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.put("a/b.png", b"old", "image/png")
    files.put("a/b.png", b"new", "image/png")
    assert (tmp_path / "a" / "b.png").read_bytes() == b"new"


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
