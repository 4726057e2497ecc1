"""The API and the function are two services that meet only over HTTP.

`api/` imports nothing of `cloud_functions/` (nor of `batch/`, the batch job, which imports the
function's pipeline), runs without the function's packages, and its requirements install none
of them (no Cloud Vision, Vertex AI or LiteRT in its environment).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
# Packages of the function that the API must never load, by import name and by distribution.
FUNCTION_MODULES = ("avatar", "google.cloud.vision", "google.cloud.aiplatform", "ai_edge_litert")
FUNCTION_DISTRIBUTIONS = {
    "google-cloud-vision",
    "google-cloud-aiplatform",
    "ai-edge-litert",
    "mediapipe",
    "functions-framework",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path", sorted((REPO / "api").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_no_api_module_imports_the_functions_code(path: Path) -> None:
    forbidden = {
        name
        for name in imported_modules(path)
        if name.partition(".")[0] in {"avatar", "cloud_functions", "main", "batch"}
        or name.startswith(FUNCTION_MODULES[1:])
    }
    assert not forbidden, f"{path.relative_to(REPO)} imports {forbidden}"


# Runs the API with the function's packages made unimportable (as in the API's own image), then
# reports which of them got loaded anyway: none may.
PROBE = """
import importlib.abc, json, sys, tempfile
BLOCKED = {blocked!r}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
            raise ModuleNotFoundError(f"{{name}} is not in the API's environment")
sys.meta_path.insert(0, NotInstalled())
sys.path[:0] = [{repo!r}]
import api.main
from fastapi.testclient import TestClient
from api.config import Settings
db = tempfile.mkdtemp()
settings = Settings(database_url=f"sqlite+aiosqlite:///{{db}}/api.db", storage_dir=db)
with TestClient(api.main.create_app(settings)) as client:
    statuses = [client.get(p).status_code for p in ("/healthz", "/v1/animals", "/openapi.json")]
loaded = sorted(m for m in sys.modules if m in BLOCKED or m.startswith(tuple(BLOCKED)))
google_clients = sorted(m for m in sys.modules if m.startswith("google.cloud."))
# What only WORK_QUEUE=cloud_tasks needs: its client, and the OIDC check (which loads cryptography).
queue_only = sorted(m for m in ("api.work.cloud_tasks", "api.work.oidc", "cryptography")
                    if m in sys.modules)
print(json.dumps({{"statuses": statuses, "loaded": loaded, "google_clients": google_clients,
                  "queue_only": queue_only}}))
"""


def test_the_api_starts_and_serves_without_the_functions_packages() -> None:
    probe = PROBE.format(blocked=FUNCTION_MODULES, repo=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # With the local store, not even google-cloud-storage (the API's own) is loaded; with the
    # in-process queue, nothing of Cloud Tasks.
    assert result == {
        "statuses": [200, 200, 200],
        "loaded": [],
        "google_clients": [],
        "queue_only": [],
    }


def requirement_names(path: Path) -> set[str]:
    """The distributions a requirements file names, following `-r` includes."""
    names: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= requirement_names(path.parent / line[2:].strip())
        elif line:
            names.add(canonical(re.split(r"[\[=<>~! ;]", line, maxsplit=1)[0]))
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: set[str]) -> set[str]:
    """Every distribution the named ones need on this platform (installed metadata; the
    extras a requirements line asks for, like uvicorn[standard], are not followed)."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonical(requirement.name))
    return seen


def test_the_apis_requirements_install_none_of_the_functions_packages() -> None:
    api_requirements = requirement_names(REPO / "requirements.txt")
    installed = closure(api_requirements)
    assert not installed & FUNCTION_DISTRIBUTIONS, installed & FUNCTION_DISTRIBUTIONS
    # ...while the function's own requirements do name them (the check above can fail).
    function_requirements = requirement_names(REPO / "cloud_functions" / "requirements-local.txt")
    assert {"google-cloud-vision", "ai-edge-litert"} <= closure(function_requirements)
