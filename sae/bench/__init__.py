"""The SAE bench (issue 20): one module per family, SAEs read through :mod:`workbench.features`.

- :mod:`sae.bench.core`: FVU, per-frame relative error (with and without massive frames), L0, dead
  and dense features, spliced WER, decoder KL;
- :mod:`sae.bench.probing`: k-sparse probing against raw activations;
- :mod:`sae.bench.absorption`: feature absorption for phone classes;
- :mod:`sae.bench.erasure`: targeted erasure (TPP-style) and the fraction of features to erase a concept;
- :mod:`sae.bench.labels` + :mod:`sae.bench.explain`: explanations of every feature by rules over
  frame labels and acoustic descriptors, scored on held-out clips;
- :mod:`sae.bench.run`: ``workbench sae bench`` (``bench.csv``, ``bench.json``, ``bench.html``,
  per-SAE ``explanations.csv``).

Example
-------
$ workbench sae bench --sae work/saes/s0 work/saes/s1 --cache work/cache --model whisper-tiny.en --out work/bench
"""
