"""The whole test run's logs are scanned for secrets and personal data when it ends.

Every log record of this process (INFO and up, in the API's Cloud Logging JSON shape) goes to
`in-process.log` under the run's temporary folder, beside the logs of the servers the tests
start there (api.log, function.log). When the session ends, tests/log_scanning.py looks through
all of them; a key, a signature, an email address, a webhook secret or image bytes in any line
fails the run, with the lines named.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from log_scanning import log_files, scan

from api.observability.logs import CloudLoggingFormatter

LOG_ROOT = pytest.StashKey[Path]()


@pytest.fixture(scope="session", autouse=True)
def _log_everything(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[None]:
    root = tmp_path_factory.getbasetemp()
    request.config.stash[LOG_ROOT] = root
    handler = logging.FileHandler(root / "in-process.log", encoding="utf-8")
    handler.setFormatter(CloudLoggingFormatter())
    handler.setLevel(logging.INFO)
    logger = logging.getLogger()
    level = logger.level
    if level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    logger.setLevel(level)
    handler.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = session.config.stash.get(LOG_ROOT, None)
    if root is None:
        return
    files = log_files(root)
    findings = scan(files)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not findings:
        if reporter is not None:
            reporter.write_line(f"log scan: {len(files)} log files, nothing secret in them")
        return
    if reporter is not None:
        reporter.section("secrets or personal data in the logs", red=True)
        for finding in findings[:50]:
            reporter.write_line(str(finding))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
