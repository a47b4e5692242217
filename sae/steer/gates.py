"""What a user would do instead of steering: Whisper's own no-speech gate and Silero VAD gating.

- **No-speech gate** (openai-whisper ``transcribe``, faster-whisper): a 30 s window is dropped when
  p(``<|nospeech|>``) at the first decoding step is above ``0.6`` *and* the average log-probability
  of the decoded tokens is below ``-1``. The statistics come from
  :meth:`workbench.models.whisper.WhisperModel.transcribe_scored`.
- **Silero VAD** (PyPI ``silero-vad``, whose model ships inside the wheel): transcribe only the speech
  it finds, its chunks joined as faster-whisper's ``vad_filter`` does (same defaults: threshold 0.5,
  no minimum speech duration, 2 s minimum silence, 400 ms padding); no speech found = empty text.

Example
-------
>>> keep_window({"no_speech_prob": 0.9, "avg_logprob": -1.5})
False
>>> keep_window({"no_speech_prob": 0.9, "avg_logprob": -0.3})   # confident text is kept
True
>>> vad = SileroVAD()                                            # doctest: +SKIP
>>> vad.speech_audio(np.zeros(16000, np.float32)) is None        # doctest: +SKIP
True
"""
from __future__ import annotations

import numpy as np
import torch

NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0


def keep_window(window: dict, no_speech_threshold: float = NO_SPEECH_THRESHOLD,
                logprob_threshold: float = LOGPROB_THRESHOLD) -> bool:
    """openai-whisper's rule: skip when no-speech is likely and the text is not confident."""
    return not (window["no_speech_prob"] > no_speech_threshold and window["avg_logprob"] < logprob_threshold)


def gated_text(windows: list[dict], **thresholds) -> str:
    """Transcript of the windows the no-speech gate keeps."""
    return " ".join(w["text"] for w in windows if keep_window(w, **thresholds) and w["text"]).strip()


def plain_text(windows: list[dict]) -> str:
    return " ".join(w["text"] for w in windows if w["text"]).strip()


class SileroVAD:
    """Silero VAD with faster-whisper's ``VadOptions`` defaults; the model is loaded once."""

    def __init__(self, threshold: float = 0.5, min_speech_duration_ms: int = 0, min_silence_duration_ms: int = 2000,
                 speech_pad_ms: int = 400, sample_rate: int = 16000) -> None:
        from silero_vad import load_silero_vad

        self.model = load_silero_vad()
        self.options = dict(threshold=threshold, min_speech_duration_ms=min_speech_duration_ms,
                            min_silence_duration_ms=min_silence_duration_ms, speech_pad_ms=speech_pad_ms)
        self.sample_rate = sample_rate

    def timestamps(self, audio: np.ndarray) -> list[dict]:
        """Speech regions ``[{"start", "end"}]`` in samples."""
        from silero_vad import get_speech_timestamps

        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        with torch.no_grad():
            return get_speech_timestamps(wav, self.model, sampling_rate=self.sample_rate, **self.options)

    def speech_audio(self, audio: np.ndarray) -> np.ndarray | None:
        """The speech regions joined (None when there is none)."""
        from silero_vad import collect_chunks

        ts = self.timestamps(audio)
        if not ts:
            return None
        return collect_chunks(ts, torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))).numpy()
