"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DATA = REPO_ROOT.parent / "shared" / "reference-data"


@pytest.fixture(autouse=True)
def _offline_environment(monkeypatch, tmp_path):
    """No test talks to W&B's servers or the HF hub, and none writes into the repo."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def reference_data() -> Path:
    """``../shared/reference-data``: skip when absent, except under CI=true where that is a failure."""
    if not REFERENCE_DATA.is_dir():
        message = f"reference data folder not found at {REFERENCE_DATA} (expected beside the project)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return REFERENCE_DATA
