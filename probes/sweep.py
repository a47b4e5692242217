"""Layerwise probe sweeps: every hook of a cache, grouped folds, baselines and controls.

:func:`probe_folds` is the array-level core (X, y, groups, control types, splits);
:func:`sweep` is the thin cache-facing layer that builds the target from the cache's
frame table, loads each hook's activations (or SAE codes), and runs the core per hook
with a progress bar.

Per hook and fold it records accuracy, balanced accuracy, macro-F1, the majority-class
baseline, a shuffled-label control (all labels permuted once; the probe is refitted on the
permuted training labels and scored on the permuted test labels, so the null is independent of
the inputs by construction), the Hewitt & Liang control-task accuracy and selectivity
(accuracy minus control accuracy).

Example
-------
>>> from workbench.cache import ActivationCache                         # doctest: +SKIP
>>> from probes import sweep                                            # doctest: +SKIP
>>> res = sweep(ActivationCache.open("work/cache"), "phones", split="speaker")  # doctest: +SKIP
>>> res.summary[["hook", "accuracy", "majority", "selectivity"]]        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score
from tqdm.auto import tqdm

from probes.controls import chance_upper_bound, control_task, majority_baseline, shuffled_labels
from probes.estimator import LinearProbe
from probes.splits import grouped_kfold
from probes.targets import build_target
from workbench.atomic import read_json, write_json
from workbench.conventions import resolve_hooks as _resolve

logger = logging.getLogger(__name__)

METRICS = [
    "accuracy", "balanced_accuracy", "macro_f1", "majority", "shuffled_accuracy",
    "control_accuracy", "control_majority", "selectivity", "shuffled_upper",
]


@dataclass
class SweepResult:
    """``folds``: one row per hook x fold; ``summary``: mean and std over folds per hook (hook order
    kept, ``layer`` = position); ``confusion``: per hook, the confusion matrix summed over test folds
    as a DataFrame (index: true class, columns: predicted class)."""

    folds: pd.DataFrame
    summary: pd.DataFrame
    confusion: dict[str, pd.DataFrame]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def best_hook(self) -> str:
        """The hook with the highest mean accuracy."""
        return str(self.summary.loc[self.summary["accuracy"].idxmax(), "hook"])

    @property
    def classes(self) -> list:
        """Class order of the best hook's confusion matrix."""
        return list(self.confusion[self.best_hook].index)


def _fixed_C(probe, C):
    """The same probe with the L2 strength it chose, for the control fits (same capacity, no re-tuning)."""
    if C is None or "C" not in probe.get_params():
        return clone(probe)
    return clone(probe).set_params(C=float(C))


def probe_folds(
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    groups: np.ndarray | None = None,
    types: np.ndarray | None = None,
    probe=None,
    classes: Sequence | None = None,
    seed: int = 0,
    controls: bool = True,
) -> tuple[list[dict[str, Any]], np.ndarray, list]:
    """Fit and score ``probe`` (default :class:`LinearProbe`) on each (train, test) split.

    ``types`` (one per sample) define the control task; without them the control
    columns are NaN. Returns (one record per fold, confusion matrix summed over folds,
    class order).
    """
    X, y = np.asarray(X), np.asarray(y)
    probe = LinearProbe(random_state=seed) if probe is None else probe
    classes = list(np.unique(y)) if classes is None else list(classes)
    ctl = control_task(types, y, seed=seed) if (controls and types is not None) else None
    # Shuffled-label control: permute all labels once, then fit on train and score on the permuted test
    # labels, so the fitted probe is independent of what it is scored against (a proper null).
    y_perm = shuffled_labels(y, seed) if controls else None
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    records = []
    for k, (tr, te) in enumerate(splits):
        t0 = time.perf_counter()
        kw = {"groups": groups[tr]} if groups is not None and isinstance(probe, LinearProbe) else {}
        fitted = clone(probe).fit(X[tr], y[tr], **kw)
        pred = fitted.predict(X[te])
        seconds = time.perf_counter() - t0
        with warnings.catch_warnings():  # classes absent from one fold's test set are expected
            warnings.simplefilter("ignore")
            rec = {
                "fold": k,
                "n_train": len(tr),
                "n_test": len(te),
                "n_classes_train": len(np.unique(y[tr])),
                "accuracy": accuracy_score(y[te], pred),
                "balanced_accuracy": balanced_accuracy_score(y[te], pred),
                "macro_f1": f1_score(y[te], pred, average="macro", zero_division=0),
                "majority": majority_baseline(y[tr], y[te]),
                "C": getattr(fitted, "C_", np.nan),
                "fit_seconds": seconds,
            }
        conf += confusion_matrix(y[te], pred, labels=classes)
        rec.update(dict.fromkeys(
            ["shuffled_accuracy", "shuffled_upper", "control_accuracy", "control_majority", "selectivity"], np.nan))
        if controls:
            fixed = _fixed_C(probe, rec["C"])
            if len(np.unique(y_perm[tr])) >= 2:
                rec["shuffled_accuracy"] = float(np.mean(clone(fixed).fit(X[tr], y_perm[tr]).predict(X[te]) == y_perm[te]))
                rec["shuffled_upper"] = chance_upper_bound(y_perm[te])
            if ctl is not None and len(np.unique(ctl[tr])) >= 2:
                rec["control_accuracy"] = float(np.mean(clone(fixed).fit(X[tr], ctl[tr]).predict(X[te]) == ctl[te]))
                rec["control_majority"] = majority_baseline(ctl[tr], ctl[te])
                rec["selectivity"] = rec["accuracy"] - rec["control_accuracy"]
        records.append(rec)
    return records, conf, classes


