"""Audio-model interpretability workbench.

Core package: audio I/O (:mod:`workbench.audio`), corpora and labels
(:mod:`workbench.corpus`), model adapters with TransformerLens-style hook points
(:mod:`workbench.models`), the activation cache (:mod:`workbench.cache`) and the
``workbench`` command line (:mod:`workbench.cli`).

Example
-------
>>> from workbench.corpus import Clip, Segment
>>> clip = Clip(id="a", path="a.wav", domain="speech", tiers={"phones": [Segment(0.0, 0.1, "AH")]})
>>> clip.label_at("phones", 0.05)
'AH'
"""

import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    # torch's OpenMP workers otherwise spin between parallel ops; on a busy 2-core machine that made SAE
    # training steps ~20x slower (set here, the first package any command or library user imports, so it
    # holds whichever module imports torch first)
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
