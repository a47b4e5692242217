"""Audio I/O: float32 mono at a requested rate, chunked reading of long files, atomic saving.

Every problem with an input file raises one :class:`AudioLoadError` (a ``ValueError``)
whose message names the file and the problem: missing, a directory or other non-file,
zero bytes, not audio (e.g. a text file), unreadable/corrupt, zero samples, NaN/inf
samples. All-silent audio is legal but suspicious, so it only warns. Float files whose
samples go beyond full scale (|x| > 1: e.g. a float WAV written without scaling, peak 783)
are scaled down to peak 1 by :func:`load_audio` and :func:`iter_audio_chunks`, with a
:class:`FullScaleWarning` that says so (models expect [-1, 1]: Whisper transcribes such a
clip as " Oh"); :func:`check_audio` warns.

Resampling uses :func:`scipy.signal.resample_poly` (polyphase FIR, Kaiser window).
:func:`iter_audio_chunks` reads overlapping blocks aligned to the resampling ratio, so
its concatenated chunks equal :func:`load_audio` of the whole file.

Example
-------
>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
>>> _ = save_audio(path, np.sin(np.arange(44100) / 10).astype("float32") * 0.5, 44100)
>>> x = load_audio(path, sr=16000)
>>> x.dtype, x.shape
(dtype('float32'), (16000,))
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from workbench.atomic import atomic_path
from workbench.validate import WorkbenchWarning

__all__ = ["AudioLoadError", "AudioWarning", "FullScaleWarning", "LowRateWarning", "audio_info", "load_audio", "iter_audio_chunks", "save_audio",
           "resample", "check_audio", "AUDIO_EXTENSIONS"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
#: Peak amplitude below which a file counts as all-silent (about -100 dBFS).
SILENCE_PEAK = 1e-5
#: Peak amplitude above which decoded audio counts as beyond full scale (a little headroom
#: for resampling overshoot and float rounding of files written at exactly 1.0).
FULL_SCALE_PEAK = 1.01
_BLOCK_FRAMES = 1 << 18  # block size for whole-file scans (about 16 s at 16 kHz)


class AudioWarning(WorkbenchWarning):
    """Audio that loads but is suspect (silent, beyond full scale, a far too low rate); names the file."""


class FullScaleWarning(AudioWarning):
    """Decoded samples beyond full scale (|x| > 1); the message names the file and the peak."""


class LowRateWarning(AudioWarning):
    """A file recorded far below the rate it is resampled to (e.g. 100 Hz for a 16 kHz model)."""


#: a file below this rate holds no speech band (telephone speech is 8 kHz): warn before a model hears it
LOW_RATE_HZ = 8000


def _warn_if_low_rate(path: str | os.PathLike, sr_in: int, sr: int | None) -> None:
    if sr and sr_in < min(LOW_RATE_HZ, sr):
        warnings.warn(f"{path}: recorded at {sr_in} Hz, far below the {sr} Hz it is resampled to: it holds nothing "
                      f"above {sr_in / 2:g} Hz (speech needs several kHz), so what a model makes of it is meaningless",
                      LowRateWarning, stacklevel=3)


class AudioLoadError(ValueError):
    """A file could not be used as audio; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _open_checked(path: str | os.PathLike) -> sf.SoundFile:
    """Open ``path`` with soundfile, turning every failure into an :class:`AudioLoadError`."""
    p = Path(path)
    if not p.exists():
        raise AudioLoadError(p, "file not found")
    if p.is_dir():
        raise AudioLoadError(p, "is a directory, not an audio file")
    if not p.is_file():
        raise AudioLoadError(p, "is not a regular file")
    if p.stat().st_size == 0:
        raise AudioLoadError(p, "empty file (0 bytes)")
    if p.suffix.lower() == ".mp3" and "MP3" not in sf.available_formats():
        raise AudioLoadError(
            p, f"mp3 is not supported by this libsndfile ({sf.__libsndfile_version__}); "
            "install libsndfile >= 1.1 or convert the file to flac/wav")
    try:
        f = sf.SoundFile(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        if _looks_like_text(p):
            raise AudioLoadError(p, "wrong type: this is a text file, not audio") from e
        raise AudioLoadError(p, f"unreadable or corrupt audio ({e})") from e
    if f.frames == 0:
        f.close()
        raise AudioLoadError(p, "zero-length audio (the file holds no samples)")
    return f


def audio_info(path: str | os.PathLike) -> tuple[int, int, float]:
    """``(sample_rate, frames, duration_s)`` from the header; raises :class:`AudioLoadError`."""
    with _open_checked(path) as f:
        return f.samplerate, f.frames, f.frames / f.samplerate


@functools.lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The Kaiser-window FIR that ``resample_poly`` designs for ``up/down``, designed once."""
    from scipy.signal import firwin  # lazy: importing scipy.signal costs ~1 s

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of a 1-D float array (no-op when the rates match)."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_in), int(sr_out))
    up, down = sr_out // g, sr_in // g
    # Same filter as resample_poly's default, cached: designing it took longer than filtering.
    return resample_poly(np.asarray(audio, np.float32), up, down, window=_lowpass(up, down)).astype(np.float32)


def _read(f: sf.SoundFile, path: str | os.PathLike, frames: int) -> np.ndarray:
    try:
        x = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioLoadError(path, f"unreadable or corrupt audio while decoding ({e})") from e
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if not np.isfinite(x).all():
        raise AudioLoadError(path, f"contains NaN/inf samples ({int((~np.isfinite(x)).sum())} of {x.size})")
    return x


def _warn_if_silent(path: str | os.PathLike, peak: float) -> None:
    if peak < SILENCE_PEAK:
        warnings.warn(f"{path}: audio is all silent (peak {peak:.2g})", AudioWarning, stacklevel=3)


def _full_scale_gain(path: str | os.PathLike, peak: float, normalise: bool = True) -> float:
    """1.0, or ``1 / peak`` with a :class:`FullScaleWarning` when ``peak`` is beyond full scale."""
    if peak <= FULL_SCALE_PEAK:
        return 1.0
    what = f"scaled by 1/{peak:.4g} to peak 1.0" if normalise else "it is scaled to peak 1.0 when loaded"
    warnings.warn(f"{path}: samples reach {peak:.4g}, beyond full scale 1.0 (float audio written without "
                  f"scaling?); {what}", FullScaleWarning, stacklevel=3)
    return 1.0 / peak


def _file_peak(f: sf.SoundFile, path: str | os.PathLike) -> float:
    """Peak |x| of the whole file (rewinds); integer PCM cannot exceed full scale, so 0 is returned for it."""
    if f.subtype not in ("FLOAT", "DOUBLE"):
        return 0.0
    peak = 0.0
    f.seek(0)
    while True:
        x = _read(f, path, _BLOCK_FRAMES)
        if x.size == 0:
            break
        peak = max(peak, float(np.abs(x).max()))
    f.seek(0)
    return peak


def load_audio(path: str | os.PathLike, sr: int | None = 16000, *, offset_s: float = 0.0,
               duration_s: float | None = None) -> np.ndarray:
    """Read ``path`` as float32 mono resampled to ``sr`` (``None`` keeps the file's rate).

    ``offset_s``/``duration_s`` read a window of the file without decoding the rest
    (for formats that seek). Raises :class:`AudioLoadError` naming the file on bad input.

    Example
    -------
    >>> x = load_audio("speech/jfk.flac", sr=16000)            # doctest: +SKIP
    >>> first_second = load_audio("long.flac", offset_s=60, duration_s=1)  # doctest: +SKIP
    """
    if offset_s < 0 or (duration_s is not None and duration_s <= 0):
        raise ValueError(f"{path}: offset_s must be >= 0 and duration_s > 0, got {offset_s}, {duration_s}")
    with _open_checked(path) as f:
        sr_in = f.samplerate
        start = int(round(offset_s * sr_in))
        if start >= f.frames:
            raise AudioLoadError(path, f"offset {offset_s} s is past the end ({f.frames / sr_in:.3f} s)")
        if start:
            f.seek(start)
        frames = -1 if duration_s is None else int(round(duration_s * sr_in))
        x = _read(f, path, frames)
    if x.size == 0:
        raise AudioLoadError(path, "zero-length audio (no samples decoded)")
    peak = float(np.abs(x).max())
    _warn_if_silent(path, peak)
    _warn_if_low_rate(path, sr_in, sr)
    gain = _full_scale_gain(path, peak)
    if gain != 1.0:
        x = x * np.float32(gain)
    return resample(x, sr_in, sr) if sr else x


def check_audio(path: str | os.PathLike) -> tuple[int, float]:
    """Decode the whole file in blocks, checking for corruption and NaN/inf.

    Returns ``(sample_rate, duration_s)``; raises :class:`AudioLoadError`; warns if silent.
    Used by ``workbench corpus build`` to validate every clip once.
    """
    with _open_checked(path) as f:
        sr_in, peak, n = f.samplerate, 0.0, 0
        while True:
            x = _read(f, path, _BLOCK_FRAMES)
            if x.size == 0:
                break
            n += x.size
            peak = max(peak, float(np.abs(x).max()))
    if n == 0:
        raise AudioLoadError(path, "zero-length audio (no samples decoded)")
    _warn_if_silent(path, peak)
    _full_scale_gain(path, peak, normalise=False)
    return sr_in, n / sr_in


def iter_audio_chunks(path: str | os.PathLike, chunk_s: float = 30.0, sr: int | None = 16000
                      ) -> Iterator[np.ndarray]:
    """Yield consecutive float32 mono chunks of about ``chunk_s`` seconds at ``sr``.

    Each block is read with enough context on both sides to cover the resampling
    filter and starts on a multiple of the rate ratio, so ``np.concatenate`` of the
    chunks equals :func:`load_audio` of the whole file (to float rounding).

    Example
    -------
    >>> for chunk in iter_audio_chunks("long.flac", chunk_s=60):   # doctest: +SKIP
    ...     process(chunk)
    """
    if chunk_s <= 0:
        raise ValueError(f"chunk_s must be > 0, got {chunk_s}")
    with _open_checked(path) as f:
        sr_in, n_in = f.samplerate, f.frames
        _warn_if_low_rate(path, sr_in, sr)
        sr = sr or sr_in
        g = math.gcd(sr_in, sr)
        up, down = sr // g, sr_in // g
        # Input-sample step: a multiple of `down`, so chunk starts map to whole output samples.
        step = max(down, int(round(chunk_s * sr_in / down)) * down)
        # resample_poly's filter reaches 10*max(up, down) upsampled samples each side.
        pad = 0 if up == down else math.ceil((10 * max(up, down) / up + 2) / down) * down
        # Beyond-full-scale float files are scaled by their whole-file peak, as load_audio does.
        gain = np.float32(_full_scale_gain(path, _file_peak(f, path)))
        peak, start = 0.0, 0
        while start < n_in:
            stop = min(start + step, n_in)
            lo, hi = max(0, start - pad), min(n_in, stop + pad)
            f.seek(lo)
            block = _read(f, path, hi - lo)
            if block.size < hi - lo:
                raise AudioLoadError(path, f"truncated: header says {n_in} frames, decoding stopped early")
            peak = max(peak, float(np.abs(block).max()))
            if gain != 1.0:
                block = block * gain
            if up == down:
                yield block[start - lo: stop - lo].astype(np.float32)
            else:
                y = resample(block, sr_in, sr)
                a = (start - lo) * up // down
                b = a + math.ceil((stop - start) * up / down) if stop == n_in else a + (stop - start) * up // down
                yield y[a:b]
            start = stop
    _warn_if_silent(path, peak)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str | None = None) -> Path:
    """Write ``audio`` (float, mono ``[n]`` or ``[n, channels]``) atomically; format from the suffix.

    Writes a temporary file in the same folder and ``os.replace``-s it, so readers never
    see a half-written file. Returns the path.
    """
    path = Path(path)
    audio = np.asarray(audio)
    if audio.size == 0:
        raise ValueError(f"{path}: refusing to write zero-length audio")
    if np.issubdtype(audio.dtype, np.floating) and not np.isfinite(audio).all():
        raise ValueError(f"{path}: refusing to write NaN/inf samples")
    ext = path.suffix.lstrip(".").upper()
    fmt = {"AIF": "AIFF", "OGA": "OGG"}.get(ext, ext) or None
    with atomic_path(path) as tmp:  # the temp name ends in .tmp, so the format is passed explicitly
        sf.write(str(tmp), audio, int(sr), subtype=subtype, format=fmt)
    return path
