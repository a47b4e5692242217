"""One rule for names that become paths: clip ids, run names, hook and feature-set names.

A name that becomes part of a path (``textgrids/<clip id>.TextGrid``, ``audio/<clip id>_seg00.flac``,
``<out>/<hook>/``, ``WORKSPACE/probes/<run>``) must be a **single path component**: not empty,
not ``.`` or ``..``, no ``/`` or ``\\``, no NUL or other control character, at most
:data:`MAX_BYTES` bytes of UTF-8. A manifest row whose clip id is ``../../x`` or ``/etc/x``
must never make a command write or read outside its folder.

Two ways to apply the rule:

- :func:`check_component` refuses an unsafe name with :class:`UnsafeNameError` (a ``ValueError``
  naming what the name is and where it came from): for names the user picks (a run name, a
  hook given on the command line) and for names read from a folder the app serves.
- :func:`safe_component` maps any name to a safe file name, deterministically: a safe name is
  returned unchanged, an unsafe one becomes its safe characters plus a short hash of the
  original (``../../evil`` -> ``evil-1361ca8c``), so two different ids never share a file. For
  per-clip files named after ids from a manifest (the id itself stays what it is).

:func:`child_path` joins a root and a name (checked or mapped) and also verifies that the
result, with symlinks resolved, is inside the root.

Example
-------
>>> from workbench.names import check_component, safe_component, is_safe_component
>>> is_safe_component("synth_0001"), is_safe_component("../etc"), is_safe_component("a/b")
(True, False, False)
>>> safe_component("jfk")
'jfk'
>>> safe_component("../../evil")
'evil-1361ca8c'
>>> check_component("../run", "run name")
Traceback (most recent call last):
...
workbench.names.UnsafeNameError: run name '../run' is not a single file name (it holds '/' or '..'); use letters, digits, '.', '_', '-'
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["MAX_BYTES", "UnsafeNameError", "check_component", "child_path", "is_safe_component", "safe_component"]

#: longest name accepted as is (file systems allow 255 bytes; leave room for suffixes such as ``_seg00.flac``)
MAX_BYTES = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_CHARS = re.compile(r"[^\w.\-+=@,]+", re.UNICODE)


class UnsafeNameError(ValueError):
    """A name that would become a path outside its folder (or no file name at all)."""


def _problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if name == "":
        return "is empty"
    if name in (".", ".."):
        return "is '.' or '..'"
    if "/" in name or "\\" in name or (os.sep in name) or (os.altsep and os.altsep in name):
        return "is not a single file name (it holds '/' or '..')" if ".." in name or name.startswith("/") \
            else "is not a single file name (it holds a path separator)"
    if _CONTROL.search(name):
        return "holds a control character"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return f"is longer than {MAX_BYTES} bytes"
    return None


def is_safe_component(name: object) -> bool:
    """True when ``name`` can be used as one file or folder name as it is."""
    return _problem(name) is None


def check_component(name: object, what: str = "name", source: str | os.PathLike | None = None) -> str:
    """``name`` itself if it is a safe single path component, else :class:`UnsafeNameError`.

    ``what`` says what the name is (``"clip id"``, ``"run name"``, ``"hook"``); ``source`` names
    the file or argument it came from, for the message.
    """
    problem = _problem(name)
    if problem is not None:
        where = f" in {source}" if source else ""
        raise UnsafeNameError(f"{what} {name!r}{where} {problem}; use letters, digits, '.', '_', '-'")
    return name  # type: ignore[return-value]


def safe_component(name: object) -> str:
    """A safe file name for ``name``: itself when safe, else its safe characters + an 8-hex hash.

    Deterministic (the same id always maps to the same file) and injective in practice (the
    hash of the original is kept), so two ids never share a file.
    """
    if is_safe_component(name):
        return name  # type: ignore[return-value]
    text = str(name)
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = _UNSAFE_CHARS.sub("_", text.replace("..", "_")).strip("._")
    stem = stem.encode("utf-8")[: MAX_BYTES - 9].decode("utf-8", "ignore").rstrip("._")
    return f"{stem}-{digest}" if stem else f"name-{digest}"


def child_path(root: str | os.PathLike, name: str, suffix: str = "", *, what: str = "name",
               map_unsafe: bool = False) -> Path:
    """``root / (name + suffix)``, refusing (or with ``map_unsafe`` mapping) an unsafe ``name``.

    Also refuses a result that resolves outside ``root`` (a symlink inside ``root`` pointing
    elsewhere), so reading or writing it never leaves the folder.
    """
    part = safe_component(name) if map_unsafe else check_component(name, what)
    root = Path(root)
    path = root / f"{part}{suffix}"
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafeNameError(f"{what} {name!r}: {path} resolves to {real}, outside {root}")
    return path
