"""Doctest collection policy (the repository root; tests/conftest.py holds the test fixtures).

A docstring whose every example is ``# doctest: +SKIP`` is an illustration (it needs model weights,
a workspace or a server), not a test: it is not collected, so the report's "skipped" count lists
only tests that really could not run. Examples that run stay doctests. To turn an illustration into
a test, make its example run on tiny inputs and drop the ``+SKIP`` (as in ``sae/train.py``).
"""
from __future__ import annotations

import doctest

_SKIP = doctest.OPTIONFLAGS_BY_NAME["SKIP"]


def illustration_only(test: doctest.DocTest) -> bool:
    """True when ``test`` has examples and every one of them is marked ``+SKIP``."""
    return bool(test.examples) and all(e.options.get(_SKIP) for e in test.examples)


def pytest_collection_modifyitems(config, items):
    items[:] = [it for it in items if not (hasattr(it, "dtest") and illustration_only(it.dtest))]
