"""Synthetic speech with exact phoneme and word timings from espeak-ng.

libespeak-ng (shipped with its data by the PyPI package ``espeakng-loader``) is driven
through ctypes in synchronous mode with phoneme events enabled: the synth callback
receives the audio and, for every phoneme and word, an event giving its sample
position in that audio. Those positions are the ground-truth tiers. The library keeps
global state and is not thread safe, so every call goes through one lock.

Speakers are fixed combinations of accent voice, voice variant, pitch and rate
(:func:`make_speakers`), so ``speaker`` is a real, reproducible label.

Example
-------
>>> from workbench.corpus.synth import synthesize, synth_corpus
>>> r = synthesize("The cat sat on the mat.", voice="en-us+f2")          # doctest: +SKIP
>>> r.audio.shape[0] / r.sample_rate, r.phones[:2]                      # doctest: +SKIP
>>> corpus = synth_corpus(20, "work/synth", seed=0, n_speakers=4)       # doctest: +SKIP
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.audio import resample, save_audio
from workbench.corpus.phones import espeak_to_phone
from workbench.corpus.types import SILENCE, Clip, Corpus, Segment

logger = logging.getLogger(__name__)

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EV_LIST_TERMINATED, _EV_WORD, _EV_END, _EV_PHONEME = 0, 1, 5, 7
_RATE, _PITCH = 1, 3
_PAUSE_MNEMONICS = {"_", "_:", "_!", "_^_", "_#", "_|", "||", "|"}

SENTENCES = [
    "The old boat drifted slowly toward the rocky shore.",
    "Please bring three green apples from the kitchen.",
    "My brother fixed the broken bicycle chain yesterday.",
    "A cold wind blew across the empty parking lot.",
    "She painted the garden fence a bright shade of blue.",
    "We heard thunder rolling over the distant hills.",
    "The children laughed at the clever puppet show.",
    "He forgot his umbrella on the crowded morning train.",
    "Fresh bread smells wonderful early in the day.",
    "The museum opens its doors at nine on Sunday.",
    "Our teacher read a short poem about the sea.",
    "Turn left at the bakery and walk two blocks north.",
    "The kitten chased a feather under the wooden chair.",
    "Heavy rain flooded the narrow village road.",
    "They shared a pot of tea beside the warm fire.",
    "The pilot checked the engine before the long flight.",
    "Yellow leaves covered the path through the park.",
    "I would like a glass of water with my lunch.",
    "The choir sang softly in the quiet church.",
    "A small dog barked at the mail carrier.",
    "The farmer sold potatoes and onions at the market.",
    "Measure the flour carefully before you add the eggs.",
    "The river froze solid during the long winter.",
    "Could you close the window before you leave?",
    "Bright stars filled the clear night sky.",
    "The scientist recorded every result in her notebook.",
    "Two young foxes played near the edge of the forest.",
    "The shop on the corner sells shoes and hats.",
    "Jack packed his bag and caught the early bus.",
    "The soup was too hot to eat right away.",
    "We watched the sunset from the top of the tower.",
    "The engineer measured the bridge with a laser.",
    "Good judges listen closely to both sides.",
    "The violin player tuned each string with care.",
    "A thick fog rolled in from the harbour at dawn.",
    "Please speak a little louder so we can hear you.",
    "The zebra and the giraffe drank from the pool.",
    "Her voice was calm although the news was bad.",
    "The machine hummed quietly through the whole night.",
    "Nobody knew where the treasure map was hidden.",
]

#: Accent voices and variants combined into speakers (language + "+variant").
VOICES = ["en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-029"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4"]


class _ID(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _ID)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class SynthResult:
    """Audio (float32 at ``sample_rate``) plus tiers and the raw phoneme events of one utterance."""

    audio: np.ndarray
    sample_rate: int
    phones: list[Segment]
    words: list[Segment]
    events: list[tuple[str, float, int, int]] = field(default_factory=list)  # (mnemonic|"#word", t_s, pos, len)
    unknown_phones: Counter = field(default_factory=Counter)


class _Espeak:
    """Process-wide libespeak-ng handle; all use goes through ``self.lock``."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lock = threading.RLock()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                 espeakng_loader.get_data_path().encode(), _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate}), data {espeakng_loader.get_data_path()}")
        self.lib = lib
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._cb = _CALLBACK(self._collect)  # keep a reference: ctypes callbacks die with their object
        lib.espeak_SetSynthCallback(self._cb)

    def _collect(self, wav, n, ev) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while ev[i].type != _EV_LIST_TERMINATED:
            e = ev[i]
            ident = e.id.string if e.type == _EV_PHONEME else b""
            self._events.append((e.type, e.sample, e.text_position, e.length, ident))
            i += 1
        return 0

    def set_voice(self, voice: str, pitch: int | None, rate: int | None) -> None:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        if rate is not None:
            self.lib.espeak_SetParameter(_RATE, int(rate), 0)
        if pitch is not None:
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)

    def synth(self, text: str, voice: str, pitch: int | None, rate: int | None):
        with self.lock:
            self.set_voice(voice, pitch, rate)
            self._chunks, self._events = [], []
            b = text.encode("utf-8")
            err = self.lib.espeak_Synth(b, len(b) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return audio, list(self._events)

    def text_to_phonemes(self, text: str, voice: str) -> list[str]:
        with self.lock:
            self.set_voice(voice, None, None)
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            ptr = ctypes.c_char_p(ctypes.addressof(buf))
            out: list[str] = []
            while ptr.value:  # one clause per call; the library advances ptr
                res = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, ord(" ") << 8)
                out.extend((res or b"").decode("utf-8").split())
            return out


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Espeak:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def text_to_phonemes(text: str, voice: str = "en-us") -> list[str]:
    """espeak-ng's phoneme mnemonics for ``text`` (no pauses), as the synthesizer will say them."""
    return _engine().text_to_phonemes(text, voice)


