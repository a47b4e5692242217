"""Activation caches: sharded, labelled, resumable; what SAEs, probes and EEG analyses read.

Example
-------
>>> from workbench.cache import ActivationCache, build_cache
>>> cache = build_cache(model, corpus, "encoder.blocks.*.hook_resid_post", "work/cache")  # doctest: +SKIP
>>> cache = ActivationCache.open("work/cache")                                           # doctest: +SKIP
>>> cache.acts("encoder.blocks.3.hook_resid_post").shape                                 # doctest: +SKIP
(123456, 384)
"""
from workbench.lazy import lazy_package

__all__ = ["ActivationCache", "build_cache", "forward_batch", "CacheMismatchError", "CacheDamagedError"]
# loaded on first use: `workbench.cache.inputs` (argument helpers every CLI module imports) stays light
lazy_package(__name__, {"CacheMismatchError": "workbench.cache.meta", "ActivationCache": "workbench.cache.reader",
                        "CacheDamagedError": "workbench.cache.verify", "build_cache": "workbench.cache.writer",
                        "forward_batch": "workbench.cache.writer"})
