"""The Dockerfile (hadolint, its targets), docker-compose.yml (compose-spec schema, wiring)
and the split requirements the images install: one image per service, and the batch job's.

No Docker engine runs here: these are static checks of what `docker build` and
`docker compose up` would do. The Dockerfile is read as stages; a stage inherits ENV and WORKDIR
from the stage it is built on (FROM <stage>, its lineage); a target's chain is its stage plus
every stage it builds on or copies from (COPY --from=<stage>), recursively: what
`docker build --target <name>` builds.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_helpers import REPO, VENV_BIN

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?.+\}$")
PINNED_BASE = re.compile(r"python:3\.\d+\.\d+-slim-\w+")
# The requirement files of a `pip install` command line.
PIP_REQUIREMENT = re.compile(r"(?:-r|--requirement)[ =](\S+)")

API_REQUIREMENTS = REPO / "requirements.txt"
FUNCTION_REQUIREMENTS = sorted((REPO / "cloud_functions").glob("requirements*.txt"))
BATCH_REQUIREMENTS = REPO / "batch" / "requirements.txt"
# The function's packages: the API's image (and requirements.txt) must not carry them.
FUNCTION_ONLY_PACKAGES = {"google-cloud-vision", "google-cloud-aiplatform", "ai-edge-litert"}
# What each image may take from the build context.
API_SOURCES = {"requirements.txt", "api"}
FUNCTION_SOURCES = {"cloud_functions", "scripts/fetch_models.py"}
BATCH_SOURCES = {"batch"}
# The runtimes: the two services' images and the batch job's.
RUNTIMES = ("api", "function", "batch")


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    """A linter from the project's virtual environment, run in the repository."""
    tool = VENV_BIN / command[0]
    assert tool.exists(), f"{tool} is missing: run `make install`"
    return subprocess.run(
        [str(tool), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=120
    )


# --- reading the Dockerfile ---------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    """One COPY: `source_stage` is None for the build context."""

    source_stage: str | None
    sources: tuple[str, ...]
    dest: str
    chown: str | None


def parse_copy(args: str) -> Copy:
    """A COPY instruction's arguments (shell form: flags, sources, destination)."""
    words = shlex.split(args)
    flags = {w.partition("=")[0]: w.partition("=")[2] for w in words if w.startswith("--")}
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, f"COPY needs a source and a destination: {args}"
    return Copy(flags.get("--from"), tuple(paths[:-1]), paths[-1], flags.get("--chown"))


@dataclass
class Stage:
    name: str
    base: str
    lines: list[str]
    # The stage this one is built on (FROM <stage>), None on an image.
    parent: Stage | None = field(default=None, repr=False)

    def lineage(self) -> list[Stage]:
        """This stage, then the stage it is built on, and so on up to an image."""
        return [self, *(self.parent.lineage() if self.parent else [])]

    def instructions(self, keyword: str) -> list[str]:
        """The arguments of every `keyword` instruction of the stage, in order."""
        prefix = f"{keyword} "
        return [line[len(prefix) :].strip() for line in self.lines if line.startswith(prefix)]

    def copies(self) -> list[Copy]:
        return [parse_copy(args) for args in self.instructions("COPY")]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs, inherited ones included (the only ENV form this Dockerfile uses)."""
        return {
            key: value
            for stage in reversed(self.lineage())
            for args in stage.instructions("ENV")
            for key, _, value in (word.partition("=") for word in args.split())
        }

    def workdir(self) -> str:
        """The WORKDIR in effect at the end of the stage, inherited if it sets none."""
        workdirs = [w for stage in reversed(self.lineage()) for w in stage.instructions("WORKDIR")]
        assert workdirs, f"stage {self.name} has no WORKDIR"
        return workdirs[-1]

    def exec_form(self, keyword: str) -> list[str]:
        """The last CMD/HEALTHCHECK's command in exec form (JSON), as a list."""
        args = self.instructions(keyword)
        assert args, f"stage {self.name} has no {keyword}"
        command = args[-1].partition("CMD ")[2] if keyword == "HEALTHCHECK" else args[-1]
        parsed = json.loads(command)
        assert isinstance(parsed, list), f"{keyword} of {self.name} is not in exec form"
        return [str(word) for word in parsed]


def parse_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", text)
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            match = re.fullmatch(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
            assert match, f"every stage is named (FROM image AS name): {line}"
            parent = next((stage for stage in stages if stage.name == match[1]), None)
            stages.append(Stage(name=match[2], base=match[1], lines=[], parent=parent))
        else:
            assert stages, f"an instruction before the first FROM: {line}"
            stages[-1].lines.append(line)
    return stages


def chain(stages: dict[str, Stage], target: str) -> list[Stage]:
    """The stages `docker build --target <target>` builds: the target and what it depends on."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.append(name)
        stage = stages[name]
        if stage.base in stages:
            visit(stage.base)
        for copy in stage.copies():
            if copy.source_stage is not None:
                assert copy.source_stage in stages, f"COPY --from an unknown stage in {name}"
                visit(copy.source_stage)

    visit(target)
    return [stages[name] for name in seen]


def chain_text(stages: list[Stage]) -> str:
    return "\n".join(line for stage in stages for line in stage.lines)


def context_sources(stages: list[Stage]) -> set[str]:
    """Everything the chain copies from the build context, trailing slashes dropped."""
    return {
        source.rstrip("/") or "."
        for stage in stages
        for copy in stage.copies()
        if copy.source_stage is None
        for source in copy.sources
    }


def pip_installs(stages: list[Stage]) -> list[str]:
    """The requirement files the chain installs with `pip install -r`."""
    return [
        file
        for stage in stages
        for run in stage.instructions("RUN")
        if "pip install" in run
        for file in PIP_REQUIREMENT.findall(run)
    ]


def cli_flags(words: list[str]) -> dict[str, str]:
    """`--name value` and `--name=value` options of a command line, by name."""
    flags: dict[str, str] = {}
    rest = iter(words)
    for word in rest:
        assert word.startswith("--"), f"not an option: {word}"
        name, equals, value = word.partition("=")
        flags[name] = value if equals else next(rest)
    return flags


def resolve(path: str, workdir: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, path))


@pytest.fixture(scope="module")
def stage_list() -> list[Stage]:
    return parse_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def stages(stage_list: list[Stage]) -> dict[str, Stage]:
    names = [stage.name for stage in stage_list]
    assert len(names) == len(set(names)), f"stage names repeat: {names}"
    return {stage.name: stage for stage in stage_list}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


# --- Dockerfile: lint, stages -------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    done = run_tool("hadolint", "--no-color", "Dockerfile")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_does_find_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    done = run_tool("hadolint", "--no-color", str(bad))
    assert done.returncode != 0
    assert "DL3007" in done.stdout


def test_image_targets_exist_and_api_is_the_default(stage_list: list[Stage]) -> None:
    names = [stage.name for stage in stage_list]
    assert {"api", "function", "batch", "storage-emulator"} <= set(names), names
    # A plain `docker build .` builds the last stage: the API, which infra deploys to Cloud Run.
    assert names[-1] == "api", names


def test_every_stage_is_on_the_same_pinned_slim_base(stage_list: list[Stage]) -> None:
    # A stage is built either on an earlier stage or on the one base image.
    bases = {stage.base for stage in stage_list if stage.parent is None}
    assert len(bases) == 1, f"bump every FROM line together: {bases}"
    assert PINNED_BASE.fullmatch(bases.pop())


def test_the_stage_reader_follows_copy_from_and_from() -> None:
    text = (
        "FROM python:3.11.14-slim-bookworm AS a\nRUN pip install --no-cache-dir -r x.txt\n"
        "FROM python:3.11.14-slim-bookworm AS b\nCOPY y.txt \\\n  ./\n"
        "FROM python:3.11.14-slim-bookworm AS c\n# a comment\nCOPY --from=a /opt/venv /opt/venv\n"
        "ENV K=1 L=1\nWORKDIR /app\n"
        "FROM c AS d\nENV L=2\n"
    )
    stages = {stage.name: stage for stage in parse_stages(text)}
    assert [stage.name for stage in chain(stages, "c")] == ["c", "a"]
    assert pip_installs(chain(stages, "c")) == ["x.txt"]
    assert context_sources(chain(stages, "b")) == {"y.txt"}
    # FROM <stage>: d inherits c's ENV (its own value wins) and WORKDIR, and needs c's chain.
    assert [stage.name for stage in stages["d"].lineage()] == ["d", "c"]
    assert stages["c"].parent is None
    assert stages["d"].env() == {"K": "1", "L": "2"}
    assert stages["d"].workdir() == "/app"
    assert [stage.name for stage in chain(stages, "d")] == ["d", "c", "a"]


@pytest.mark.parametrize("target", RUNTIMES)
def test_each_target_builds_its_venv_in_a_builder(stages: dict[str, Stage], target: str) -> None:
    runtime = stages[target]
    venv = [c for c in runtime.copies() if c.sources == ("/opt/venv",)]
    assert len(venv) == 1, f"{target} copies no venv from a builder"
    builder = venv[0].source_stage
    assert builder is not None
    assert builder != target
    # The runtime (nor a stage it is built on) installs nothing itself: the builder's venv is
    # the image's only packages.
    for stage in runtime.lineage():
        assert not any("pip install" in run for run in stage.instructions("RUN")), stage.name
    assert runtime.env()["PATH"].startswith("/opt/venv/bin:"), target


def builders(stages: dict[str, Stage]) -> list[Stage]:
    """The stages the runtimes copy from."""
    names = {c.source_stage for t in RUNTIMES for c in stages[t].copies()}
    return [stages[name] for name in sorted(name for name in names if name is not None)]


def test_builders_install_requirements_before_copying_code(stages: dict[str, Stage]) -> None:
    # Layer caching: a code change must not reinstall every package.
    for builder in builders(stages):
        workdir = builder.workdir()
        requirements: set[str] = set()
        code_copied = False
        installs = 0
        for line in builder.lines:
            if line.startswith("COPY "):
                copy = parse_copy(line[len("COPY ") :])
                for source in copy.sources:
                    if source.endswith(".txt"):
                        into = copy.dest if copy.dest.endswith("/") else copy.dest + "/"
                        requirements.add(resolve(into + posixpath.basename(source), workdir))
                    else:
                        code_copied = True
            elif line.startswith("RUN ") and "pip install" in line:
                installs += 1
                assert not code_copied, f"{builder.name}: code is copied before pip install"
                assert "--no-cache-dir" in line, line
                for file in PIP_REQUIREMENT.findall(line):
                    copied = resolve(file, workdir) in requirements
                    assert copied, f"{builder.name}: {file} is installed before it is copied"
        assert installs == 1, f"{builder.name} runs pip install {installs} times"


def test_api_target_installs_only_the_api_requirements(stages: dict[str, Stage]) -> None:
    api = chain(stages, "api")
    assert pip_installs(api) == ["requirements.txt"]
    text = chain_text(api)
    for word in ("cloud_functions", "ai-edge-litert", "fetch_models", "/opt/models", "MODEL_DIR"):
        assert word not in text, f"the api image mentions {word}"
    assert context_sources(api) <= API_SOURCES, context_sources(api)
    assert "api" in context_sources(api)


def test_function_target_installs_only_the_function_requirements(
    stages: dict[str, Stage],
) -> None:
    function = chain(stages, "function")
    assert pip_installs(function) == ["cloud_functions/requirements-local.txt"]
    # Never the API's code or requirements, nor the whole context.
    assert context_sources(function) <= FUNCTION_SOURCES | {
        f"cloud_functions/{path.name}" for path in FUNCTION_REQUIREMENTS
    }, context_sources(function)
    assert "requirements.txt" not in context_sources(function)
    assert not any(source.startswith("api") for source in context_sources(function))


def test_function_models_are_fetched_at_build_time(stages: dict[str, Stage]) -> None:
    function = chain(stages, "function")
    fetch = [
        (stage, run)
        for stage in function
        for run in stage.instructions("RUN")
        if "scripts/fetch_models.py" in run
    ]
    assert len(fetch) == 1
    builder, run = fetch[0]
    assert "--model-dir /opt/models" in run
    # The script imports `avatar` from ../cloud_functions: both copied side by side.
    dests = {
        source.rstrip("/"): resolve(copy.dest, builder.workdir())
        for copy in builder.copies()
        for source in copy.sources
    }
    script_dir = posixpath.dirname(resolve("scripts/fetch_models.py", builder.workdir()))
    assert dests["scripts/fetch_models.py"] == script_dir
    side_by_side = posixpath.join(posixpath.dirname(script_dir), "cloud_functions")
    assert dests["cloud_functions"] == side_by_side
    models = [c for c in stages["function"].copies() if c.sources == ("/opt/models",)]
    assert [(c.source_stage, c.dest) for c in models] == [(builder.name, "/opt/models")]
    assert stages["function"].env()["MODEL_DIR"] == "/opt/models"


def function_source_in_image(stages: dict[str, Stage]) -> str:
    """Where the function image puts cloud_functions/main.py."""
    runtime = stages["function"]
    copies = [c for c in runtime.copies() if c.source_stage is None]
    assert [c.sources for c in copies] == [("cloud_functions/",)], "copy the folder's contents"
    dest = resolve(copies[0].dest, runtime.workdir())
    return posixpath.join(dest, "main.py")


@pytest.mark.parametrize("target", RUNTIMES)
def test_runtimes_run_as_a_non_root_user(stages: dict[str, Stage], target: str) -> None:
    users = stages[target].instructions("USER")
    assert users, f"{target} has no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}, target
    # The code belongs to root: the app user cannot rewrite it.
    for copy in stages[target].copies():
        if copy.source_stage is None:
            assert copy.chown == "root:root", f"{target}: {copy.sources} --chown=root:root"


@pytest.mark.parametrize(("target", "port"), [("api", "8000"), ("function", "8080")])
def test_runtimes_run_in_production_with_a_healthcheck(
    stages: dict[str, Stage], target: str, port: str
) -> None:
    # In production the settings refuse the placeholder secrets that ship in the code.
    runtime = stages[target]
    env = runtime.env()
    assert env["ENVIRONMENT"] == "production", target
    assert env["PORT"] == port, target
    assert env["STORAGE_DIR"] == "/data/media", target
    assert runtime.instructions("EXPOSE") == [port], target
    healthcheck = runtime.exec_form("HEALTHCHECK")
    assert "PORT" in " ".join(healthcheck), "the healthcheck follows $PORT"


def test_api_image_serves_the_api(stages: dict[str, Stage]) -> None:
    cmd = stages["api"].exec_form("CMD")
    assert cmd[:2] == ["sh", "-c"]
    assert cmd[2].startswith("exec uvicorn api.main:create_app --factory --host 0.0.0.0 ")
    assert '--port "${PORT}"' in cmd[2]
    assert "/healthz" in " ".join(stages["api"].exec_form("HEALTHCHECK"))
    copies = [c for c in stages["api"].copies() if c.source_stage is None]
    assert [(c.sources, resolve(c.dest, stages["api"].workdir())) for c in copies] == [
        (("api/",), "/app/api")
    ]
    # alembic.ini puts its folder's parent on sys.path; uvicorn and `python -c` need /app too.
    assert stages["api"].env()["PYTHONPATH"] == "/app"


LOG_CONFIG = "api/observability/logging.json"
RUN_LOCAL = REPO / "scripts" / "run-local.sh"


def uvicorn_flags(command: str) -> dict[str, str]:
    """The options of the `uvicorn api.main:create_app` in a shell command line (after any
    `... &&`), `--factory` (which takes no value) left out."""
    words = shlex.split(command.replace("\\\n", " "))
    start = words.index("api.main:create_app") + 1
    options = [w for w in words[start:] if w != "--factory"]
    # run-local.sh's line ends with a redirection and `&`: not options.
    options = options[: next((i for i, w in enumerate(options) if w in {"&", "</dev/null"}), None)]
    return cli_flags(options)


def test_every_api_server_loads_the_log_config(
    stages: dict[str, Stage], compose: dict[str, Any], ignore_rules: list[str]
) -> None:
    # The image's command, compose's (which replaces it to migrate first) and `make run`'s: each
    # server logs through api/observability/logging.json (LOG_FORMAT: JSON lines or text).
    assert (REPO / LOG_CONFIG).is_file()
    image = stages["api"]
    assert uvicorn_flags(image.exec_form("CMD")[2]).get("--log-config") == LOG_CONFIG
    # A path relative to the image's WORKDIR, inside what the image copies from api/.
    in_image = resolve(LOG_CONFIG, image.workdir())
    assert in_image.startswith("/app/api/"), in_image
    assert dockerignore_allows(LOG_CONFIG, ignore_rules)
    compose_command = compose["services"]["api"]["command"][2]
    assert uvicorn_flags(compose_command).get("--log-config") == LOG_CONFIG
    script = RUN_LOCAL.read_text()
    uvicorn_line = re.search(r'^"\$VENV/bin/uvicorn" .*?&$', script, re.MULTILINE | re.DOTALL)
    assert uvicorn_line, "run-local.sh starts no uvicorn"
    assert uvicorn_flags(uvicorn_line[0]).get("--log-config") == LOG_CONFIG
    # The script runs from the repository's root, where the relative path holds.
    assert 'cd "$(dirname "$0")/.."' in script


def test_function_image_serves_the_function(stages: dict[str, Stage]) -> None:
    runtime = stages["function"]
    cmd = shlex.split(" ".join(runtime.exec_form("CMD")[2:]))
    assert runtime.exec_form("CMD")[:2] == ["sh", "-c"]
    assert cmd[:2] == ["exec", "functions-framework"]
    flags = cli_flags(cmd[2:])
    assert flags["--target"] == "generate_animal_avatar"
    assert flags["--host"] == "0.0.0.0"
    assert flags["--port"] == "${PORT}"
    assert resolve(flags["--source"], runtime.workdir()) == function_source_in_image(stages)
    # The function has no GET route (405): alive means its port accepts a connection.
    healthcheck = " ".join(runtime.exec_form("HEALTHCHECK"))
    assert "socket.create_connection" in healthcheck
    assert "urllib" not in healthcheck


def venv_builder(stages: dict[str, Stage], target: str) -> Stage:
    """The stage whose /opt/venv a runtime copies."""
    (copy,) = [c for c in stages[target].copies() if c.sources == ("/opt/venv",)]
    assert copy.source_stage is not None
    return stages[copy.source_stage]


def included_files(path: Path) -> list[Path]:
    """A requirements file and every file it pulls in with -r, recursively."""
    return [path.resolve(), *(f for included in includes(path) for f in included_files(included))]


def test_batch_target_installs_the_batch_requirements(stages: dict[str, Stage]) -> None:
    builder = venv_builder(stages, "batch")
    assert pip_installs([builder]) == ["batch/requirements.txt"]
    # pip follows batch/requirements.txt's `-r ../...` relative to it: every file it pulls in is
    # copied into the builder at the place the repository has it (before the install, per
    # test_builders_install_requirements_before_copying_code).
    workdir = builder.workdir()
    copied = {
        resolve(posixpath.join(copy.dest, posixpath.basename(source)), workdir)
        for copy in builder.copies()
        for source in copy.sources
    }
    needed = {
        resolve(str(path.relative_to(REPO)), workdir) for path in included_files(BATCH_REQUIREMENTS)
    }
    assert len(needed) == 4, needed  # batch's, the function's two, the API's
    assert needed <= copied, needed - copied
    # Only requirement files: the builder copies no code.
    assert all(source.endswith(".txt") for copy in builder.copies() for source in copy.sources)


def test_batch_requirements_are_both_services_plus_the_cli() -> None:
    included = includes(BATCH_REQUIREMENTS)
    assert (REPO / "cloud_functions" / "requirements-local.txt").resolve() in included
    assert API_REQUIREMENTS.resolve() in included
    # One venv for both services' packages: pins() refuses a package pinned twice differently.
    batch = pins(BATCH_REQUIREMENTS)
    function = pins(REPO / "cloud_functions" / "requirements-local.txt")
    assert set(pins(API_REQUIREMENTS)) | set(function) <= set(batch)


def test_batch_image_runs_the_batch_cli_on_both_services_code(stages: dict[str, Stage]) -> None:
    batch = stages["batch"]
    assert batch.exec_form("ENTRYPOINT") == ["python", "-m", "batch"]
    assert batch.exec_form("CMD") == ["--help"]  # a bare `docker run` prints the usage
    env = batch.env()
    # `api` and `batch` from /app, the function's `avatar` as deployed (its folder on sys.path).
    assert env["PYTHONPATH"] == "/app:/app/cloud_functions"
    assert env["ENVIRONMENT"] == "production"
    assert env["STORAGE_DIR"] == "/data/media"
    copies = [c for c in batch.copies() if c.source_stage is None]
    assert [(c.sources, resolve(c.dest, batch.workdir())) for c in copies] == [
        (("api/",), "/app/api"),
        (("cloud_functions/",), "/app/cloud_functions"),
        (("batch/",), "/app/batch"),
    ]
    # A job, not a server.
    assert not batch.instructions("EXPOSE")
    assert batch.instructions("HEALTHCHECK") == ["NONE"]


def test_batch_image_takes_the_functions_models_only(stages: dict[str, Stage]) -> None:
    batch = stages["batch"]
    models = [c for c in batch.copies() if c.sources == ("/opt/models",)]
    assert len(models) == 1
    assert models[0].dest == "/opt/models"
    assert batch.env()["MODEL_DIR"] == "/opt/models"
    # The stage that fetched them (test_function_models_are_fetched_at_build_time): its models,
    # not its venv; the batch venv is the batch builder's.
    fetcher = stages[models[0].source_stage or ""]
    assert any("scripts/fetch_models.py" in run for run in fetcher.instructions("RUN"))
    from_fetcher = [c.sources for c in batch.copies() if c.source_stage == fetcher.name]
    assert from_fetcher == [("/opt/models",)]
    assert venv_builder(stages, "batch").name != fetcher.name


def test_storage_emulator_stage_runs_unprivileged(stages: dict[str, Stage]) -> None:
    emulator = stages["storage-emulator"]
    assert any("gcp-storage-emulator==" in run for run in emulator.instructions("RUN"))
    assert emulator.instructions("USER")[-1].split(":")[0] not in {"root", "0"}


# --- .dockerignore ------------------------------------------------------------------------------


def dockerignore_allows(path: str, rules: list[str]) -> bool:
    """Whether the build context keeps `path`: the last matching rule wins (Docker's semantics,
    simplified to the patterns used here; a directory rule covers what is under it)."""
    kept = True
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            kept = negated
    return kept


@pytest.fixture(scope="module")
def ignore_rules() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_is_an_allowlist_of_what_the_images_need(ignore_rules: list[str]) -> None:
    # Everything is excluded first; only the sources the images need are let back in.
    assert ignore_rules[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore_rules if line.startswith("!")}
    assert allowed <= API_SOURCES | FUNCTION_SOURCES | BATCH_SOURCES, allowed
    for secret in (".env", ".venv/bin/python", ".git/config", "infra/terraform.tfvars"):
        assert not dockerignore_allows(secret, ignore_rules), secret
    assert not dockerignore_allows("api/__pycache__/main.cpython-311.pyc", ignore_rules)


def test_dockerignore_keeps_everything_the_dockerfile_copies(
    stages: dict[str, Stage], ignore_rules: list[str]
) -> None:
    for source in context_sources(list(stages.values())):
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert dockerignore_allows(source, ignore_rules), f".dockerignore drops {source}"
    needed_files = (
        "cloud_functions/main.py",
        "cloud_functions/avatar/models.py",
        "api/main.py",
        "batch/__main__.py",
        "batch/requirements.txt",
    )
    for needed in needed_files:
        assert dockerignore_allows(needed, ignore_rules), needed


# --- the split requirements ---------------------------------------------------------------------


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def includes(path: Path) -> list[Path]:
    """The files a requirements file pulls in with -r / --requirement / -c."""
    found = []
    for line in requirement_lines(path):
        match = re.fullmatch(r"(?:-r|--requirement|-c|--constraint)[ =]?\s*(\S+)", line)
        if match:
            found.append((path.parent / match[1]).resolve())
    return found


def pins(path: Path) -> dict[str, str]:
    """name -> pinned version of a requirements file, its includes followed."""
    found: dict[str, str] = {}
    for included in includes(path):
        found |= pins(included)
    for line in requirement_lines(path):
        if line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([\w.+-]+)", line)
        assert match, f"{path.name}: not a pinned package: {line}"
        name = normalize(match[1])
        assert found.get(name, match[3]) == match[3], f"{path.name} pins {name} twice, differently"
        found[name] = match[3]
    return found


def test_api_requirements_hold_none_of_the_functions_packages() -> None:
    for included in includes(API_REQUIREMENTS):
        assert "cloud_functions" not in included.parts, f"requirements.txt includes {included}"
    api = pins(API_REQUIREMENTS)
    assert {"fastapi", "uvicorn", "alembic"} <= set(api)
    assert not set(api) & FUNCTION_ONLY_PACKAGES, set(api) & FUNCTION_ONLY_PACKAGES


def test_function_local_requirements_are_the_deployed_ones_plus_litert() -> None:
    local = REPO / "cloud_functions" / "requirements-local.txt"
    deployed = REPO / "cloud_functions" / "requirements.txt"
    assert includes(local) == [deployed.resolve()]
    assert set(pins(local)) - set(pins(deployed)) == {"ai-edge-litert"}


@pytest.mark.parametrize("function_file", FUNCTION_REQUIREMENTS, ids=lambda p: p.name)
def test_shared_packages_are_pinned_alike(function_file: Path) -> None:
    # One development environment (requirements-dev.txt) holds both services.
    api, function = pins(API_REQUIREMENTS), pins(function_file)
    shared = set(api) & set(function)
    assert shared, "no package in common: is the parser reading the files?"
    differing = {
        name: (api[name], function[name]) for name in shared if api[name] != function[name]
    }
    assert not differing, f"requirements.txt vs {function_file.name}: {differing}"


def test_dev_requirements_hold_both_services() -> None:
    dev = includes(REPO / "requirements-dev.txt")
    assert API_REQUIREMENTS.resolve() in dev
    assert (REPO / "cloud_functions" / "requirements-local.txt").resolve() in dev


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    done = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  api:\n    image: x\n    ports: 8000\n    restart: sometimes\n")
    done = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken))
    assert done.returncode != 0


def test_compose_builds_each_service_from_its_target(
    compose: dict[str, Any], stages: dict[str, Stage]
) -> None:
    services = compose["services"]
    expected = {
        "api": ("api", "${API_IMAGE:-animal-avatar-api:local}"),
        "function": ("function", "${FUNCTION_IMAGE:-animal-avatar-function:local}"),
        "batch": ("batch", "${BATCH_IMAGE:-animal-avatar-batch:local}"),
        "storage-emulator": ("storage-emulator", None),
    }
    for name, (target, image) in expected.items():
        build = services[name]["build"]
        assert (build["context"], build["target"]) == (".", target), name
        if image is not None:
            assert services[name]["image"] == image, name
    images = [services[name]["image"] for name in expected]
    assert len(set(images)) == len(images), f"two services share an image tag: {images}"
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["target"] in stages, f"{name}: no such stage"


def test_compose_runs_the_whole_stack(compose: dict[str, Any], stages: dict[str, Stage]) -> None:
    services = compose["services"]
    assert {"api", "function", "postgres", "storage-emulator"} <= set(services)
    assert services["storage-emulator"]["profiles"] == ["gcs"]
    api_command = " ".join(services["api"]["command"])
    assert "alembic -c api/alembic.ini upgrade head &&" in api_command
    assert "uvicorn api.main:create_app --factory" in api_command
    # The function runs its image's own command (test_function_image_serves_the_function: the
    # target, --source where the image put main.py, --port "${PORT}"), on compose's PORT.
    assert "command" not in services["function"]
    assert services["function"]["environment"]["PORT"] == "8080"
    function_command = shlex.split(stages["function"].exec_form("CMD")[2])
    assert function_command[:2] == ["exec", "functions-framework"]
    assert cli_flags(function_command[2:])["--port"] == "${PORT}"
    # Both run their image's healthcheck (compose defines none of its own): the function's port,
    # the API's /healthz; the API waits for the function's.
    assert services["api"]["depends_on"]["function"]["condition"] == "service_healthy"
    for name in ("api", "function"):
        assert "healthcheck" not in services[name], name
        assert stages[name].instructions("HEALTHCHECK"), name


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
        services["api"]["environment"]["WEBHOOK_ENCRYPTION_KEY"],
        services["function"]["environment"]["MEDIA_SIGNING_KEY"],
        services["batch"]["environment"]["MEDIA_SIGNING_KEY"],
    }
    names = {REQUIRED_VAR.match(value)["name"] for value in secrets if REQUIRED_VAR.match(value)}
    assert names == {
        "POSTGRES_PASSWORD",
        "ADMIN_API_KEY",
        "MEDIA_SIGNING_KEY",
        "WEBHOOK_ENCRYPTION_KEY",
    }
    assert "${POSTGRES_PASSWORD:?" in services["api"]["environment"]["DATABASE_URL"]


def test_only_the_api_gets_the_webhook_encryption_key(compose: dict[str, Any]) -> None:
    # It decrypts the webhooks' signing secrets: the API's alone, not in the shared settings.
    services = compose["services"]
    assert REQUIRED_VAR.match(services["api"]["environment"]["WEBHOOK_ENCRYPTION_KEY"])
    for name in ("function", "batch"):
        assert "WEBHOOK_ENCRYPTION_KEY" not in services[name]["environment"], name
    assert "WEBHOOK_ENCRYPTION_KEY" not in compose["x-shared-env"]


def test_env_example_lists_every_required_variable(compose: dict[str, Any]) -> None:
    # compose refuses to start without them: .env.example names each, empty, to be filled.
    required = {
        match["name"]
        for service in compose["services"].values()
        for value in service.get("environment", {}).values()
        if (match := REQUIRED_VAR.match(str(value)))
    }
    lines = ENV_EXAMPLE.read_text().splitlines()
    assert required <= {line.removesuffix("=") for line in lines if line.endswith("=")}
    # Its comment says how to make it (any string works; this one is 32 random bytes).
    webhook = lines.index("WEBHOOK_ENCRYPTION_KEY=")
    assert "openssl rand -base64 32" in lines[webhook - 1]


def test_api_and_function_run_in_production(compose: dict[str, Any]) -> None:
    # Both refuse placeholder secrets in production; compose supplies the real ones.
    for name in ("api", "function"):
        environment = compose["services"][name]["environment"]
        assert environment["ENVIRONMENT"] == "${ENVIRONMENT:-production}", name
        assert REQUIRED_VAR.match(environment["MEDIA_SIGNING_KEY"]), name


def mount_target(volume: str) -> str:
    """The container path of a short-syntax volume SOURCE:TARGET[:ro] (SOURCE may be ${X:-y})."""
    match = re.search(r":(/[^:]+)(?::ro)?$", volume)
    assert match, f"not SOURCE:TARGET[:ro]: {volume}"
    return match[1]


def test_compose_runs_the_batch_job_on_demand(
    compose: dict[str, Any], stages: dict[str, Stage]
) -> None:
    batch = compose["services"]["batch"]
    # Under its own profile: `docker compose up` leaves it out, `docker compose run` starts it.
    assert batch["profiles"] == ["batch"]
    assert batch["restart"] == "no"
    # `docker compose run --rm batch --input ... --output ... --animal ...`: the words after the
    # service name replace the image's CMD and follow its entrypoint, python -m batch.
    assert "command" not in batch
    assert "entrypoint" not in batch
    assert stages["batch"].exec_form("ENTRYPOINT") == ["python", "-m", "batch"]
    mounts = {mount_target(volume): volume for volume in batch["volumes"]}
    assert mounts["/data/media"] == "media:/data/media"  # the function's and the API's files
    assert mounts["/data/in"].endswith(":/data/in:ro")
    assert mounts["/data/out"].endswith(":/data/out")


def test_compose_batch_job_has_the_functions_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    batch, function = services["batch"]["environment"], services["function"]["environment"]
    # The pipeline in-process: the function's settings, its media store; --user-id writes the
    # stack's database, as the API would.
    shared = ("ENVIRONMENT", "STORAGE_DIR", "MEDIA_SIGNING_KEY", "MEDIA_BASE_URL")
    for name in (*shared, "AVATAR_BACKEND", "AVATAR_STORE"):
        assert batch[name] == function[name], name
    assert batch["DATABASE_URL"] == services["api"]["environment"]["DATABASE_URL"]
    assert services["batch"]["depends_on"]["postgres"]["condition"] == "service_healthy"
