"""Packages whose public names load on first use.

``sae``, ``probes`` and ``neuro`` re-export their main functions (``sae.train``, ``probes.LinearProbe``,
``neuro.fit``) from modules that import torch, scikit-learn and scipy: importing them eagerly made every
``workbench`` command pay ~4 s of imports before it parsed its arguments (the CLI imports each package's
``cli`` module, which runs the package's ``__init__``). :func:`lazy_package` keeps the same names and
imports each one's module when it is first used.

A name that is also a submodule (``sae.train`` the function vs ``sae/train.py``) stays the function, as
it was with the eager import: the import system's ``setattr(package, "train", <module>)`` is ignored for
re-exported names.

Example
-------
>>> import probes
>>> probes.LinearProbe.__module__    # probes/estimator.py (and scikit-learn) imported here, on first use
'probes.estimator'
"""
from __future__ import annotations

import importlib
import sys
import types

__all__ = ["lazy_package"]


class _LazyPackage(types.ModuleType):
    """A package module that resolves its re-exported names from ``_lazy_exports`` on first access."""

    def __getattr__(self, name: str):
        source = self.__dict__.get("_lazy_exports", {}).get(name)
        if source is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        types.ModuleType.__setattr__(self, name, value)  # cached: later lookups skip __getattr__
        return value

    def __setattr__(self, name: str, value) -> None:
        # the import system sets package.<submodule> on a submodule's first import; a re-exported name
        # of the same spelling keeps meaning the function (as an eager ``from .x import x`` left it)
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_exports", {}):
            return
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_lazy_exports", {})))


def lazy_package(package: str, exports: dict[str, str]) -> None:
    """Make ``package`` (call with ``__name__`` from its ``__init__``) load each name of ``exports``
    (name -> module that defines it) when first used."""
    module = sys.modules[package]
    module._lazy_exports = dict(exports)
    module.__class__ = _LazyPackage
