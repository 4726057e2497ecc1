"""Fixtures of the offline infra checks."""

from __future__ import annotations

from typing import Any

import pytest
from infra_helpers import INFRA, merge_config


@pytest.fixture(scope="session")
def terraform() -> dict[str, Any]:
    """The whole infra/ module, parsed."""
    files = sorted(INFRA.glob("*.tf"))
    assert files, f"no Terraform files in {INFRA}"
    return merge_config(files)
