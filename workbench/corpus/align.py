"""Forced alignment of natural speech to its transcript with pocketsphinx.

pocketsphinx (PyPI) ships a US-English acoustic model and the CMU dictionary. Alignment
runs two passes over 16 kHz audio: a word pass (``set_align_text``) and a phone pass
(``set_alignment``). Facts this module relies on: the decoder must be created with
``bestpath=False`` or the phone pass fails with "Alignment failed"; ``get_alignment()``
must be iterated right away (keeping it and reading it later crashed). It aligns a
minute of speech in about 2 s. Synthetic clips already have exact tiers and are not aligned;
on espeak-ng's US voices pocketsphinx still lands within ~10 ms of them (median word boundary,
tests/test_align.py), which is how the aligner is tested without ../shared/data.

Transcripts are normalised to lowercase dictionary words; bracketed tokens (``[laugh]``,
``<VOCNOISE>``) are dropped. Words missing from the dictionary get a pronunciation from
espeak-ng (``oov="g2p"``, the default) or are left out (``oov="skip"``); either way they
are reported in :attr:`AlignResult.oov`.

Example
-------
>>> aligner = ForcedAligner()                                              # doctest: +SKIP
>>> r = aligner.align_file("speech/jfk.flac", "and so my fellow americans")   # doctest: +SKIP
>>> r.words[0], r.phones[:3]                                                # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field

import numpy as np

from workbench.audio import load_audio
from workbench.corpus.phones import fold_segments
from workbench.corpus.types import Corpus, Segment

logger = logging.getLogger(__name__)

__all__ = ["ForcedAligner", "AlignResult", "AlignmentError", "normalise_transcript", "align_corpus",
           "needs_alignment", "boundary_errors"]

SAMPLE_RATE = 16000
_SKIP_WORDS = {"<sil>", "<s>", "</s>"}
# CMU acoustic-model phones; the folded set adds DX and drops AO/ZH, so map back for g2p.
_TO_CMU = {"DX": "T", "sil": None}
# Pruning beams for the retry: with the defaults the grammar search sometimes loses the
# path on hard audio ("Final result does not match the grammar"); wider beams cost ~2x time.
_WIDE_BEAMS = {"beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100}
#: How far (log-score per 10 ms frame) an alignment may score below an unconstrained phone
#: decode of the same audio. Forced alignment always "succeeds" (the wide-beam retry finds some
#: path), so a transcript that is not what was said has to be caught by its score; comparing
#: with the phone loop cancels what the audio alone does to scores (noise, level). Measured on
#: ../shared/data: right transcripts -3 to -19, a transcript missing a word (oov="skip") -26.5,
#: made-up or another clip's words -32 to -61.
MIN_SCORE_VS_PHONE_LOOP = -28.0
#: Least fraction of the speech the phone decode finds (non-silence, non-filler) that the
#: aligned words must span: a transcript much shorter than what was said parks the rest in
#: silence models, which score well. Measured: right transcripts 0.98-1.29, "hello" on the
#: real clips 0.03-0.13, a 16-word sentence of another text 0.35-0.72.
MIN_SPEECH_COVERAGE = 0.6


class AlignmentError(RuntimeError):
    """pocketsphinx could not align a clip; the message names the clip."""


@dataclass
class AlignResult:
    words: list[Segment]
    phones: list[Segment]
    oov: list[str] = field(default_factory=list)  # transcript words not in the dictionary


def normalise_transcript(text: str) -> list[str]:
    """Lowercase words for the aligner: drop ``[...]``/``<...>`` tokens and punctuation.

    >>> normalise_transcript("Hello, World! [laugh] <VOCNOISE> it's  fine-ish.")
    ['hello', 'world', "it's", 'fine-ish']
    """
    text = re.sub(r"\[[^\]]*\]|<[^>]*>", " ", text.lower())
    text = re.sub(r"[^\w'\- ]+", " ", text.replace("’", "'"))
    return [w.strip("'-") for w in text.split() if w.strip("'-")]


def boundary_errors(reference: list[Segment], hypothesis: list[Segment]) -> tuple[np.ndarray, int]:
    """Absolute start and end errors (s) of words matched in order between two word tiers.

    Words are matched with :class:`difflib.SequenceMatcher` on their labels, so inserted,
    deleted or misspelt words are left out. Returns ``(errors, n_matched_words)``.

    >>> ref = [Segment(0.0, 0.5, "hi"), Segment(0.5, 1.0, "there")]
    >>> boundary_errors(ref, [Segment(0.02, 0.5, "hi"), Segment(0.5, 0.9, "there")])[0].round(3).tolist()
    [0.02, 0.0, 0.0, 0.1]
    """
    import difflib

    sm = difflib.SequenceMatcher(a=[s.label for s in reference], b=[s.label for s in hypothesis], autojunk=False)
    errs: list[float] = []
    n = 0
    for blk in sm.get_matching_blocks():
        for k in range(blk.size):
            r, h = reference[blk.a + k], hypothesis[blk.b + k]
            errs += [abs(r.start_s - h.start_s), abs(r.end_s - h.end_s)]
            n += 1
    return np.asarray(errs), n


def needs_alignment(clip) -> bool:
    """True for natural speech with a transcript and no word tier (synthetic clips are exact)."""
    return (clip.domain == "speech" and bool(clip.transcript) and "words" not in clip.tiers
            and clip.extra.get("source") != "espeak-ng")


class ForcedAligner:
    """A reusable pocketsphinx aligner (decoder loading costs ~0.5 s; calls are serialised).

    Parameters
    ----------
    oov : "g2p" gives out-of-dictionary words an espeak-ng pronunciation, "skip" leaves them out.
    min_score_vs_phone_loop : alignments whose mean log-score per frame falls more than this below
        an unconstrained phone decode are refused (:data:`MIN_SCORE_VS_PHONE_LOOP`): the transcript
        is not what the audio says. ``None`` turns the check off.
    **decoder_kwargs : extra pocketsphinx config (``hmm=``, ``dict=`` for another model).
    """

    def __init__(self, oov: str = "g2p", min_score_vs_phone_loop: float | None = MIN_SCORE_VS_PHONE_LOOP,
                 **decoder_kwargs) -> None:
        if oov not in ("g2p", "skip"):
            raise ValueError(f"oov must be 'g2p' or 'skip', got {oov!r}")
        self.oov = oov
        self.min_score_vs_phone_loop = min_score_vs_phone_loop
        self._loop = None
        self._lock = threading.Lock()
        self._kwargs = decoder_kwargs
        self._decoders: dict[int, object] = {}
        d = self._decoder(0)
        self._frate = int(d.config["frate"])
        if int(d.config["samprate"]) != SAMPLE_RATE:
            raise ValueError(f"aligner expects a {SAMPLE_RATE} Hz model, got {d.config['samprate']}")

    def _decoder(self, attempt: int):
        """Decoder for ``attempt`` 0 (default beams) or 1 (wide beams, created on first need)."""
        if attempt not in self._decoders:
            from pocketsphinx import Decoder

            extra = {} if attempt == 0 else _WIDE_BEAMS
            self._decoders[attempt] = Decoder(bestpath=False, loglevel="ERROR", **{**extra, **self._kwargs})
        return self._decoders[attempt]

    def _g2p(self, word: str) -> str | None:
        from workbench.corpus.phones import espeak_to_phone
        from workbench.corpus.synth import text_to_phonemes

        phones = []
        for mn in text_to_phonemes(word, "en-us"):
            p = espeak_to_phone(mn)
            p = _TO_CMU.get(p, p) if p else None
            if p:
                phones.append(p)
        return " ".join(phones) or None

    def _prepare(self, d, transcript: str) -> tuple[list[str], list[str]]:
        words, oov = [], []
        for w in normalise_transcript(transcript):
            if d.lookup_word(w) is not None:
                words.append(w)
                continue
            parts = [x for x in w.split("-") if x]
            if len(parts) > 1 and all(d.lookup_word(x) is not None for x in parts):
                words.extend(parts)  # "well-known" -> "well known"
                continue
            oov.append(w)
            pron = self._g2p(w) if self.oov == "g2p" else None
            if pron:
                d.add_word(w, pron, True)
                words.append(w)
        return words, oov

    def align(self, audio: np.ndarray, transcript: str, name: str = "<audio>") -> AlignResult:
        """Align 16 kHz float audio to ``transcript``; raises :class:`AlignmentError` naming ``name``.

        Tries the default beams, then once more with wide beams if the search lost the path.
        """
        pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        end_s = len(audio) / SAMPLE_RATE
        with self._lock:
            for attempt in (0, 1):
                d = self._decoder(attempt)
                words, oov = self._prepare(d, transcript)
                if not words:
                    raise AlignmentError(f"{name}: no alignable words in transcript {transcript!r}")
                try:
                    word_segs, phone_segs, frame_score = self._run(d, words, pcm, end_s)
                    break
                except RuntimeError as e:
                    if attempt == 1:
                        raise AlignmentError(f"{name}: pocketsphinx alignment failed ({e})") from e
                    logger.info("%s: alignment failed with default beams (%s); retrying with wide beams", name, e)
        if oov:
            logger.warning("%s: words not in the pocketsphinx dictionary (%s): %s", name,
                           "espeak pronunciation" if self.oov == "g2p" else "left out", oov)
        if not word_segs:
            raise AlignmentError(f"{name}: pocketsphinx aligned no words")
        if self.min_score_vs_phone_loop is not None:
            with self._lock:
                loop = self._phone_loop(pcm)
            if loop is not None:
                self._check_fit(name, transcript, frame_score, word_segs, *loop)
        return AlignResult(word_segs, fold_segments(phone_segs, end_s=end_s), oov)

    def _check_fit(self, name: str, transcript: str, frame_score: float, words: list[Segment], loop_score: float,
                   speech_s: float) -> None:
        """:class:`AlignmentError` unless the alignment scores near a free phone decode and spans its speech."""
        problem = None
        if frame_score - loop_score < self.min_score_vs_phone_loop:
            problem = (f"the alignment scores {frame_score:.1f} per frame, {loop_score - frame_score:.1f} below a "
                       f"free phone decode (limit {-self.min_score_vs_phone_loop:g})")
        covered = sum(w.end_s - w.start_s for w in words)
        if speech_s > 0.5 and covered < MIN_SPEECH_COVERAGE * speech_s:
            problem = f"its words span {covered:.2f} s of the {speech_s:.2f} s of speech in the audio"
        if problem:
            raise AlignmentError(f"{name}: the transcript does not fit the audio ({problem}); check that it is "
                                 f"this clip's transcript: {transcript[:80]!r}")

    def _phone_loop(self, pcm: bytes) -> tuple[float, float] | None:
        """``(mean log-score per frame, seconds of speech)`` of the best unconstrained phone sequence
        (None without a phone LM for the acoustic model)."""
        import math
        import os

        if self._loop is None:
            from pocketsphinx import Decoder, get_model_path

            lm = os.path.join(get_model_path(), "en-us", "en-us-phone.lm.bin")
            if "hmm" in self._kwargs or not os.path.isfile(lm):
                return None  # another acoustic model: no phone LM known to match it
            self._loop = Decoder(allphone=lm, bestpath=False, loglevel="ERROR")
        d = self._loop
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        # Segment scores come back as probabilities; turn them into the decoder's log units
        # (base ``logbase``), the units of the alignment's scores.
        log_base = math.log(float(d.config["logbase"]))
        total, frames, speech = 0.0, 0, 0
        for seg in d.seg():
            n = seg.end_frame - seg.start_frame + 1
            total += math.log(max(seg.ascore, 1e-300)) / log_base
            frames += n
            if seg.word != "SIL" and not seg.word.startswith("+"):  # +SPN+, +NSN+: fillers and noise
                speech += n
        return (total / frames, speech / self._frate) if frames else None

    def _run(self, d, words: list[str], pcm: bytes, end_s: float) -> tuple[list[Segment], list[Segment], float]:
        d.set_align_text(" ".join(words))
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        d.set_alignment()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        # Read the alignment while iterating: a stored Alignment object crashed when read later.
        word_segs, phone_segs = [], []
        score, frames = 0, 0
        for w in d.get_alignment():
            score, frames = score + w.score, frames + w.duration
            a, b = w.start / self._frate, (w.start + w.duration) / self._frate
            label = re.sub(r"\(\d+\)$", "", w.name)
            if label not in _SKIP_WORDS and not label.startswith(("+", "[")):
                word_segs.append(Segment(a, min(b, end_s), label))
            for p in w:
                pa, pb = p.start / self._frate, (p.start + p.duration) / self._frate
                phone_segs.append(Segment(pa, min(pb, end_s), p.name))
        return word_segs, phone_segs, score / max(frames, 1)

    def align_file(self, path, transcript: str) -> AlignResult:
        """Load ``path`` at 16 kHz and align it."""
        return self.align(load_audio(path, SAMPLE_RATE), transcript, name=str(path))


def _align_in_worker(path: str, transcript: str) -> AlignResult:
    """One clip in a worker process of :func:`align_corpus` (each worker keeps its own aligner)."""
    global _WORKER_ALIGNER
    if _WORKER_ALIGNER is None:
        _WORKER_ALIGNER = ForcedAligner()
    return _WORKER_ALIGNER.align_file(path, transcript)


_WORKER_ALIGNER: ForcedAligner | None = None


def _settings(aligner: ForcedAligner | None) -> str:
    """What besides audio and transcript decides an alignment (the key of :mod:`workbench.corpus.align_cache`)."""
    import pocketsphinx

    oov, score, kw = ((aligner.oov, aligner.min_score_vs_phone_loop, aligner._kwargs) if aligner is not None
                      else ("g2p", MIN_SCORE_VS_PHONE_LOOP, {}))
    return f"oov={oov};min_score={score};decoder={sorted(kw.items())};pocketsphinx={getattr(pocketsphinx, '__version__', '?')}"


def _results(todo: list, corpus: Corpus, aligner: ForcedAligner | None, jobs: int, verbose: bool):
    """``(clip, cache key, AlignResult or the AlignmentError/ValueError it raised)`` in corpus order: from the
    cache (:mod:`workbench.corpus.align_cache`) where the same audio and transcript were aligned before, else
    aligned (and cached)."""
    from workbench.corpus import align_cache

    settings = _settings(aligner)
    keys = [align_cache.entry_key(corpus.audio_path(c), c.transcript, settings) for c in todo]
    cached = [align_cache.load(k) for k in keys]
    misses = [c for c, r in zip(todo, cached) if r is None]
    if len(misses) < len(todo):
        logger.info("%d of %d alignments from the cache", len(todo) - len(misses), len(todo))
    fresh = dict(_aligned(misses, corpus, aligner, jobs, verbose))
    for clip, key, r in zip(todo, keys, cached):
        if r is None:
            r = fresh[clip.id]
            if not isinstance(r, Exception):
                align_cache.save(key, r)
        yield clip, key, r


def _aligned(todo: list, corpus: Corpus, aligner: ForcedAligner | None, jobs: int, verbose: bool):
    """``(clip id, AlignResult or the error)``; with ``jobs`` > 1 the clips are aligned in worker processes
    (pocketsphinx searches on one core)."""
    from tqdm.auto import tqdm

    if not todo:
        return
    with contextlib.ExitStack() as stack:
        if jobs <= 1 or len(todo) < 2 or aligner is not None:
            aligner = aligner or ForcedAligner()
            results = [lambda c=c: aligner.align_file(corpus.audio_path(c), c.transcript) for c in todo]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawned, not forked: a fork of a process whose OpenMP pool is running can hang
            pool = stack.enter_context(ProcessPoolExecutor(min(jobs, len(todo)),
                                                           mp_context=multiprocessing.get_context("spawn")))
            results = [pool.submit(_align_in_worker, str(corpus.audio_path(c)), c.transcript).result for c in todo]
        for clip, result in zip(todo, tqdm(results, desc="align", unit="clip", disable=not verbose)):
            try:
                yield clip.id, result()
            except (AlignmentError, ValueError) as e:
                yield clip.id, e


def align_corpus(corpus: Corpus, aligner: ForcedAligner | None = None, strict: bool = False,
                 errors: list[dict] | None = None, verbose: bool = True, jobs: int = 1) -> int:
    """Add "words"/"phones" tiers to every clip that :func:`needs_alignment`; returns how many.

    Failures raise (``strict``) or are logged, appended to ``errors`` and the clip is kept
    without tiers. ``jobs`` > 1: that many clips aligned side by side in worker processes (not with a
    given ``aligner``); 0: one per CPU core.
    """
    todo = [c for c in corpus if needs_alignment(c)]
    if not todo:
        return 0
    jobs = jobs or (os.cpu_count() or 1)
    done = 0
    for clip, _, r in _results(todo, corpus, aligner, jobs, verbose):
        if isinstance(r, Exception):
            if strict:
                raise r
            logger.warning("alignment skipped: %s", r)
            if errors is not None:
                errors.append({"clip_id": clip.id, "path": str(corpus.audio_path(clip)), "stage": "align",
                               "error": str(r), "action": "kept without alignment"})
            continue
        clip.tiers["words"], clip.tiers["phones"] = r.words, r.phones
        if r.oov:  # a space-separated string: extras become scalar frame-table columns in the cache
            clip.extra["align_oov"] = " ".join(r.oov)
        clip.extra["alignment_source"] = "pocketsphinx"
        done += 1
    return done
