"""Write a steering artifact directory all at once: a temporary sibling folder renamed into place.

A refused or failed ``steer fit`` leaves an existing artifact exactly as it was (before, a refusal
could replace ``features.csv`` under the old ``steering.json``, or leave a lone ``features.csv`` in a
new folder). An ``--out`` that exists, is not empty and is not a steering artifact is refused
before any work. (The one place to swap in a general artifact-directory writer from
``workbench.atomic`` once there is one.)

Example
-------
>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> with artifact_dir(root / "st") as tmp:
...     _ = (tmp / "steering.json").write_text("{}")
>>> sorted(p.name for p in root.iterdir())
['st']
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

STEERING_FILE = "steering.json"


def check_out(out: str | Path) -> Path:
    """Refuse an ``out`` that holds something other than a steering artifact."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / STEERING_FILE).is_file())):
        raise FileExistsError(f"{out} exists and is not a steering artifact (no {STEERING_FILE}): "
                              "choose another --out or remove it")
    return out


@contextlib.contextmanager
def artifact_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it replaces ``out``, on error it is removed."""
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
