"""The folder Terraform zips and deploys (cloud_functions/) stands on its own in the cloud.

Deployed, the function has only cloud_functions/requirements.txt installed: no local-model
runtime (ai-edge-litert) and no `api` package. A subprocess imports it that way, configured as
Terraform configures it, and serves a request.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from infra_helpers import REPO

SOURCE = REPO / "cloud_functions"
PINNED = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==[\w.\-+]+$")

# Imports the deployed function must not need; a finder makes them fail like a missing package.
PROBE = """
import importlib.abc, json, sys
BLOCKED = {"ai_edge_litert", "api", "mediapipe"}
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not deployed with the function")
sys.meta_path.insert(0, Missing())
sys.path.insert(0, ".")
import functions_framework
from avatar.backends import build_backends
from avatar.config import get_settings
app = functions_framework.create_app(target="generate_animal_avatar", source="main.py")
client = app.test_client()
garbage = client.post("/?animal=cat", data=b"not an image", content_type="image/png")
backends = build_backends(get_settings())
print(json.dumps({
    "post": [garbage.status_code, garbage.get_json()],
    "get": client.get("/").status_code,
    "backends": {k: type(v).__module__ for k, v in vars(backends).items()},
}))
"""


def run_as_deployed(terraform_env: dict[str, Any]) -> dict[str, Any]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    env |= {name: value for name, value in terraform_env.items() if "${" not in value}
    env |= {"GCP_PROJECT": "demo-project", "GCS_BUCKET": "demo-results", "GCP_DEADLINE_S": "5"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", PROBE],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_source_folder_has_main_and_pinned_requirements() -> None:
    assert (SOURCE / "main.py").is_file()
    lines = (SOURCE / "requirements.txt").read_text().splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert requirements
    for line in requirements:
        assert PINNED.match(line), f"not a pinned package (no -r, -e or paths): {line}"


def test_function_runs_with_only_its_own_packages(terraform: dict[str, Any]) -> None:
    function = terraform["resource"]["google_cloudfunctions2_function"]["main"]
    result = run_as_deployed(function["service_config"][0]["environment_variables"])
    status, body = result["post"]
    assert (status, body["error"]) == (415, "unsupported_image")
    assert result["get"] == 405
    modules = set(result["backends"].values())
    assert not any(".local." in module for module in modules), modules
    assert "avatar.backends.gcp.storage" in modules
