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
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["atomic_path", "write_text", "write_bytes", "write_json", "write_jsonl", "read_json", "JSONFileError"]


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
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        _fsync_dir(path.parent)


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
