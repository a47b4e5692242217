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

__version__ = "0.1.0"