def _split_words(text: str, voice: str, groups: list[tuple[int, int, list[tuple[int, int]]]], native: int
                 ) -> list[Segment]:
    """Word segments from word-event groups ``(start_sample, text_pos, [(phone_a, phone_b), ...])``.

    espeak speaks some word pairs as one unit ("from the", "of a": multi-word entries in
    its dictionary) and emits one word event for both. Such a group is split at the
    phone counts espeak gives each word alone; if those do not add up, the group keeps
    one segment labelled with all its words ("from the").
    """
    words: list[Segment] = []
    chars = len(text)
    for g, (start, pos, spans) in enumerate(groups):
        if not spans:
            continue
        stop_pos = groups[g + 1][1] if g + 1 < len(groups) else chars + 1
        tokens = re.findall(r"[\w']+", text[max(pos - 1, 0): max(stop_pos - 1, pos)].lower())
        if len(tokens) <= 1:
            words.append(Segment(start / native, spans[-1][1] / native, tokens[0] if tokens else "?"))
            continue
        counts = [len([m for m in text_to_phonemes(t, voice) if m not in _PAUSE_MNEMONICS]) for t in tokens]
        if sum(counts) != len(spans) or min(counts) == 0:
            words.append(Segment(start / native, spans[-1][1] / native, " ".join(tokens)))
            continue
        k = 0
        for tok, c in zip(tokens, counts):
            a = start if k == 0 else spans[k][0]
            words.append(Segment(a / native, spans[k + c - 1][1] / native, tok))
            k += c
    return words


def synthesize(text: str, voice: str = "en-us", pitch: int = 50, rate: int = 175,
               sr: int | None = None) -> SynthResult:
    """Speak ``text`` and return audio plus exact ``phones`` and ``words`` tiers.

    A phone runs from its event to the next event; pauses and the closure gaps espeak
    leaves before word-initial stops are labelled ``"sil"``, so the phone tier covers
    the whole clip. A word runs from its word event to the end of its last phone.
    Phones use the folded 39-set (:func:`workbench.corpus.phones.espeak_to_phone`);
    mnemonics without a mapping are kept and counted in ``unknown_phones``.
    ``pitch`` is espeak's 0-100 base pitch, ``rate`` words per minute (both always set, so a
    call never inherits the previous call's settings). ``sr`` resamples the audio
    (espeak-ng speaks at 22050 Hz); timings are unchanged.

    espeak-ng keeps waveform-generator state between utterances, so saying the same text
    twice in one process can differ by a few samples of noise; a fresh process replaying
    the same calls is byte-identical (``synth_corpus`` from the CLI is reproducible).
    """
    eng = _engine()
    pcm, events = eng.synth(text, voice, pitch, rate)
    native = eng.sample_rate
    n = pcm.shape[0]
    if n == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {text!r} with voice {voice!r}")
    # Boundary list: (sample, kind, label, text_pos, length)
    marks = [(min(max(s, 0), n), t, ident.decode("utf-8", "replace"), pos, ln)
             for t, s, pos, ln, ident in events if t in (_EV_WORD, _EV_PHONEME, _EV_END)]
    marks.sort(key=lambda m: m[0])  # stable: keeps the library's order at equal positions
    unknown: Counter = Counter()
    phones: list[Segment] = []
    groups: list[tuple[int, int, list[tuple[int, int]]]] = []  # one per word event
    raw_events: list[tuple[str, float, int, int]] = []

    def add_phone(a: int, b: int, label: str):
        if b <= a:
            return
        if phones and phones[-1].label == label == SILENCE and abs(phones[-1].end_s - a / native) < 1e-9:
            phones[-1] = Segment(phones[-1].start_s, b / native, SILENCE)
        else:
            phones.append(Segment(a / native, b / native, label))

    cursor = 0
    for k, (s, kind, mn, pos, ln) in enumerate(marks):
        nxt = marks[k + 1][0] if k + 1 < len(marks) else n
        add_phone(cursor, s, SILENCE)  # gap before this event (closure, word gap, lead-in)
        cursor = max(cursor, s)
        if kind == _EV_WORD:
            groups.append((s, pos, []))
            raw_events.append(("#word", s / native, pos, ln))
        elif kind == _EV_PHONEME:
            raw_events.append((mn, s / native, pos, ln))
            if mn in _PAUSE_MNEMONICS:
                add_phone(s, nxt, SILENCE)
            else:
                label = espeak_to_phone(mn)
                if label is None:
                    unknown[mn] += 1
                    label = mn
                add_phone(s, nxt, label)
                if groups:
                    groups[-1][2].append((s, nxt))
            cursor = max(cursor, nxt)
    add_phone(cursor, n, SILENCE)
    words = _split_words(text, voice, groups, native)
    if unknown:
        logger.debug("espeak phonemes without a 39-set mapping (kept as is): %s", dict(unknown))
    audio = pcm.astype(np.float32) / 32768.0
    out_sr = native
    if sr and sr != native:
        audio, out_sr = resample(audio, native, sr), sr
    return SynthResult(audio, out_sr, phones, words, raw_events, unknown)


