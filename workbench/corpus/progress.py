"""Resumable corpus builds: what ``build_corpus`` already checked, kept in ``OUT/.build_progress.jsonl``.

Decoding every clip once is the slow part of building a large corpus. Each checked clip is
appended as one line (its audio path, size and modification time, and the sample rate and
duration or the problem found); a rerun after an interruption reuses every line whose file is
unchanged and checks only the rest. A torn last line (the process died mid-write) is ignored.
The file is removed when a build completes.

Example
-------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()); audio = d / "a.wav"; _ = audio.write_bytes(b"x")
>>> with BuildProgress(d) as progress:
...     progress.record(audio, sr=16000, duration=1.5)
>>> BuildProgress(d).lookup(audio)
{'sr': 16000, 'duration': 1.5}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["BuildProgress"]

NAME = ".build_progress.jsonl"


def _key(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


class BuildProgress:
    """Checked clips of an interrupted build in ``out_dir`` (see the module docstring)."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.path = Path(out_dir) / NAME
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    self.done[json.dumps(row.pop("key"))] = row
                except (ValueError, KeyError, AttributeError):
                    continue  # a torn last line
        self._fh = None

    def __enter__(self) -> "BuildProgress":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def lookup(self, path: Path) -> dict[str, Any] | None:
        """The recorded result for ``path`` if the file has not changed since."""
        try:
            return self.done.get(json.dumps(_key(path)))
        except OSError:
            return None

    def record(self, path: Path, **result: Any) -> None:
        """Append one checked clip (flushed at once, so a kill loses at most this line)."""
        try:
            key = _key(path)
        except OSError:
            return
        if self._fh is not None:
            self._fh.write(json.dumps({"key": key, **result}) + "\n")
            self._fh.flush()
        self.done[json.dumps(key)] = result

    def finish(self) -> None:
        """The build completed: forget the progress."""
        self.path.unlink(missing_ok=True)
