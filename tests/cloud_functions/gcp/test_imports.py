"""Nothing of the gcp path loads a Google client library until it is used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from avatar.backends.gcp.storage import GcsStore
from avatar.backends.gcp.vertex import VertexCompositor
from avatar.backends.gcp.vision import VisionDetector
from avatar.config import Settings

REPO = Path(__file__).resolve().parents[3]


def loaded_google_cloud_modules(code: str) -> list[str]:
    """The google.cloud.* modules a fresh interpreter holds after running `code`.

    The bare `google.cloud` namespace is always there: the wheels' *-nspkg.pth files make it
    at start-up. What matters is that no client package under it is loaded.
    """
    probe = (
        "import json, sys\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('google.cloud.')]))"
    )
    env = {"PYTHONPATH": f"{REPO}:{REPO / 'cloud_functions'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{probe}"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return sorted(loaded)


@pytest.mark.slow
def test_importing_the_gcp_adapters_loads_no_google_client() -> None:
    code = (
        "import avatar.backends.gcp.vision, avatar.backends.gcp.vertex, avatar.backends.gcp.storage"
    )
    assert loaded_google_cloud_modules(code) == []


@pytest.mark.slow
def test_building_the_adapters_from_settings_loads_no_google_client() -> None:
    code = (
        "from avatar.config import Settings\n"
        "from avatar.backends.gcp import vision, vertex, storage\n"
        "s = Settings(gcp_project='p', gcs_bucket='b')\n"
        "vision.VisionDetector.from_settings(s)\n"
        "vertex.VertexCompositor.from_settings(s, None)\n"
        "storage.GcsStore.from_settings(s)"
    )
    assert loaded_google_cloud_modules(code) == []


def test_the_stages_share_the_deadline_and_build_no_client_yet() -> None:
    settings = Settings(gcp_project="p", gcs_bucket="b", gcp_deadline_s=40.0)
    detector = VisionDetector.from_settings(settings)
    compositor = VertexCompositor.from_settings(settings, None)
    store = GcsStore.from_settings(settings)
    shares = [detector._deadline_s, compositor._deadline_s, store._deadline_s]
    assert sum(shares) == pytest.approx(40.0)
    assert compositor._deadline_s == max(shares)
    assert detector._client._value is None  # built on first use
    assert compositor.model_path == (
        "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash-image"
    )
