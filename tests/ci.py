"""What a missing tool means for the suite: locally a skip (a laptop without Chromium still runs the
rest), under CI (``CI`` set, as ``.ci/run`` does) a failure, so CI cannot pass by skipping tests.

Example (at the top of a test module)::

    from ci import require
    require(shutil.which("chromium") and shutil.which("chromedriver"), "chromium and chromedriver")
"""
from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to anything but "", "0" or "false"."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def require(present: object, what: str, hint: str = "") -> None:
    """Skip the calling module when ``present`` is falsy, or fail it under CI (a collection error)."""
    if present:
        return
    msg = f"{what} not available{' (' + hint + ')' if hint else ''}"
    if in_ci():
        pytest.fail(f"CI (CI={os.environ['CI']}) fails instead of skipping: {msg}", pytrace=False)
    pytest.skip(msg, allow_module_level=True)
