"""The CLI starts without torch, scikit-learn or scipy (workbench.lazy), and the packages' public names
still mean what they did when their ``__init__`` imported them eagerly."""
import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_building_the_cli_parser_imports_no_heavy_library():
    out = _run("import sys; from workbench.cli import build_parser; build_parser(); "
               "print(sorted(m for m in ('torch', 'sklearn', 'scipy', 'pandas') if m in sys.modules))")
    assert out == "[]", f"`workbench --help` imports {out}: a CLI module or package __init__ imports them at the top"


def test_reexported_names_survive_their_submodule_being_imported_first():
    # sae/train.py and sae.train (the function) share a name: importing the submodule first must not
    # replace the function on the package (the eager import's behaviour)
    out = _run("import sae.train, sae.steer.fit, probes.sweep, sae; import probes; "
               "print(callable(sae.train), type(sae.train).__name__, sae.steer.fit.__module__, probes.sweep.__module__)")
    assert out == "True function sae.steer.fit probes.sweep"


def test_unknown_names_raise_attribute_error():
    out = _run("import neuro\ntry:\n    neuro.no_such_name\nexcept AttributeError as e:\n    print('AttributeError', e)")
    assert out.startswith("AttributeError") and "no_such_name" in out
    assert "fit_trf" in _run("import neuro; print(dir(neuro))")
