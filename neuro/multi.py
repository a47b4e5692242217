"""Many subjects: per-subject runs under ``OUT/sub-XX/`` and group statistics under ``OUT/group/``.

Recordings come as a list of files (``--recording R1 R2 ...``; the subject is the ``sub-XX``
entity of the file name, else its stem) or as a BIDS dataset (``--bids ROOT --task TASK``, read
with mne-bids: one recording per subject and task, clip ids in ``events.tsv``'s ``trial_type``).
Subjects that heard the same trials share one fit (:mod:`neuro.pipeline`). The group folder holds
``group.csv``, ``group_layers.csv`` + ``group_layers.html``, ``layer_tests.csv`` (paired across
subjects), ``partition.csv`` (mean over subjects), ``ceiling.csv`` (across subjects, where they heard
the same clips with the same channels) and ``group.json`` (:mod:`neuro.group`).

Example
-------
>>> res = fit_group(["s1/sub-01_eeg.fif", "s2/sub-02_eeg.fif"], corpus, "ws/neuro/grp")   # doctest: +SKIP
>>> res["group"].query("significant")                                                  # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from neuro import outputs
from neuro.api import _group_of, default_cache_root, load_recording, load_saes, run_meta
from neuro.bad_samples import fix_recording
from neuro.ceiling import ceiling_across_subjects, r_ceiling
from neuro.group import group_tables
from neuro.pipeline import run_subjects, write_subject
from neuro.recording import from_raw
from neuro.trf import DEFAULT_ALPHAS

__all__ = ["fit_group", "subject_id", "bids_recordings"]


def subject_id(path: str | os.PathLike) -> str:
    """``sub-XX`` from a BIDS-style file name, else ``sub-<stem>`` (made a safe folder name)."""
    name = Path(path).name
    m = re.search(r"sub-([A-Za-z0-9]+)", name)
    stem = m.group(1) if m else re.sub(r"(_eeg|_meg|_ieeg|_raw)?\.(fif|fif\.gz|edf|bdf|vhdr|set|mat)$", "", name)
    return "sub-" + (outputs.safe_name(stem) or "x")


def bids_recordings(root: str | os.PathLike, task: str, corpus, *, bad_samples: str = "error",
                    subjects: Sequence[str] | None = None) -> dict[str, Any]:
    """``{sub-XX: Recording}`` of ``task`` in the BIDS dataset at ``root`` (mne-bids)."""
    import mne_bids

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such BIDS folder")
    paths = mne_bids.find_matching_paths(root, tasks=task, subjects=subjects, datatypes=["eeg", "meg", "ieeg"],
                                         suffixes=["eeg", "meg", "ieeg"],
                                         extensions=[".fif", ".edf", ".bdf", ".vhdr", ".set"])
    if not paths:
        raise ValueError(f"{root}: no eeg/meg/ieeg recording of task {task!r} "
                         f"(subjects: {mne_bids.get_entity_vals(root, 'subject')}, "
                         f"tasks: {mne_bids.get_entity_vals(root, 'task')})")
    out: dict[str, Any] = {}
    for bp in paths:
        sub = f"sub-{bp.subject}"
        if sub in out:
            raise ValueError(f"{root}: subject {sub} has more than one recording of task {task!r} "
                             f"({bp.fpath.name}); select one with --recording")
        from neuro.recording import _fix_raw

        raw = mne_bids.read_raw_bids(bp, verbose="error")
        raw.load_data(verbose="error")
        report = _fix_raw(raw, bad_samples, str(bp.fpath))
        rec = from_raw(raw, corpus, source=str(bp.fpath))
        rec.meta["bad_samples"] = report
        out[sub] = rec
    return out


def fit_group(recordings: Sequence[str | os.PathLike] | None, corpus, out: str | os.PathLike, *,
              bids: str | os.PathLike | None = None, task: str | None = None, model: str | None = None,
              hooks: Sequence[str] = (), sae=None, cache=None, cache_root=None, channels=None, sfreq=None,
              tmin: float = -0.1, tmax: float = 0.5, corr_tmax: float = 0.5, folds: int = 5, alphas=DEFAULT_ALPHAS,
              n_components: int = 16, sae_features: int = 64, n_draws: int = 1000, group_perms: int = 10000,
              seed: int = 0, joint: bool = True, bad_samples: str = "error", progress: bool = True,
              command: str | None = None) -> dict[str, Any]:
    """Every subject's run under ``out/sub-XX`` and the group's under ``out/group`` (module docstring)."""
    t0 = time.time()
    out = Path(out)
    if bids is not None:
        if not task:
            raise ValueError("--bids needs --task")
        recs = bids_recordings(bids, task, corpus, bad_samples=bad_samples)
        recs = {s: fix_recording(r.pick(channels), bad_samples) for s, r in recs.items()}
        if sfreq is not None:
            raise ValueError("--sfreq with --bids: resample the BIDS recordings first (or pass them with --recording)")
    else:
        recs = {}
        for path in recordings or []:
            sub = subject_id(path)
            if sub in recs:
                raise ValueError(f"{path}: subject {sub} appears twice in --recording")
            recs[sub] = load_recording(path, corpus, sfreq=sfreq, channels=channels, bad_samples=bad_samples)
    if not recs:
        raise ValueError("no recording given (--recording R1 R2 ... or --bids ROOT --task TASK)")
    rates = {r.sfreq for r in recs.values()}
    if len(rates) > 1:
        raise ValueError(f"subjects are sampled at different rates {sorted(rates)} Hz: pass --sfreq to resample")
    sae_dicts = load_saes(sae)
    results = run_subjects(recs, corpus, model=model, hooks=hooks, sae_dicts=sae_dicts, cache=cache,
                           cache_root=cache_root or default_cache_root(out), tmin=tmin, tmax=tmax, corr_tmax=corr_tmax,
                           folds=folds, alphas=alphas, n_components=n_components, sae_features=sae_features,
                           n_draws=n_draws, seed=seed, joint=joint, group_of=_group_of(corpus), progress=progress)
    opts = dict(model=model, sae=str(sae) if sae else None, sae_hooks=sorted(sae_dicts),
                cache=str(cache.root) if cache is not None else None, tmin=tmin, tmax=tmax, corr_tmax=corr_tmax,
                folds=folds, alphas=alphas, n_components=n_components, n_draws=n_draws, seed=seed, command=command)
    for sub, res in results.items():
        write_subject(out / sub, res, dict(run_meta(res.rec, dict(opts, hooks=res.hooks)), subject=sub))
    group = write_group(out / "group", results, group_perms, seed,
                        dict(run_meta(next(iter(results.values())).rec, dict(opts, hooks=next(iter(results.values())).hooks)),
                             bids=str(bids) if bids else None, task=task))
    group["meta"]["seconds"] = round(time.time() - t0, 1)
    outputs.write_meta(group["meta"], out / "group" / "group.json")
    return group


def write_group(out: Path, results, n_perm: int, seed: int, meta: dict) -> dict[str, Any]:
    """Group tables (:func:`neuro.group.group_tables`) and the ceiling across subjects, written to ``out``."""
    subs = list(results)
    first = results[subs[0]].rec
    same_channels = all(results[s].rec.ch_names == first.ch_names for s in subs)
    ceiling = None
    if same_channels:
        got = ceiling_across_subjects([([t.clip_id for t in results[s].rec.trials], results[s].responses) for s in subs])
        if got is not None:
            ev, n = got
            ceiling = pd.DataFrame({"channel": first.ch_names, "explainable_variance": ev, "r_ceiling": r_ceiling(ev),
                                    "n_repeats": n, "source": "the same clips across subjects"})
    tables = {s: {"summary": results[s].summary, "layers": results[s].layers, "partition": results[s].partition}
              for s in subs}
    g = group_tables(tables, info=first.info if first.has_montage else None, n_perm=n_perm, seed=seed,
                     ceiling=None if ceiling is None else ceiling["r_ceiling"].to_numpy(),
                     ceiling_channels=None if ceiling is None else first.ch_names)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_table(g["group"], out / "group.csv")
    outputs.write_table(g["layers"], out / "group_layers.csv")
    outputs.write_table(g["tests"], out / "layer_tests.csv")
    outputs.write_table(g["partition"], out / "partition.csv")
    files = {"group": "group.csv", "layers": "group_layers.csv", "layer_tests": "layer_tests.csv",
             "partition": "partition.csv", "layers_html": "group_layers.html"}
    if ceiling is not None:
        outputs.write_table(ceiling, out / "ceiling.csv")
        files["ceiling"] = "ceiling.csv"
    outputs.write_group_layers_html(g["layers"], out / "group_layers.html", f"group of {len(subs)} subjects")
    g["meta"] = dict(meta, **g["meta"], files=files, subject_folders={s: f"../{s}" for s in subs},
                     has_ceiling=ceiling is not None)
    g["ceiling"] = ceiling
    outputs.write_meta(g["meta"], out / "group.json")
    _write_top(out.parent, g, meta)
    return g


def _write_top(run: Path, g: dict, meta: dict) -> None:
    """The group's view in the single-run layout at the top of the run folder (``summary.csv``,
    ``layers.csv``, ``neuro.json`` with ``"group": true``), so every reader of a run (the app's EEG
    and workspace pages) shows a group run as it shows one subject's."""
    top = g["group"].rename(columns={"r_mean": "r"})
    outputs.write_table(top, run / "summary.csv")
    outputs.write_table(g["layers"], run / "layers.csv")
    files = {k: f"group/{v}" for k, v in g["meta"]["files"].items()}
    files.update(summary="summary.csv", layers="layers.csv")
    outputs.write_meta(dict(g["meta"], group=True, files=files, channels=g["meta"]["channels"]), run / "neuro.json")
