"""What the function's local compositor is asked to draw, for tests that run it in process (the
API's contract tests, the batch job)."""

from __future__ import annotations

from typing import Any

import pytest


def record_drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every (animal, style) the local compositor draws from now on, in order; it still draws.

    A call that names no style is recorded as "unset". The function's code is imported here,
    not at the top: the API's tests import it only where they run the function in process.
    """
    from avatar.backends.local.compositor import LocalCompositor

    drawn: list[tuple[str, str]] = []
    real = LocalCompositor.compose

    def compose(
        self: Any, image: Any, faces: Any, masks: Any, animal: str, style: str = "unset"
    ) -> Any:
        drawn.append((animal, style))
        return real(self, image, faces, masks, animal, style=style)

    monkeypatch.setattr(LocalCompositor, "compose", compose)
    return drawn
