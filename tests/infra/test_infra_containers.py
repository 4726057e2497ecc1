"""The Dockerfile (hadolint, structure) and docker-compose.yml (compose-spec schema, wiring).

No Docker engine runs here: these are static checks of what `docker compose up` would do.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml
from infra_helpers import REPO, VENV_BIN

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?.+\}$")


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    """A linter from the project's virtual environment, run in the repository."""
    tool = VENV_BIN / command[0]
    assert tool.exists(), f"{tool} is missing: run `make install`"
    return subprocess.run(
        [str(tool), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


# --- Dockerfile ---------------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    done = run_tool("hadolint", "--no-color", "Dockerfile")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_does_find_a_bad_dockerfile(tmp_path: Any) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    done = run_tool("hadolint", "--no-color", str(bad))
    assert done.returncode != 0
    assert "DL3007" in done.stdout


def test_image_is_multi_stage_on_a_pinned_slim_base(dockerfile: list[str]) -> None:
    bases = [line.split()[1] for line in dockerfile if line.startswith("FROM ")]
    assert len(bases) >= 2
    for base in bases:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), base
    assert any("--from=builder" in line for line in dockerfile if line.startswith("COPY"))


def test_image_runs_as_a_non_root_user(dockerfile: list[str]) -> None:
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_image_has_a_healthcheck_and_serves_the_api(dockerfile: list[str]) -> None:
    assert any(line.startswith("HEALTHCHECK ") and " CMD " in line for line in dockerfile)
    cmd = next(line for line in reversed(dockerfile) if line.startswith("CMD "))
    assert "uvicorn api.main:create_app --factory" in cmd
    assert any("fetch_models.py" in line for line in dockerfile if line.startswith("RUN "))


def test_image_runs_in_production_by_default(dockerfile: list[str]) -> None:
    # In production the settings refuse the placeholder secrets that ship in the code.
    runtime = dockerfile[max(i for i, line in enumerate(dockerfile) if line.startswith("FROM ")) :]
    assert runtime[0].endswith(" AS runtime")
    envs = " ".join(line for line in runtime if line.startswith("ENV "))
    assert re.search(r"(^|\s)ENVIRONMENT=production(\s|$)", envs), envs


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    # Everything is excluded first; only the sources the image needs are let back in.
    assert ignore.index("*") < min(i for i, line in enumerate(ignore) if line.startswith("!"))
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed <= {"requirements.txt", "api", "cloud_functions", "scripts/fetch_models.py"}


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    done = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_check_rejects_a_broken_file(tmp_path: Any) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  api:\n    image: x\n    ports: 8000\n    restart: sometimes\n")
    done = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken))
    assert done.returncode != 0


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"api", "function", "postgres", "storage-emulator"} <= set(services)
    assert services["storage-emulator"]["profiles"] == ["gcs"]
    api_command = " ".join(services["api"]["command"])
    assert "alembic -c api/alembic.ini upgrade head &&" in api_command
    assert "uvicorn api.main:create_app --factory" in api_command
    function_command = services["function"]["command"]
    assert function_command[0] == "functions-framework"
    assert "--target=generate_animal_avatar" in function_command


def test_postgres_is_pinned_healthy_and_persistent(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+\.\d+[-\w.]*", postgres["image"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], "PostgreSQL data must live in a named volume"
    api_needs = compose["services"]["api"]["depends_on"]["postgres"]
    assert api_needs["condition"] == "service_healthy"


def test_api_and_function_share_the_media_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "function"):
        assert "media:/data/media" in services[name]["volumes"], name
        assert services[name]["environment"]["STORAGE_DIR"] == "/data/media", name
    assert "media" in compose["volumes"]
    assert services["api"]["environment"]["FUNCTION_URL"] == "http://function:8080"


def test_secrets_must_be_provided(compose: dict[str, Any]) -> None:
    services = compose["services"]
    secrets = {
        services["postgres"]["environment"]["POSTGRES_PASSWORD"],
        services["api"]["environment"]["ADMIN_API_KEY"],
        services["api"]["environment"]["MEDIA_SIGNING_KEY"],
        services["function"]["environment"]["MEDIA_SIGNING_KEY"],
    }
    names = {REQUIRED_VAR.match(value)["name"] for value in secrets if REQUIRED_VAR.match(value)}
    assert names == {"POSTGRES_PASSWORD", "ADMIN_API_KEY", "MEDIA_SIGNING_KEY"}
    assert "${POSTGRES_PASSWORD:?" in services["api"]["environment"]["DATABASE_URL"]


def test_api_and_function_run_in_production(compose: dict[str, Any]) -> None:
    # Both refuse placeholder secrets in production; compose supplies the real ones.
    for name in ("api", "function"):
        environment = compose["services"][name]["environment"]
        assert environment["ENVIRONMENT"] == "${ENVIRONMENT:-production}", name
        assert REQUIRED_VAR.match(environment["MEDIA_SIGNING_KEY"]), name
