"""Layerwise linear probes with honest (grouped) splits, controls and SAE-feature probing.

Example
-------
>>> from probes import LinearProbe, sweep                              # doctest: +SKIP
>>> res = sweep(ActivationCache.open("work/cache"), "phones")          # doctest: +SKIP
>>> res.summary[["hook", "accuracy", "majority", "selectivity"]]       # doctest: +SKIP
"""

from workbench.lazy import lazy_package

__all__ = ["LinearProbe", "sweep", "probe_folds", "SweepResult", "grouped_kfold", "LeakageError"]
# the names above load on first use (workbench.lazy: the CLI starts without torch/scikit-learn)
lazy_package(__name__, {"LinearProbe": "probes.estimator", "LeakageError": "probes.splits",
                        "grouped_kfold": "probes.splits", "SweepResult": "probes.sweep",
                        "probe_folds": "probes.sweep", "sweep": "probes.sweep"})
