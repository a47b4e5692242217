"""Text as word error rates compare it: one normaliser and one per-clip error count for every WER in
the workbench (SAE splices, steering, enhancement and noise conditions).

Example
-------
>>> normalize_text("Ask not -- what YOUR country can do!")
'ask not what your country can do'
>>> word_errors("the cat sat", "the cat")
(1, 3)
"""
from __future__ import annotations

import re

__all__ = ["normalize_text", "word_errors"]


def normalize_text(s: str) -> str:
    """Lower case, no punctuation (apostrophes kept), single spaces: what WER compares."""
    s = re.sub(r"[^a-z0-9' ]+", " ", s.lower().replace("-", " "))
    return re.sub(r"\s+", " ", s).strip()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words) of one clip after normalization (jiwer alignment)."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return len(hyp.split()), 0
    if not hyp:
        return len(ref.split()), len(ref.split())
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split())
