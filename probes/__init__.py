"""Layerwise linear probes with honest (grouped) splits, controls and SAE-feature probing.

Example
-------
>>> from probes import LinearProbe, sweep                              # doctest: +SKIP
>>> res = sweep(ActivationCache.open("work/cache"), "phones")          # doctest: +SKIP
>>> res.summary[["hook", "accuracy", "majority", "selectivity"]]       # doctest: +SKIP
"""
from probes.estimator import LinearProbe
from probes.splits import LeakageError, grouped_kfold
from probes.sweep import SweepResult, probe_folds, sweep

__all__ = ["LinearProbe", "sweep", "probe_folds", "SweepResult", "grouped_kfold", "LeakageError"]
