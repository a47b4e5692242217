"""Feature steering of Whisper: cut hallucinated transcripts on non-speech while keeping the WER.

``fit`` selects SAE features (or the class-mean direction) that mark a concept on a cache, sweeps
N and strength on dev clips and writes a steering artifact (format: :mod:`workbench.steering`);
``evaluate`` compares it on held-out clips with plain decoding, Whisper's no-speech gate and
Silero VAD gating. CLI: ``workbench steer prepare|fit|eval``.

Example
-------
>>> import sae.steer
>>> from workbench.models import load
>>> steering = sae.steer.fit("work/steer/caches/tiny_fit",
...     sae="work/steer/saes/tiny_fit/encoder.blocks.3.hook_resid_post", concept="nonspeech",
...     corpus="work/steer/corpora/dev", model="whisper-tiny.en", out="work/steer/steering/tiny_sae")  # doctest: +SKIP
>>> result = sae.steer.evaluate(steering, "work/steer/corpora/eval", out="work/steer/eval/tiny")   # doctest: +SKIP
>>> model = load("whisper-tiny.en")                                                               # doctest: +SKIP
>>> with steering.applied(model):                                                                 # doctest: +SKIP
...     print(model.transcribe(audio))
"""

from workbench.lazy import lazy_package

__all__ = ["class_mean_direction", "evaluate", "fit", "select_features"]
# the names above load on first use (workbench.lazy: the CLI starts without torch/scikit-learn)
lazy_package(__name__, {"evaluate": "sae.steer.evaluate", "fit": "sae.steer.fit",
                        "class_mean_direction": "sae.steer.selection", "select_features": "sae.steer.selection"})
