"""Per-browser-session state of the app: uploads kept apart, expired and bounded.

Every browser tab gets a session id (a random 128-bit hex string issued by the server into a
``dcc.Store(storage_type="session")``, so it survives reloads of that tab and no other tab shares
it). An upload is decoded once and written under the app's temporary directory as
``ROOT/SESSION/KEY.wav`` (``KEY`` is generated here; the user's file name is only a label), so two
sessions uploading different files called ``clip.flac`` never see each other's audio. Sessions idle
for longer than ``ttl_s`` are deleted; at most ``max_sessions`` sessions, ``max_uploads`` uploads
and ``max_bytes`` of decoded audio per session are kept (the oldest go first). Nothing is ever
written into the workspace.

Example
-------
>>> import numpy as np
>>> s = Sessions()
>>> sid = new_session_id()
>>> key = s.add_upload(sid, "clip.flac", np.zeros(1600, np.float32))
>>> s.upload(sid, key)[0], len(s.upload(sid, key)[1])
('clip.flac', 1600)
>>> s.upload(new_session_id(), key)        # another session does not see it
Traceback (most recent call last):
...
apps.data.PartError: upload ... is not in this session (expired or uploaded in another tab?): upload it again
>>> s.close()
"""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from apps.data import PartError

SR = 16000
_ID = re.compile(r"^[0-9a-f]{32}$")


def new_session_id() -> str:
    """A fresh session id (what the app layout hands each new tab)."""
    return uuid.uuid4().hex


def check_id(value, what: str = "session") -> str:
    """``value`` if it is an id this module issued (32 hex digits), else a :class:`PartError`."""
    if not isinstance(value, str) or not _ID.match(value):
        raise PartError(f"bad {what} id {str(value)[:40]!r}: reload the page")
    return value


@dataclass
class _Session:
    dir: Path
    seen: float
    uploads: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (label, bytes), oldest first


class Sessions:
    """Uploads per session under one temporary directory (see module docstring)."""

    def __init__(self, root: str | Path | None = None, ttl_s: float = 2 * 3600, max_sessions: int = 64,
                 max_uploads: int = 8, max_bytes: int = 200 * 2**20, clock=time.monotonic) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="workbench-app-sessions-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s, self.max_sessions, self.max_uploads, self.max_bytes = ttl_s, max_sessions, max_uploads, max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def _get(self, sid: str, create: bool) -> _Session | None:
        check_id(sid)
        now = self._clock()
        for old in [k for k, s in self._sessions.items() if now - s.seen > self.ttl_s]:
            self._drop(old)
        s = self._sessions.get(sid)
        if s is None and create:
            while len(self._sessions) >= self.max_sessions:  # least recently seen goes
                self._drop(min(self._sessions, key=lambda k: self._sessions[k].seen))
            s = self._sessions[sid] = _Session(self.root / sid, now)
            s.dir.mkdir(exist_ok=True)
        if s is not None:
            s.seen = now
        return s

    def _drop(self, sid: str) -> None:
        s = self._sessions.pop(sid, None)
        if s is not None:
            shutil.rmtree(s.dir, ignore_errors=True)

    def add_upload(self, sid: str, label: str, audio: np.ndarray) -> str:
        """Keep ``audio`` (16 kHz mono) for session ``sid``; returns the key to ask for it again."""
        audio = np.asarray(audio, dtype=np.float32)
        size = audio.nbytes
        if size > self.max_bytes:
            raise PartError(f"upload {label!r}: {size / 2**20:.0f} MiB decoded is over the session limit of "
                            f"{self.max_bytes / 2**20:.0f} MiB")
        with self._lock:
            s = self._get(sid, create=True)
            while s.uploads and (len(s.uploads) >= self.max_uploads or
                                 sum(b for _, b in s.uploads.values()) + size > self.max_bytes):
                old = next(iter(s.uploads))
                s.uploads.pop(old)
                (s.dir / f"{old}.wav").unlink(missing_ok=True)
            key = uuid.uuid4().hex
            sf.write(s.dir / f"{key}.wav", audio, SR, subtype="FLOAT")
            s.uploads[key] = (str(label), size)
        return key

    def upload(self, sid: str, key: str) -> tuple[str, np.ndarray]:
        """``(label, audio)`` of upload ``key`` of session ``sid``."""
        path = self.upload_path(sid, key)
        with self._lock:
            label = self._sessions[sid].uploads[key][0]
        audio, _ = sf.read(path, dtype="float32")
        return label, audio

    def upload_path(self, sid: str, key: str) -> Path:
        """The WAV file of upload ``key`` of session ``sid`` (for the audio player); PartError if unknown."""
        check_id(key, "upload")
        with self._lock:
            s = self._get(sid, create=False)
            if s is None or key not in s.uploads:
                raise PartError(f"upload {key[:8]}... is not in this session (expired or uploaded in another "
                                "tab?): upload it again")
            return s.dir / f"{key}.wav"

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def close(self) -> None:
        """Delete every session's files."""
        with self._lock:
            for sid in list(self._sessions):
                self._drop(sid)
        shutil.rmtree(self.root, ignore_errors=True)
