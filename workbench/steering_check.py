"""Validation of a steering artifact's values (``steering.json`` is a file users edit by hand).

Every check raises ``ValueError`` naming the field (``Steering.load`` adds the file): non-finite
numbers (a NaN strength decoded "!!!!..."), feature indices that are not plain non-negative integers
or lie outside the SAE (-1 used to edit the last feature silently; 999999 ended in an IndexError),
feature entries that are not ``{"index": ...}`` objects, wrong widths.

Example
-------
>>> from workbench.steering import Steering
>>> Steering(model="toy", hook="h", d_model=2, method="direction", edit="add", strength=float("nan"),
...          direction=[1.0, 0.0])
Traceback (most recent call last):
...
ValueError: field 'strength' must be a finite number, got nan
"""
from __future__ import annotations

import math
from numbers import Integral, Real


def _finite(name: str, value, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"field {name!r} must be a finite number, got {value!r}")
    return float(value)


def _index(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 0:
        raise ValueError(f"field {name!r} must be a non-negative integer (a feature index), got {value!r}")
    return int(value)


def _vector(name: str, values, width: int) -> None:
    if not isinstance(values, (list, tuple)) or len(values) != width:
        n = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"field {name!r} must be a list of d_model={width} numbers, got {n}")
    for i, v in enumerate(values):
        _finite(f"{name}[{i}]", v)


def check_fields(s) -> None:
    """Check a :class:`~workbench.steering.Steering`'s fields (types, ranges, finiteness)."""
    from workbench.steering import DIRECTION_EDITS, GATES, METHODS, SAE_EDITS

    if isinstance(s.d_model, bool) or not isinstance(s.d_model, Integral) or s.d_model < 1:
        raise ValueError(f"field 'd_model' must be a positive integer, got {s.d_model!r}")
    s.strength = _finite("strength", s.strength)
    s.midpoint = _finite("midpoint", s.midpoint)
    if s.method not in METHODS:
        raise ValueError(f"field 'method' must be one of {METHODS}, got {s.method!r}")
    if s.gate not in GATES:
        raise ValueError(f"field 'gate' must be one of {GATES}, got {s.gate!r}")
    if s.method == "sae":
        if s.edit not in SAE_EDITS:
            raise ValueError(f"field 'edit': {s.edit!r} is not an SAE edit; use one of {SAE_EDITS}")
        if not s.sae:
            raise ValueError("field 'sae': an SAE steering needs the SAE directory")
        if not isinstance(s.features, list):
            raise ValueError(f"field 'features' must be a list of {{\"index\": ...}} objects, got {type(s.features).__name__}")
        for i, f in enumerate(s.features):
            if not isinstance(f, dict) or "index" not in f:
                raise ValueError(f"field 'features[{i}]' must be an object with an 'index', got {f!r}")
            _index(f"features[{i}].index", f["index"])
            for key in ("target", "effect_size", "auroc", "attribution"):
                if key in f:
                    _finite(f"features[{i}].{key}", f[key], allow_none=True)
        if s.n_features is not None:
            n = _index("n_features", s.n_features)
            if n > len(s.features):
                raise ValueError(f"field 'n_features' is {n} but only {len(s.features)} features are listed")
        if s.edit == "clamp_target":
            missing = [int(f["index"]) for f in s.features[: s.n_features] if f.get("target") is None]
            if missing:
                raise ValueError(f"field 'features': edit 'clamp_target' needs a 'target' for features {missing}")
    else:
        if s.edit not in DIRECTION_EDITS:
            raise ValueError(f"field 'edit': {s.edit!r} is not a direction edit; use one of {DIRECTION_EDITS}")
        _vector("direction", s.direction, s.d_model)
    if not isinstance(s.layers, list):
        raise ValueError(f"field 'layers' must be a list of {{\"hook\", \"direction\"}} objects, got {type(s.layers).__name__}")
    if s.layers and (s.method == "sae" or s.gate != "none"):
        raise ValueError("field 'layers': more hooks apply to an ungated direction or vector only")
    for i, x in enumerate(s.layers):
        if not isinstance(x, dict) or not isinstance(x.get("hook"), str) or x["hook"] == s.hook:
            raise ValueError(f"field 'layers[{i}]' must be an object with another 'hook' and a 'direction', got {x!r}")
        _vector(f"layers[{i}].direction", x.get("direction"), s.d_model)
    if s.gate == "detector":
        det = s.detector
        if not isinstance(det, dict) or "weight" not in det:
            raise ValueError("field 'detector' must be an object with 'weight' and 'bias' (gate 'detector')")
        space, level = det.get("space", "acts"), det.get("level", "frame")
        if space not in ("acts", "sae") or level not in ("frame", "clip"):
            raise ValueError(f"field 'detector': space must be acts|sae and level frame|clip, got {space!r}, {level!r}")
        if space == "sae":
            if s.method != "sae":
                raise ValueError("field 'detector': an SAE-space detector needs method 'sae'")
            feats = det.get("features")
            if not isinstance(feats, list) or not feats:
                raise ValueError("field 'detector.features' must list the SAE features the detector reads")
            for i, f in enumerate(feats):
                _index(f"detector.features[{i}]", f)
            _vector("detector.weight", det["weight"], len(feats))
        else:
            _vector("detector.weight", det["weight"], s.d_model)
        _finite("detector.bias", det.get("bias", 0.0))


def check_sae(s, fd) -> None:
    """Check a steering against its loaded SAE: width and every feature index in range."""
    where = f"steering {s.path}: " if s.path else ""
    if fd.d_in != s.d_model:
        raise ValueError(f"{where}SAE {s.sae} has d_in={fd.d_in}, the steering expects d_model={s.d_model}")
    bad = [int(f["index"]) for f in s.features if int(f["index"]) >= fd.d_sae]
    bad += [int(i) for i in ((s.detector or {}).get("features") or []) if int(i) >= fd.d_sae]
    if bad:
        raise ValueError(f"{where}field 'features': indices {bad[:5]} are outside the SAE {s.sae} "
                         f"(d_sae={fd.d_sae}: valid 0..{fd.d_sae - 1})")
