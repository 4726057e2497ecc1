"""checkov over infra/ and the Dockerfile: no failed check; every skip is inline with a reason.

checkov pins many packages of its own, so `make test` installs it in .venv-checkov; one run per
target per session (it takes a few seconds each).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from infra_helpers import CHECKOV, REPO

# Each deliberate exception, with its reason inline next to the resource (checkov:skip=ID:why).
EXPECTED_SKIPS = {
    ("CKV_GCP_62", "google_storage_bucket.results"),
    ("CKV_GCP_62", "google_storage_bucket.source"),
    ("CKV_GCP_78", "google_storage_bucket.results"),
    ("CKV_GCP_124", "google_cloudfunctions2_function.main"),
    ("CKV_SECRET_4", None),  # a URL template that looks like user:password@host
}


def run_checkov(*target: str) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework) for a target, offline."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make .venv-checkov/.installed` (make test does)")
    command = [str(CHECKOV), "--skip-download", "--compact", "--output", "json", *target]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    reports = json.loads(done.stdout)
    return reports if isinstance(reports, list) else [reports]


def checks(reports: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    """All checks of one outcome (failed_checks, skipped_checks, passed_checks)."""
    return [check for report in reports for check in report["results"].get(outcome, [])]


@pytest.fixture(scope="module")
def infra_reports() -> list[dict[str, Any]]:
    return run_checkov("--directory", "infra")


@pytest.fixture(scope="module")
def dockerfile_reports() -> list[dict[str, Any]]:
    return run_checkov("--file", "Dockerfile", "--framework", "dockerfile")


def describe(failed: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range']}" for c in failed
    )


def test_infra_has_no_failed_check(infra_reports: list[dict[str, Any]]) -> None:
    failed = checks(infra_reports, "failed_checks")
    assert not failed, describe(failed)


def test_infra_was_really_scanned(infra_reports: list[dict[str, Any]]) -> None:
    terraform = next(r for r in infra_reports if r["check_type"] == "terraform")
    assert terraform["summary"]["parsing_errors"] == 0
    assert terraform["summary"]["resource_count"] >= 30
    assert terraform["summary"]["passed"] >= 25


def test_every_skip_is_expected_and_has_a_reason(infra_reports: list[dict[str, Any]]) -> None:
    skipped = checks(infra_reports, "skipped_checks")
    for check in skipped:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} needs a reason"
    found = {
        (c["check_id"], None if c["check_id"].startswith("CKV_SECRET") else c["resource"])
        for c in skipped
    }
    assert found == EXPECTED_SKIPS


def test_dockerfile_has_no_failed_check(dockerfile_reports: list[dict[str, Any]]) -> None:
    failed = checks(dockerfile_reports, "failed_checks")
    assert not failed, describe(failed)
    assert checks(dockerfile_reports, "passed_checks")
