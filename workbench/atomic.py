"""Atomic file writes: readers see the old file or the new one, never half of one.

Everything is written to a hidden temporary file in the destination's folder (same file
system, so the final ``os.replace`` is atomic) and renamed over the destination only when
the write finished. If the write raises, the temporary file is removed, the old file is
left untouched, and the exception propagates.

The temporary name keeps the real extension and ends in ``.tmp``
(``.features.k3j2x1.parquet.tmp``): libraries that look at the extension still see it,
while globs such as ``*.parquet`` do not pick up a leftover after a crash. It gets the
permissions a plain ``open(path, "w")`` would (``0o666`` minus the umask), not
``mkstemp``'s private ``0o600``.

Example
-------
>>> import os, tempfile
>>> from workbench.atomic import atomic_path, read_json, write_json
>>> d = tempfile.mkdtemp()
>>> p = write_json(os.path.join(d, "meta.json"), {"a": 1}, indent=2)
>>> read_json(p)
{'a': 1}
>>> with atomic_path(os.path.join(d, "table.csv")) as tmp:   # any writer that takes a path
...     _ = open(tmp, "w").write("x,y\\n1,2\\n")
>>> sorted(os.listdir(d))
['meta.json', 'table.csv']

Artifact directories (every folder of results a CLI command writes) go through
:func:`artifact_dir`: a lock while writing (a second run into the same folder refuses, naming the
holder), the results written into a temporary folder that replaces the old one only when the
run finished (a refused or failed run leaves the old folder untouched), and ``inputs.json``,
the record of what the folder was made from. Resumable runs (``resumable=True``: SAE training,
probe sweeps) write in place instead, and refuse to continue from other inputs:

>>> from workbench.atomic import artifact_dir
>>> with artifact_dir(os.path.join(d, "run"), inputs={"cache": "abc"}) as tmp:
...     _ = write_json(tmp / "result.json", {"r": 0.5})
>>> sorted(os.listdir(os.path.join(d, "run")))
['inputs.json', 'result.json']
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from workbench.lock import DirectoryLock, LockedError, holder_record, lock_holder

__all__ = ["INPUTS_JSON", "DirectoryLock", "DiskFullError", "InputsMismatchError", "JSONFileError", "LockedError", "artifact_dir",
           "atomic_path", "input_differences", "lock_holder", "read_json", "write_bytes", "write_json", "write_jsonl",
           "write_text"]


def _umask() -> int:
    """The current umask (read, not cached: the program may change it)."""
    try:  # Linux: read it without touching the process-wide setting
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    Creates the parent folder. The temporary file exists (empty) when the body starts;
    writers that open it with ``"w"``/``"wb"`` simply truncate it. With ``fsync=True`` the
    file's data (and then the folder entry) are flushed to disk before and after the
    rename, so the new file survives a power cut, not just a crash of this process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = isinstance(e, Exception) and _disk_full(e, path.parent)  # before the partial file frees its space
        with contextlib.suppress(OSError):
            tmp.unlink()
        if full:
            raise DiskFullError(path, e) from e
        raise
    if fsync:
        _fsync_dir(path.parent)


class DiskFullError(OSError):
    """A write failed because the file system is full; names the file (the old one is unchanged)."""

    def __init__(self, path: str | os.PathLike, cause: BaseException) -> None:
        import errno

        super().__init__(errno.ENOSPC, f"no space left on device writing {path} (the previous version, if any, is "
                                       f"unchanged; free some space and rerun): {cause}", str(path))

    def __str__(self) -> str:
        return self.strerror


def _disk_full(e: BaseException, folder: Path) -> bool:
    """``e`` is, or (a library's own error, e.g. torch.save's) coincides with, a full file system."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, OSError):
        return False
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    free = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < (1 << 20)


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, fsync: bool = False, **json_kwargs: Any) -> Path:
    """``json.dumps(obj, **json_kwargs)`` written atomically (no trailing newline); returns ``path``."""
    return write_text(path, json.dumps(obj, **json_kwargs), fsync=fsync)


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any], fsync: bool = False, **json_kwargs: Any) -> Path:
    """One ``json.dumps(row, **json_kwargs)`` per line (each ending in a newline), atomically; returns ``path``."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, **json_kwargs) + "\n")
    return Path(path)


class JSONFileError(ValueError):
    """A JSON file that cannot be parsed; the message names the file (and line/column)."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document in ``path`` (counterpart of :func:`write_json`).

    A missing file raises ``FileNotFoundError``, a damaged one (truncated, not JSON, not
    UTF-8) :class:`JSONFileError` (a ``ValueError``): both name the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise JSONFileError(path, "is a folder, not a JSON file") from None
    except json.JSONDecodeError as e:
        empty = " (the file is empty)" if e.doc.strip() == "" else ""
        raise JSONFileError(path, f"not valid JSON{empty}: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise JSONFileError(path, f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None


# --- artifact directories ----------------------------------------------------------------------------
INPUTS_JSON = "inputs.json"


class InputsMismatchError(ValueError):
    """A run asked to continue (or replace) an artifact made from other inputs; names the inputs."""


def input_differences(recorded: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """``"key: recorded X, now Y"`` for every key of ``given`` whose value differs from ``recorded``."""
    out = []
    for key in sorted(set(recorded) | set(given)):
        a, b = recorded.get(key), given.get(key)
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{key}: recorded {json.dumps(a, default=str)[:160]}, now {json.dumps(b, default=str)[:160]}")
    return out


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Make ``tmp`` the folder ``out`` (atomically where the OS can exchange two names), then drop the old one."""
    import shutil

    if not out.exists():
        os.rename(tmp, out)
        return
    try:  # Linux >= 3.15: renameat2(RENAME_EXCHANGE) swaps the two folders in one step
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.renameat2(-100, os.fsencode(tmp), -100, os.fsencode(out), 2) == 0  # AT_FDCWD, RENAME_EXCHANGE
    except (OSError, AttributeError):
        ok = False
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old folder
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rename(out, old / "x")
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _carry(old: Path, new: Path, patterns: Iterable[str]) -> None:
    """Hard-link (else copy) the files of ``old`` matching ``patterns`` that ``new`` lacks into ``new``."""
    import shutil

    for pattern in patterns if old.is_dir() else ():
        for src in old.glob(pattern):
            dst = new / src.relative_to(old)
            if not src.is_file() or dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)  # the old folder is deleted after the swap: the file lives on here
            except OSError:
                shutil.copy2(src, dst)


def _resume_in_place(out: Path, inputs, about, record: dict, check_inputs: bool) -> Iterator[Path]:
    """The ``resumable`` branch of :func:`artifact_dir` (called under its lock)."""
    import shutil

    path = out / INPUTS_JSON
    old = read_json(path) if path.is_file() else None
    if inputs is not None and check_inputs and old is not None:
        diff = input_differences(old.get("inputs", {}), inputs)
        if diff:
            diff += [f"(about) {d}" for d in input_differences(old.get("about", {}), about or {})]
            raise InputsMismatchError(f"{out} was made from other inputs ({path}):\n  " + "\n  ".join(diff)
                                      + "\nRerun with the original inputs to continue it, or use a new --out.")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    same = old is not None and not input_differences(old.get("inputs", {}), inputs or {}) \
        and not input_differences(old.get("about", {}), about or {})
    if inputs is not None and not same:  # written first: a crashed run is continued only from the same inputs
        write_json(path, record, indent=2, default=str)
    try:
        yield out
    except BaseException:
        if created and [p.name for p in out.iterdir()] == [INPUTS_JSON]:  # refused before writing anything else
            shutil.rmtree(out, ignore_errors=True)
        raise


@contextlib.contextmanager
def artifact_dir(out: str | os.PathLike, inputs: dict[str, Any] | None = None, *, about: dict[str, Any] | None = None,
                 resumable: bool = False, check_inputs: bool = True, command: str | None = None,
                 keep: Iterable[str] = ()) -> Iterator[Path]:
    """Write the artifact folder ``out`` safely; yields the folder to write into.

    - A lock (``.<name>.lock`` beside ``out``) is held throughout: a second run into ``out``
      raises :class:`LockedError` naming the holder, before anything is written.
    - ``inputs`` (what the artifact is made from: cache fingerprint, corpus, hooks, ...) is
      recorded with ``about`` (recorded, never compared: paths, flags) and the command in
      ``out/inputs.json``.
    - Default: the body writes into a fresh temporary folder beside ``out``, which replaces
      ``out`` only when the body returns; if it raises, the temporary folder is removed and the
      old ``out`` is left exactly as it was.
    - ``keep``: glob patterns of files other tools add to ``out`` (e.g. ``explanations.csv`` beside
      an evaluation); those the body did not write are carried from the old folder into the new.
    - ``resumable=True`` (runs that checkpoint into ``out`` and continue after a crash): the body
      writes into ``out`` itself; if ``out/inputs.json`` records other ``inputs`` (and
      ``check_inputs``), :class:`InputsMismatchError` names every differing input before
      anything is written.
    """
    import shutil

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a folder: choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {**holder_record(command), "inputs": inputs or {}, "about": about or {}}
    record.pop("pid"), record.pop("host")
    with DirectoryLock(out.parent / f".{out.name}.lock", what=str(out), command=command):
        if resumable:
            yield from _resume_in_place(out, inputs, about, record, check_inputs)
            return
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            os.chmod(tmp, 0o777 & ~_umask())
            yield tmp
            if inputs is not None or about is not None:
                write_json(tmp / INPUTS_JSON, record, indent=2, default=str)
            _carry(out, tmp, keep)
            _swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
