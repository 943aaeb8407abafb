"""Shared fixtures: the real DCASE 2020 clips in ../shared/realdata and W&B kept offline."""

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The real clips shipped beside the repository (skipped where they are absent)."""
    if not REALDATA.is_dir():
        pytest.skip("shared/realdata is not beside this checkout")
    return REALDATA
