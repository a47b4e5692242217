"""Activation caches: sharded, labelled, resumable; what SAEs, probes and EEG analyses read.

Example
-------
>>> from workbench.cache import ActivationCache, build_cache
>>> cache = build_cache(model, corpus, "encoder.blocks.*.hook_resid_post", "work/cache")  # doctest: +SKIP
>>> cache = ActivationCache.open("work/cache")                                           # doctest: +SKIP
>>> cache.acts("encoder.blocks.3.hook_resid_post").shape                                 # doctest: +SKIP
(123456, 384)
"""
from workbench.cache.meta import CacheMismatchError
from workbench.cache.reader import ActivationCache
from workbench.cache.verify import CacheDamagedError
from workbench.cache.writer import build_cache, forward_batch

__all__ = ["ActivationCache", "build_cache", "forward_batch", "CacheMismatchError", "CacheDamagedError"]
