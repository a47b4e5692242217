"""Live model runs for the app: one worker thread, jobs polled by the page for progress.

A page callback submits a function and gets a job id back at once (so no callback blocks on a
model); a ``dcc.Interval`` then polls :meth:`Jobs.status` and shows ``stage`` and ``progress``
until the job is done. Models are loaded once per spec and kept. Uploaded audio is size-limited,
written only to a temporary directory (never the workspace), decoded with the project's loader
and deleted; what a session keeps of it lives in :mod:`apps.sessions`. Jobs belong to a session
and finished ones leave the table soon (see :class:`Jobs`).

Example
-------
>>> jobs = Jobs()
>>> jid = jobs.submit(lambda job: job.update("adding", 0.5) or 1 + 1)
>>> jobs.wait(jid)["result"]
2
"""
from __future__ import annotations

import base64
import functools
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.audio import AudioLoadError, load_audio

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 20 MiB: about 10 minutes of 16 kHz 16-bit WAV


@dataclass
class Job:
    stage: str = "queued"
    progress: float = 0.0
    result: Any = None
    error: str | None = None
    done: bool = False
    started: float = field(default_factory=time.perf_counter)
    session: str | None = None
    finished: float | None = None  # monotonic time it finished (for the table's expiry)

    def update(self, stage: str, progress: float) -> None:
        self.stage, self.progress = stage, progress


class Jobs:
    """A one-thread executor for model runs (the model is not thread-safe; runs queue up).

    A job belongs to the session that submitted it (another session asking for it gets "unknown
    job"). The table keeps no finished job for long: one is dropped ``collected_s`` after its
    result was first handed out, any finished job ``keep_s`` after it finished, and at most
    ``max_finished`` finished jobs are kept (the oldest go first).
    """

    def __init__(self, keep_s: float = 600.0, collected_s: float = 30.0, max_finished: int = 32,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._collected: dict[str, float] = {}
        self._lock = threading.Lock()
        self.keep_s, self.collected_s, self.max_finished, self._clock = keep_s, collected_s, max_finished, clock
        # started now, with the app, so the worker exists before any request (and lives as long)
        threading.Thread(target=self._work, daemon=True, name="workbench-app-live").start()

    def _work(self) -> None:
        while True:
            self._queue.get()()

    def __len__(self) -> int:
        with self._lock:
            self._prune()
            return len(self._jobs)

    def _prune(self) -> None:
        now = self._clock()
        done = [(j.finished, k) for k, j in self._jobs.items() if j.done]
        gone = {k for t, k in done if now - (t or now) > self.keep_s}
        gone |= {k for k, t in self._collected.items() if now - t > self.collected_s}
        gone |= {k for _, k in sorted(done)[: max(0, len(done) - self.max_finished)]}
        for k in gone:
            self._jobs.pop(k, None)
            self._collected.pop(k, None)

    def submit(self, fn: Callable[[Job], Any], session: str | None = None) -> str:
        jid, job = uuid.uuid4().hex, Job(session=session)
        with self._lock:
            self._prune()
            self._jobs[jid] = job

        def run() -> None:
            try:
                job.result = fn(job)
            except Exception as e:  # shown on the page, with its type
                job.error = f"{type(e).__name__}: {e}"
            finally:
                job.progress, job.finished, job.done = 1.0, self._clock(), True

        self._queue.put(run)
        return jid

    def status(self, jid: str | None, session: str | None = None) -> dict:
        with self._lock:
            self._prune()
            job = self._jobs.get(jid or "")
            if job is not None and job.session != session:
                job = None  # another session's job is not this one's business
            if job is not None and job.done:
                self._collected.setdefault(jid, self._clock())
        if job is None:
            return {"known": False, "done": True, "error": "unknown job (finished long ago, another tab's, or the "
                    "server restarted?)", "result": None, "stage": "", "progress": 0.0, "seconds": 0.0}
        return {"known": True, "done": job.done, "error": job.error, "result": job.result, "stage": job.stage,
                "progress": job.progress, "seconds": round(time.perf_counter() - job.started, 2)}

    def wait(self, jid: str, timeout: float = 120.0, session: str | None = None) -> dict:
        end = time.monotonic() + timeout
        while not self.status(jid, session)["done"] and time.monotonic() < end:
            time.sleep(0.02)
        return self.status(jid, session)


@functools.lru_cache(maxsize=2)
def model(spec: str):
    """``workbench.models.load(spec)``, loaded once per process."""
    import workbench.models

    return workbench.models.load(spec)


def decode_upload(contents: str, filename: str, sr: int = 16000, max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """Audio of a ``dcc.Upload`` (``data:...;base64,...``) decoded with :func:`workbench.audio.load_audio`.

    The bytes go to a fresh temporary directory (removed afterwards), never into the workspace.
    """
    try:
        payload = base64.b64decode(contents.split(",", 1)[1], validate=False)
    except (IndexError, ValueError) as e:
        raise ValueError(f"upload {filename!r}: not a base64 data URL ({e})") from None
    if len(payload) > max_bytes:
        raise ValueError(f"upload {filename!r}: {len(payload) / 2**20:.1f} MiB is over the "
                         f"{max_bytes / 2**20:.0f} MiB limit")
    suffix = Path(filename or "upload").suffix.lower()[:8] or ".wav"
    with tempfile.TemporaryDirectory(prefix="workbench-app-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(payload)
        try:
            audio = load_audio(path, sr=sr)
        except AudioLoadError as e:  # name the user's file, not the temporary copy
            raise AudioLoadError(filename or "upload", e.problem) from None
    return audio
