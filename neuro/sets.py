"""Every feature set's TRF, the banded joint models with the acoustic baseline, and per-subject tables.

:func:`fit_sets` fits each feature set once for all channels given, which may be several
subjects' channels stacked side by side when they heard the same trials: every fold's
factorisation is then shared by all subjects (alphas are chosen per channel, so each subject's
numbers equal a fit of that subject alone). The acoustic baseline (all acoustic sets together) is
fitted first whatever the order of ``sets``; every layer / SAE set also gets the banded joint model
with the baseline (:mod:`neuro.banded`), whose held-out R^2 partitions the variance into the set's
unique part, the baseline's unique part and the shared part. :func:`subject_tables` cuts one
subject's rows out: ``summary``, ``layers``, ``partition`` and within-subject layer tests.

Example
-------
>>> fits = fit_sets(sets, responses, 100.0, tmin=-0.1, tmax=0.5, folds=5)     # doctest: +SKIP
>>> summary, layers, part, tests = subject_tables(fits, slice(0, 64), ch_names)   # doctest: +SKIP
"""
from __future__ import annotations

import os
from concurrent.futures import Future, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from neuro.banded import fit_banded, partition, r2
from neuro.stats import fdr, paired_sign_flip
from neuro.stimulus import FeatureSet
from neuro.trf import DEFAULT_ALPHAS, Block, TRFResult, assign_folds, fit_trf, trial_r

__all__ = ["SetFit", "fit_sets", "subject_tables", "ACOUSTIC"]

ACOUSTIC = "acoustic"  # envelope + spectrogram together: the baseline of the joint models


@dataclass
class SetFit:
    fs: FeatureSet
    blocks: list[Block]
    res: TRFResult
    trial_r: np.ndarray                 # [n_trials, C] per-trial out-of-fold r
    r_joint: np.ndarray | None = None   # [C] banded joint model with the acoustic baseline


def _combined(sets: Sequence[FeatureSet], name: str) -> FeatureSet:
    trials = [np.concatenate([s.trials[i] for s in sets], axis=1) for i in range(len(sets[0].trials))]
    return FeatureSet(name, "acoustic", trials, block=None, columns=[c for s in sets for c in s.columns])  # type: ignore[arg-type]


def fit_sets(sets: Sequence[FeatureSet], responses: Sequence[np.ndarray], sfreq: float, *, tmin: float = -0.1,
             tmax: float = 0.5, folds: int = 5, alphas=DEFAULT_ALPHAS, n_draws: int = 1000, seed: int = 0,
             joint: bool = True, groups: Sequence | None = None, progress: bool = True,
             workers: int | None = None) -> dict[str, SetFit]:
    """``{set name: SetFit}`` in plot order (the acoustic baseline first, then ``sets`` in order).

    ``groups`` (one label per trial) keeps trials of a group in one fold; every set shares one
    assignment of trials to folds. ``joint`` adds the banded joint model of each layer / SAE set
    with the acoustic baseline. The sets are fitted ``workers`` at a time (threads; default
    :func:`default_workers`), BLAS on one thread each; results do not depend on ``workers``.
    """
    fold_of = assign_folds(len(responses), folds, seed, groups=groups)
    acoustic = [s for s in sets if s.kind == "acoustic"]
    jobs: list[tuple[FeatureSet, list[Block]]] = []
    base = None
    if len(acoustic) > 1:  # the baseline is all acoustic sets together
        base = (_combined(acoustic, ACOUSTIC), [a.block for a in acoustic])
        jobs.append(base)
    elif acoustic:
        base = (acoustic[0], [acoustic[0].block])
    jobs += sorted([(s, [s.block]) for s in sets], key=lambda j: j[0] is not (base[0] if base else None))
    workers = default_workers() if workers is None else max(1, int(workers))

    def one(job):
        fs, blocks = job
        keep = joint and base is not None and (fs is base[0] or fs.kind in ("layer", "sae"))  # the banded models' spaces
        res = fit_trf(fs.trials, responses, sfreq, tmin=tmin, tmax=tmax, alphas=alphas, blocks=blocks,
                      fold_of_trial=fold_of, n_draws=n_draws, seed=seed, keep_folds=keep)
        return SetFit(fs, blocks, res, trial_r(res))

    done: dict[str, SetFit] = {}
    joint_of: dict[str, Future] = {}
    with _pool(workers) as ex, tqdm(total=len(jobs), desc="TRF per feature set", disable=not progress) as bar:
        def banded(fit):
            b = done[base[0].name]
            return fit_banded([b.fs.trials, fit.fs.trials], [b.blocks, fit.blocks], [b.res, fit.res], responses,
                              sfreq, tmin=tmin, tmax=tmax)

        # each banded joint model starts as soon as the baseline and its set are fitted, so the
        # workers never wait for the slowest set before the joint models
        for fut in as_completed([ex.submit(one, job) for job in jobs]):
            fit = fut.result()
            done[fit.fs.name] = fit
            bar.update()
            if joint and base is not None and base[0].name in done:
                for f in done.values():
                    if f.fs.kind in ("layer", "sae") and f.fs.name not in joint_of:
                        joint_of[f.fs.name] = ex.submit(banded, f)
        for name, fut in tqdm(joint_of.items(), desc="banded joint models", disable=not progress):
            done[name].r_joint = fut.result()
    out = {fs.name: done[fs.name] for fs, _ in jobs}  # plot order, whatever order they finished in
    for f in out.values():
        f.res.folds = None  # each fold's Grams and eigenvectors: only the banded models needed them
    return out


