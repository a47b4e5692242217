"""The ``workbench`` command line: one program, sub-commands per step.

Built-in sub-commands live in ``workbench.cli.<name>`` modules. Packages that
depend on workbench (``sae``, ``probes``, ...) add theirs through the
``workbench.commands`` entry-point group, so workbench never imports them
directly. Each module exposes ``register(subparsers)`` that adds a parser whose
``func(args)`` runs the command and returns an exit code.

Example
-------
$ workbench corpus synth --n 20 --out work/synth
$ workbench models info whisper-tiny.en
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import threading
import warnings

from importlib.metadata import entry_points

BUILTIN = ["corpus", "models", "cache"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in BUILTIN:
        importlib.import_module(f"workbench.cli.{name}").register(sub)
    for ep in entry_points(group="workbench.commands"):
        try:
            register = ep.load()
        except ImportError as e:  # a plugin package that is broken or absent must not kill the CLI ...
            if strict_plugins():  # ... but under tests and CI it must fail, not vanish into a warning
                raise
            logging.getLogger(__name__).warning("sub-command %r unavailable: %s", ep.name, e)
            continue
        register(sub)
    return parser


def strict_plugins() -> bool:
    """True under pytest, in CI (``CI`` set) or with ``WORKBENCH_STRICT_PLUGINS=1``: a sub-command that
    cannot be imported is then an error instead of a warning."""
    return any(os.environ.get(v, "").lower() not in ("", "0", "false")
               for v in ("PYTEST_CURRENT_TEST", "CI", "WORKBENCH_STRICT_PLUGINS"))


#: what a rerun does after Ctrl-C, per command (the rest: results are written whole or not at all)
_RESUME = {"cache": "rerun the same command to resume", "probe": "rerun the same command to resume",
           "sae train": "rerun the same command with --resume to continue from the last checkpoint"}


def _quiet_exit(signum, frame) -> None:  # Ctrl-C while the sub-commands load: nothing started, nothing to say
    print("workbench: interrupted", file=sys.stderr)
    os._exit(130)


if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _quiet_exit)  # set as early as this module loads: imports take seconds


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    finally:
        if signal.getsignal(signal.SIGINT) is _quiet_exit:  # from here on Ctrl-C raises, and the command cleans up
            signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    with warnings.catch_warnings():
        _show_user_warnings()
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    name = " ".join(str(v) for v in (args.command, *(getattr(args, k) for k in vars(args) if k.endswith("_command")))
                    if v)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Ctrl-C: one line, not a traceback; every write is atomic, so nothing is left half-written
        hint = _RESUME.get(name) or _RESUME.get(args.command) or "results are written whole or not at all"
        print(f"workbench {name}: interrupted; {hint}", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, RuntimeError, *_library_errors()) as e:
        # One clear line naming the problem instead of a traceback; -v shows the traceback.
        # OSError covers FileExistsError/NotADirectoryError/PermissionError (their message names the path).
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str) else e
        if isinstance(e, OSError) and e.errno == errno.ENOSPC and "no space left" not in str(e).lower():
            msg = f"no space left on device writing {e.filename or 'a file'}: {e}"
        print(f"workbench {args.command}: error: {msg}", file=sys.stderr)
        return 2


def _show_user_warnings() -> None:
    """Show :class:`~workbench.validate.WorkbenchWarning` s through logging, whatever the warnings filter says."""
    from workbench.validate import WorkbenchWarning

    warnings.filterwarnings("default", category=WorkbenchWarning)  # ahead of PYTHONWARNINGS=ignore / -W ignore
    plain = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, WorkbenchWarning):
            logging.getLogger("workbench").warning("%s", message)
        else:
            plain(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _library_errors() -> tuple[type[BaseException], ...]:
    """Error types of file-format libraries that do not derive from ValueError/OSError (if imported)."""
    found = []
    st = sys.modules.get("safetensors")
    if st is not None and isinstance(getattr(st, "SafetensorError", None), type):
        found.append(st.SafetensorError)
    return tuple(found)


if __name__ == "__main__":
    sys.exit(main())
