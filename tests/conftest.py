from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def recordings_dir() -> Path:
    """The shared recorded LLM streams (``shared/`` sits beside the repo)."""
    return (
        Path(__file__).resolve().parents[2]
        / "shared"
        / "fixtures"
        / "recorded-llm-streams"
    )
