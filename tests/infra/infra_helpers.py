"""Helpers of the offline infra checks: the repository's paths and Terraform read by python-hcl2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
VENV_BIN = Path(sys.executable).parent
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

# Top-level blocks whose entries are keyed by one label (variable "x") or two (resource "t" "n").
ONE_LABEL = ("variable", "output", "module")
TWO_LABELS = ("resource", "data")


def load_hcl(path: Path) -> dict[str, Any]:
    """One .tf/.tfvars file as python-hcl2 sees it, string quotes stripped."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    with path.open() as f:
        return dict(hcl2.load(f, serialization_options=options))


def merge_config(files: list[Path]) -> dict[str, Any]:
    """All files of a module merged: resource[type][name], variable[name], locals[name]..."""
    config: dict[str, Any] = {kind: {} for kind in (*ONE_LABEL, *TWO_LABELS, "locals")}
    config["terraform"] = []
    config["provider"] = []
    for path in files:
        for kind, blocks in load_hcl(path).items():
            if kind in TWO_LABELS:
                for block in blocks:
                    for type_, named in block.items():
                        config[kind].setdefault(type_, {}).update(named)
            elif kind in (*ONE_LABEL, "locals"):
                for block in blocks:
                    config[kind].update(block)
            elif kind in ("terraform", "provider"):
                config[kind].extend(blocks)
    return config