@dataclass(frozen=True)
class Speaker:
    """A reproducible synthetic voice: accent voice + variant, pitch (0-100), rate (words/min)."""

    voice: str
    variant: str
    pitch: int
    rate: int

    @property
    def id(self) -> str:
        return f"{self.voice}+{self.variant}_p{self.pitch}_r{self.rate}"

    @property
    def espeak_voice(self) -> str:
        return f"{self.voice}+{self.variant}"


def make_speakers(n: int, seed: int = 0) -> list[Speaker]:
    """``n`` distinct speakers drawn deterministically from voices x variants x pitch x rate."""
    if n < 1:
        raise ValueError(f"n_speakers must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    combos = [(v, var) for v in VOICES for var in VARIANTS]
    order = rng.permutation(len(combos))
    speakers = []
    for i in range(n):
        voice, variant = combos[order[i % len(combos)]]
        pitch = int(rng.integers(25, 76))
        rate = int(rng.integers(140, 201))
        speakers.append(Speaker(voice, variant, pitch, rate))
    return speakers


def synth_corpus(n: int, out_dir: str | os.PathLike, seed: int = 0, n_speakers: int = 8, sr: int = 16000,
                 fmt: str = "flac", sentences: list[str] | None = None, verbose: bool = True,
                 id_prefix: str = "synth_") -> Corpus:
    """Write ``n`` synthetic utterances plus ``manifest.jsonl`` (tiers inline) to ``out_dir``.

    Clip ``i`` is sentence ``rng.choice`` spoken by speaker ``i % n_speakers`` (so every
    speaker says a spread of sentences). Audio is resampled to ``sr`` and saved as
    ``fmt`` ("flac" or "wav"). Clip ids are ``id_prefix`` + the index (``synth_00000``; another
    prefix keeps a second corpus's ids apart, e.g. held-out clips). Returns the :class:`Corpus`.

    Example
    -------
    >>> corpus = synth_corpus(40, "work/synth", seed=1)      # doctest: +SKIP
    >>> corpus.summary()["speakers"]                          # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if fmt not in ("flac", "wav"):
        raise ValueError(f"fmt must be 'flac' or 'wav', got {fmt!r}")
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    texts = sentences or SENTENCES
    speakers = make_speakers(n_speakers, seed)
    rng = np.random.default_rng(seed + 1)
    clips: list[Clip] = []
    unknown: Counter = Counter()
    for i in tqdm(range(n), desc="synth", unit="clip", disable=not verbose):
        spk = speakers[i % len(speakers)]
        text = texts[int(rng.integers(len(texts)))]
        r = synthesize(text, spk.espeak_voice, spk.pitch, spk.rate, sr=sr)
        unknown.update(r.unknown_phones)
        rel = f"audio/{id_prefix}{i:05d}.{fmt}"
        save_audio(out / rel, r.audio, r.sample_rate)
        clips.append(Clip(
            id=f"{id_prefix}{i:05d}", path=rel, domain="speech", speaker=spk.id, transcript=text,
            tiers={"words": r.words, "phones": r.phones}, duration_s=round(len(r.audio) / r.sample_rate, 6),
            extra={"source": "espeak-ng", "voice": spk.espeak_voice, "pitch": spk.pitch, "rate": spk.rate},
        ))
    if unknown:
        logger.warning("unmapped espeak phonemes in the corpus: %s", dict(unknown))
    corpus = Corpus(clips, root=out)
    corpus.save(out / "manifest.jsonl")
    return corpus