def default_workers() -> int:
    """Threads for the feature sets' fits: ``WORKBENCH_NEURO_WORKERS``, else min(2, CPU count)."""
    env = os.environ.get("WORKBENCH_NEURO_WORKERS")
    return max(1, int(env)) if env else max(1, min(2, os.cpu_count() or 1))


class _Inline:
    """An executor that runs each job when submitted (one worker: no threads)."""

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as e:  # re-raised by fut.result()
            fut.set_exception(e)
        return fut


@contextmanager
def _pool(workers: int):
    """An executor of ``workers`` threads with BLAS on one thread each (multi-threaded OpenBLAS
    factorisations slow down 10-20x when the cores are shared: measured), or :class:`_Inline` for one."""
    if workers <= 1:
        yield _Inline()
        return
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), ThreadPoolExecutor(workers) as ex:
        yield ex


def subject_tables(fits: dict[str, SetFit], idx, ch_names: Sequence[str], alphas=DEFAULT_ALPHAS
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One subject's ``(summary, layers, partition, layer_tests)`` from channels ``idx`` of ``fits``."""
    rows, layer_rows, part_rows = [], [], []
    base = next((f for f in fits.values() if f.fs.kind == "acoustic"), None)
    base = fits.get(ACOUSTIC, base)
    alphas = np.asarray(alphas, dtype=np.float64)
    for name, f in fits.items():
        res = f.res
        r = res.r[idx]
        p = res.p[idx] if res.p is not None else np.full(len(r), np.nan)
        p_perm = res.p_perm[idx] if res.p_perm is not None else np.full(len(r), np.nan)
        rel_alpha = np.exp(np.log(alphas[res.alpha_index[:, idx]]).mean(0))  # geometric mean over folds
        best = res.lags_s[res.best_lag_index()[idx]] if res.kernel.size else np.full(len(r), np.nan)
        for c, ch in enumerate(ch_names):
            rows.append({"feature": name, "kind": f.fs.kind, "channel": ch, "r": r[c],
                         "r_cv_mean": res.r_folds[:, idx][:, c].mean(), "best_lag_s": best[c], "p": p[c], "p_perm": p_perm[c],
                         "alpha_rel": rel_alpha[c]})
        per_trial = f.trial_r[:, idx].mean(1)  # each trial's channel-mean r: the units of the interval
        d_r2 = shared = np.full(len(r), np.nan)
        if f.r_joint is not None and base is not None:
            part = partition(base.res.r[idx], r, f.r_joint[idx])
            d_r2, shared = part["unique_b"], part["shared"]
            for c, ch in enumerate(ch_names):
                part_rows.append({"feature": name, "channel": ch, "r2_acoustic": part["r2_a"][c],
                                  "r2_set": part["r2_b"][c], "r2_joint": part["r2_joint"][c],
                                  "unique_set": part["unique_b"][c], "unique_acoustic": part["unique_a"][c],
                                  "shared": part["shared"][c]})
        layer_rows.append({"feature": name, "kind": f.fs.kind, "hook": f.fs.hook, "width": f.fs.width,
                           "r_mean": float(r.mean()),
                           "r_sem": float(per_trial.std(ddof=1) / np.sqrt(len(per_trial))) if len(per_trial) > 1 else 0.0,
                           "r_max": float(r.max()), "best_channel": ch_names[int(np.argmax(r))],
                           "delta_r2_mean": float(np.nanmean(d_r2)) if np.isfinite(d_r2).any() else np.nan,
                           "shared_r2_mean": float(np.nanmean(shared)) if np.isfinite(shared).any() else np.nan,
                           "r2_mean": float(r2(r).mean()), "alpha_rel": float(np.exp(np.log(rel_alpha).mean()))})
    summary = pd.DataFrame(rows)
    summary["p_fdr"], summary["significant"] = np.nan, False
    for name, at in summary.groupby("feature", sort=False).groups.items():  # BH over channels, per feature set
        reject, p_fdr = fdr(summary.loc[at, "p"].to_numpy())  # NaN p (no null drawn) stays NaN, never significant
        summary.loc[at, "p_fdr"], summary.loc[at, "significant"] = p_fdr, reject
    summary["significant"] = summary["significant"].astype(bool)
    layers = pd.DataFrame(layer_rows)
    layers["n_significant"] = [int(summary.loc[summary["feature"] == f, "significant"].sum()) for f in layers["feature"]]
    # the layer curve on the responsive channels (significant for at least one set): a mean over every
    # channel is dominated by the null channels' noise when few channels respond
    responsive = set(summary.loc[summary["significant"], "channel"])
    layers["n_responsive"] = len(responsive)
    layers["r_responsive"] = [float(summary.loc[(summary["feature"] == f) & summary["channel"].isin(responsive), "r"]
                                    .mean()) if responsive else np.nan for f in layers["feature"]]
    layers["order"] = np.arange(len(layers))  # acoustic baselines first, then model sets in hook order
    part_df = pd.DataFrame(part_rows, columns=["feature", "channel", "r2_acoustic", "r2_set", "r2_joint",
                                               "unique_set", "unique_acoustic", "shared"])
    model = [n for n, f in fits.items() if f.fs.kind in ("layer", "sae")]
    units = {n: fits[n].trial_r[:, idx].mean(1) for n in model}
    return summary, layers, part_df, layer_tests(units, "trial")


def layer_tests(units: dict[str, np.ndarray], unit: str, n_perm: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Paired sign-flip tests between every two sets on per-unit (trial or subject) mean r;
    two-sided, BH over the pairs."""
    names = list(units)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = np.asarray(units[a]) - np.asarray(units[b])
            rows.append({"a": a, "b": b, "unit": unit, "n": len(d), "mean_a": float(np.mean(units[a])),
                         "mean_b": float(np.mean(units[b])), "mean_diff": float(d.mean()),
                         "p": float(paired_sign_flip(d, n_perm=n_perm, seed=seed)) if len(d) > 1 else np.nan})
    df = pd.DataFrame(rows, columns=["a", "b", "unit", "n", "mean_a", "mean_b", "mean_diff", "p"])
    df["p_fdr"] = fdr(df["p"].to_numpy())[1] if len(df) else []
    return df