def summarise(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over folds for every metric, one row per hook in first-seen order."""
    order = list(dict.fromkeys(folds["hook"]))
    cols = [c for c in METRICS if c in folds]
    g = folds.groupby("hook", sort=False)
    mean, std = g[cols].mean(), g[cols].std(ddof=1).add_suffix("_std")
    out = pd.concat([mean, std, g.size().rename("folds"), g["n_test"].sum().rename("n_samples")], axis=1)
    out = out.loc[order].reset_index()
    out.insert(1, "layer", range(len(out)))
    return out


def resolve_hooks(available: Sequence[str], hooks: str | Sequence[str] = "all") -> list[str]:
    """``"all"``, a glob, or a list of names/globs -> cache hooks in cache order
    (:func:`workbench.conventions.resolve_hooks`)."""
    return _resolve(hooks, available, what="the cache")


def sweep(
    cache,
    target: str,
    hooks: str | Sequence[str] = "all",
    features: str = "raw",
    split: str = "speaker",
    folds: int = 5,
    pooling: str = "frame",
    max_frames: int | None = None,
    seed: int = 0,
    probe=None,
    control_types: str = "context",
    checkpoint_dir: str | None = None,
    verbose: bool = True,
) -> SweepResult:
    """Probe ``target`` on every selected hook of an :class:`~workbench.cache.ActivationCache`.

    ``features``: "raw" activations or an SAE directory (SAELens layout; one SAE, or one
    per hook in sub-directories; only hooks with an SAE are probed). ``max_frames`` caps
    the number of samples (seeded subset). ``checkpoint_dir`` stores each finished hook
    so an interrupted sweep resumes where it stopped.
    """
    from workbench.features import load_feature_dictionaries  # late: only needed with SAE features

    hook_list = resolve_hooks(cache.hooks, hooks)
    encoders = None
    if features != "raw":
        encoders = load_feature_dictionaries(features)
        hook_list = [h for h in hook_list if h in encoders]
        if not hook_list:
            raise ValueError(f"no SAE in {features} matches the selected hooks; SAEs are for {sorted(encoders)}")
    probe = LinearProbe(random_state=seed) if probe is None else probe
    config = {
        "target": target, "hooks": hook_list, "features": str(features), "split": split, "folds": folds,
        "pooling": pooling, "max_frames": max_frames, "seed": seed, "control_types": control_types,
        "probe": repr(probe), "cache": str(getattr(cache, "root", "")),
    }
    # checkpoints are only reused for the same settings on the same cache contents
    cache_id = json.dumps(getattr(cache, "meta", None), sort_keys=True, default=str)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    key = hashlib.sha256((json.dumps({k: v for k, v in config.items() if k != "hooks"}, sort_keys=True,
                                     default=str) + cache_id).encode()).hexdigest()[:12]
    all_records, confusions = [], {}
    bar = tqdm(hook_list, desc=f"probe {target}", unit="layer", disable=not verbose)
    for hook in bar:
        bar.set_postfix_str(hook)
        done = _load_hook(ckpt, hook, key)
        if done is None:
            tgt = build_target(cache.frames(hook), target, split=split, pooling=pooling,
                               control_types=control_types, max_samples=max_frames, seed=seed)
            if encoders is not None:  # encode frames, then pool codes: the SAE sees what it was trained on
                X = tgt.features(encoders[hook].encode_numpy(cache.load(hook, tgt.rows)))
            else:
                X = tgt.features(cache.load(hook, tgt.rows))
            splits = grouped_kfold(tgt.groups, folds=folds, seed=seed, what=split)
            hook_classes = sorted(set(tgt.y))
            records, conf, hook_classes = probe_folds(
                X, tgt.y, splits, groups=tgt.groups, types=tgt.types, probe=probe, classes=hook_classes, seed=seed
            )
            done = {"records": records, "confusion": conf.tolist(), "classes": hook_classes, "d": X.shape[1]}
            _save_hook(ckpt, hook, key, done)
        for r in done["records"]:
            all_records.append({"hook": hook, "d_features": done["d"], **r})
        confusions[hook] = pd.DataFrame(done["confusion"], index=done["classes"], columns=done["classes"])
        accs = [r["accuracy"] for r in done["records"]]
        bar.set_postfix(acc=f"{np.mean(accs):.3f}")
        logger.info("%s: accuracy %.3f over %d folds", hook, np.mean(accs), len(accs))
    folds_df = pd.DataFrame(all_records)
    return SweepResult(folds_df, summarise(folds_df), confusions, config)


def _hook_file(ckpt: Path, hook: str, key: str) -> Path:
    return ckpt / f"{hook}.{key}.json"


def _load_hook(ckpt: Path | None, hook: str, key: str) -> dict | None:
    if ckpt is None or not _hook_file(ckpt, hook, key).is_file():
        return None
    return read_json(_hook_file(ckpt, hook, key))  # a damaged checkpoint: one error naming it


def _save_hook(ckpt: Path | None, hook: str, key: str, done: dict) -> None:
    if ckpt is None:
        return
    write_json(_hook_file(ckpt, hook, key), done, default=_json_default)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
