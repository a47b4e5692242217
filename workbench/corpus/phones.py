"""Phone labels: fold ARPAbet / TIMIT / MFA-IPA / espeak-ng labels into one 39-phone set.

The target is the standard TIMIT folding of Lee & Hon (1989): 38 ARPAbet phones without
stress, uppercase, plus ``"sil"``. Stress digits are dropped (``AH0`` -> ``AH``);
``AO``->``AA``, ``AX``/``AX-H``->``AH``, ``AXR``->``ER``, ``IX``->``IH``, ``UX``->``UW``,
``EL``->``L``, ``EM``->``M``, ``EN``->``N``, ``NX``->``N``, ``ENG``->``NG``, ``ZH``->``SH``,
``HV``->``HH``; closures (``BCL``...), pauses (``PAU``, ``EPI``, ``H#``), empty labels,
``sp``/``sil``/``spn`` and noise markers fold to ``"sil"``. Lee & Hon delete the glottal
stop ``Q``; in a time-aligned tier its slot has to go somewhere, so it becomes ``"sil"``.
Labels that match nothing are kept unchanged and counted so
callers can report them.

Example
-------
>>> [fold_phone(p) for p in ["AH0", "ao1", "ZH", "kcl", "", "spn", "Q"]]
['AH', 'AA', 'SH', 'sil', 'sil', 'sil', 'sil']
>>> fold_phone("ɫ"), espeak_to_phone("'aI")
('L', 'AY')
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Iterable

from workbench.corpus.types import SILENCE, Segment

__all__ = ["PHONES_39", "fold_phone", "fold_segments", "espeak_to_phone", "is_known_phone"]

_KEEP = ("IY IH EH AE AH UW UH AA EY AY OY AW OW ER L R W Y M N NG CH JH DH B D DX G P T K Z V F TH "
         "S SH HH").split()
#: The folded set: 38 phones plus "sil".
PHONES_39: frozenset[str] = frozenset(_KEEP) | {SILENCE}

_ARPABET_FOLD = {
    "AO": "AA", "AX": "AH", "AX-H": "AH", "AXH": "AH", "AXR": "ER", "IX": "IH", "UX": "UW",
    "EL": "L", "EM": "M", "EN": "N", "NX": "N", "ENG": "NG", "ZH": "SH", "HV": "HH",
}
_SILENCE_LABELS = {
    "", "SIL", "SP", "SPN", "NSN", "PAU", "EPI", "H#", "<SIL>", "<S>", "</S>", "SILENCE", "NOISE", "<UNK>",
    "BCL", "DCL", "GCL", "PCL", "TCL", "KCL", "CL", "VCL",
}

# Montreal Forced Aligner's English IPA set (english_mfa). Secondary articulations
# (aspiration, palatalisation, labialisation, syllabicity, length) are stripped first.
_IPA = {
    "i": "IY", "ɪ": "IH", "e": "EY", "ej": "EY", "eɪ": "EY", "ɛ": "EH", "æ": "AE", "a": "AA", "ɑ": "AA",
    "ɒ": "AA", "ɔ": "AO", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɚ": "ER", "ɝ": "ER", "ɜ": "ER", "ʊ": "UH",
    "u": "UW", "ʉ": "UW", "o": "OW", "ow": "OW", "oʊ": "OW", "əw": "OW", "əʊ": "OW", "aj": "AY",
    "aɪ": "AY", "aw": "AW", "aʊ": "AW", "ɔj": "OY", "ɔɪ": "OY",
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "c": "K", "g": "G", "ɡ": "G", "ɟ": "G",
    "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH",
    "tʃ": "CH", "dʒ": "JH", "m": "M", "ɱ": "M", "n": "N", "ɲ": "N", "ŋ": "NG", "l": "L", "ɫ": "L",
    "ʎ": "L", "ɹ": "R", "r": "R", "w": "W", "j": "Y", "ɾ": "DX", "ʔ": "Q",
}
_IPA_DIACRITICS = "ʰʲʷˠːˑ\u0329\u030d\u0361\u035c\u0306"

# espeak-ng English phoneme mnemonics (stress marks stripped) -> unfolded ARPAbet. ";" is the
# linking glide espeak inserts between i and a following vowel ("the old"); "t["/"d[" are the
# dental stops en-029 uses for "th" (mapped to what is said, not to the spelling).
_ESPEAK = {
    # vowels
    "@": "AH", "@2": "AH", "@5": "AH", "@#": "AH", "a#": "AH", "V": "AH", "3": "ER", "3:": "ER", "3:r": "ER",
    "@r": "ER", "a": "AE", "aa": "AE", "a2": "AE", "A:": "AA", "A@": "AA", "A": "AA", "A#": "AA", "0": "AA",
    "0#": "AA", "E": "EH", "E2": "EH", "E#": "EH", "e": "EH", "e@": "EH", "eI": "EY", "I": "IH", "I2": "IH",
    "I#": "IH", "i": "IY", "i:": "IY", "i@": "IH", "i@3": "IH", "I@": "IH", "O": "AO", "O:": "AO", "O@": "AO",
    "o@": "AO", "O2": "AO", "oU": "OW", "oU#": "OW", "@U": "OW", "o": "OW", "U": "UH", "U@": "UH", "u:": "UW",
    "u": "UW", "aI": "AY", "aI@": "AY", "aI3": "AY", "aU": "AW", "aU@": "AW", "OI": "OY", "@L": "EL", "@2L": "EL",
    # consonants
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F", "v": "V", "T": "TH", "D": "DH",
    "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "h": "HH", "tS": "CH", "dZ": "JH", "m": "M", "n": "N", "N": "NG",
    "l": "L", "l/": "L", "l/2": "L", "l#": "L", "r": "R", "r-": "R", "r/": "R", "w": "W", "W": "W", "j": "Y",
    "t#": "DX", "t2": "T", "d#": "D", "t[": "T", "d[": "D", ";": "Y", "n-": "N", "m-": "M", "x": "K", "?": "Q",
    "z/2": "Z", "z#": "Z",
}
_STRESS = re.compile(r"^[',%=]+")


def _ipa_base(label: str) -> str:
    s = unicodedata.normalize("NFD", label)
    return "".join(ch for ch in s if ch not in _IPA_DIACRITICS)


def fold_phone(label: str | None) -> str:
    """Fold one phone label into :data:`PHONES_39`.

    Unknown labels come back unchanged (check with :func:`is_known_phone`).
    """
    if label is None:
        return SILENCE
    raw = label.strip()
    if raw.startswith("+") and raw.endswith("+"):  # pocketsphinx fillers: +NSN+, +SPN+, ++NOISE++
        return SILENCE
    up = re.sub(r"[012]$", "", raw.upper())  # ARPAbet stress digit
    if up in _SILENCE_LABELS or up == "Q":
        return SILENCE
    if up in _ARPABET_FOLD:
        return _ARPABET_FOLD[up]
    if up in PHONES_39:
        return up
    ipa = _IPA.get(raw) or _IPA.get(_ipa_base(raw))
    if ipa is not None:
        return fold_phone(ipa)
    return label


def is_known_phone(label: str) -> bool:
    """True when ``label`` is already in the folded 39-phone set."""
    return label in PHONES_39


def espeak_to_phone(mnemonic: str) -> str | None:
    """Map an espeak-ng English phoneme mnemonic (with or without stress marks) to the 39-set.

    Returns ``None`` for mnemonics the table does not know.
    """
    base = _STRESS.sub("", mnemonic.strip())
    arpa = _ESPEAK.get(base)
    if arpa is None:
        return None
    return fold_phone(arpa)


#: gaps shorter than this are float rounding between tiers and the clip length (e.g. a TextGrid
#: ending 3 us before the audio), not silence: they are not filled with a "sil" segment.
MIN_GAP_S = 1e-3


def fold_segments(segments: Iterable[Segment], end_s: float | None = None,
                  unknown: Counter | None = None) -> list[Segment]:
    """Fold a phone tier: map labels, fill gaps with ``"sil"`` and merge adjacent silences.

    ``end_s`` (the clip or TextGrid end) extends the tier with trailing silence;
    labels outside the set are kept and counted in ``unknown``.

    Example
    -------
    >>> segs = fold_segments([Segment(0.1, 0.2, "AH0"), Segment(0.2, 0.3, "sp")], end_s=0.5)
    >>> [(s.start_s, s.end_s, s.label) for s in segs]
    [(0.0, 0.1, 'sil'), (0.1, 0.2, 'AH'), (0.2, 0.5, 'sil')]
    """
    out: list[Segment] = []

    def push(a: float, b: float, lab: str) -> None:
        if b <= a:
            return
        if out and lab == SILENCE and out[-1].label == SILENCE and abs(out[-1].end_s - a) < 1e-9:
            out[-1] = Segment(out[-1].start_s, b, SILENCE)
        else:
            out.append(Segment(a, b, lab))

    cursor = 0.0
    for seg in sorted(segments):
        lab = fold_phone(seg.label)
        if seg.start_s > cursor + MIN_GAP_S:
            push(cursor, seg.start_s, SILENCE)
        if lab not in PHONES_39 and unknown is not None:
            unknown[lab] += 1
        push(max(seg.start_s, cursor), seg.end_s, lab)
        cursor = max(cursor, seg.end_s)
    if end_s is not None and end_s > cursor + MIN_GAP_S:
        push(cursor, end_s, SILENCE)
    return out
