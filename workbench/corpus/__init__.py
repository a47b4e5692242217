"""Corpora and labels: clips with tiers of labelled segments ("phones", "words", ...).

Sources: a manifest.jsonl, a folder tree, Praat TextGrids, pocketsphinx forced
alignment, espeak-ng synthetic speech with exact timings, and synthetic non-speech.
Phones are folded to the 39-phone TIMIT-style set plus "sil"
(:mod:`workbench.corpus.phones`).

Example
-------
>>> from workbench.corpus import load_corpus, synth_corpus
>>> corpus = synth_corpus(8, "work/synth", seed=0)            # doctest: +SKIP
>>> corpus = load_corpus("work/synth")                         # doctest: +SKIP
>>> corpus[0].label_at("phones", 0.3), corpus.summary()["speakers"]   # doctest: +SKIP
"""
from workbench.corpus.folder import infer_speaker, scan_folder
from workbench.corpus.manifest import BuildResult, build_corpus, load_corpus, read_manifest
from workbench.corpus.nonspeech import synth_nonspeech
from workbench.corpus.phones import PHONES_39, fold_phone, fold_segments
from workbench.corpus.textgrid import read_textgrid, save_textgrids, write_textgrid
from workbench.corpus.types import SILENCE, Clip, Corpus, Segment

__all__ = [
    "Segment", "Clip", "Corpus", "SILENCE", "PHONES_39", "fold_phone", "fold_segments",
    "load_corpus", "read_manifest", "scan_folder", "build_corpus", "BuildResult", "infer_speaker",
    "read_textgrid", "write_textgrid", "save_textgrids", "synth_corpus", "synth_nonspeech", "ForcedAligner",
    "align_corpus",
]


def __getattr__(name):
    # espeak-ng (ctypes) and pocketsphinx load lazily: importing workbench.corpus stays cheap.
    if name == "synth_corpus":
        from workbench.corpus.synth import synth_corpus

        return synth_corpus
    if name in ("ForcedAligner", "align_corpus"):
        from workbench.corpus import align

        return getattr(align, name)
    raise AttributeError(f"module 'workbench.corpus' has no attribute {name!r}")
