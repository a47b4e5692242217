"""Exclusive locks on files that say who holds them (pid, host, start, command).

:class:`DirectoryLock` guards a folder being written (an activation cache, an artifact folder of
:func:`workbench.atomic.artifact_dir`): a second writer gets :class:`LockedError` naming the
holder; :func:`lock_holder` tells a live holder from a file left by a killed one (``cache-info``:
"running" vs "interrupted"). ``flock`` locks die with their process, so a crash never leaves a
folder locked.

Example
-------
>>> import os, tempfile
>>> from workbench.lock import DirectoryLock, lock_holder
>>> p = os.path.join(tempfile.mkdtemp(), ".run.lock")
>>> with DirectoryLock(p, what="run"):
...     lock_holder(p)["pid"] == os.getpid()
True
>>> lock_holder(p) is None
True
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["DirectoryLock", "LockedError", "holder_record", "lock_holder"]


class LockedError(RuntimeError):
    """Another process holds the lock; the message names it (pid, host, since when, command)."""


def holder_record(command: str | None) -> dict[str, Any]:
    import socket
    import sys
    import time

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command if command is not None else " ".join(["workbench", *sys.argv[1:]])}


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a process that did not say who it is"
    cmd = f" ({holder['command']})" if holder.get("command") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}{cmd}"


class DirectoryLock:
    """An exclusive ``flock`` on ``path`` that records its holder (pid, host, start, command).

    The kernel frees the lock when the holder exits, even killed, so a stale file never blocks
    a rerun; the file is removed on release. ``what`` names the thing locked in the refusal.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), ".run.lock")
    >>> with DirectoryLock(p, what="run") as lock:
    ...     lock_holder(p)["pid"] == os.getpid()
    True
    >>> lock_holder(p) is None
    True
    """

    def __init__(self, path: str | os.PathLike, what: str | None = None, command: str | None = None,
                 who: str = "run") -> None:
        self.path = Path(path)
        self.what = what or str(self.path.parent)
        self.command = command
        self.who = who
        self._fd: int | None = None

    def acquire(self) -> "DirectoryLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # the file may be removed by a releasing holder between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(f"another {self.who} is writing {self.what}: {_describe(lock_holder(self.path, check=False))}"
                                  f"; it holds {self.path}. Wait for it to finish (or stop it), then rerun") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps(holder_record(self.command)).encode())
                self._fd = fd
                return self
            os.close(fd)
        raise LockedError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)  # closing frees the flock
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(path: str | os.PathLike, check: bool = True) -> dict[str, Any] | None:
    """Who holds the lock file ``path``: its record (pid, host, started, command), or None if free.

    With ``check`` (default) the lock itself is tested, so a file left by a killed process
    reads as free; a holder on another host is reported as recorded (``"alive": None``).
    """
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if check:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # held
            else:
                return None  # nobody holds it (a leftover file)
        raw = os.read(fd, 65536)
    finally:
        os.close(fd)  # also frees the shared lock taken to test it
    try:
        holder = json.loads(raw.decode()) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        holder = {}
    return holder


