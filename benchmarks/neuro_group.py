"""Benchmark: the full group pipeline (many subjects, several feature sets, banded joint models,
group statistics) against MNE's ``ReceptiveField`` looped as a user would. Prints JSON.

Simulated data: ``--subjects`` subjects x 64 channels x ``--minutes`` minutes at 100 Hz in 30-s
trials, all hearing the same stimuli; 6 feature sets (envelope 1-d, spectrogram 16-d, four
384-d "layers" reduced per fold by PCA-16), lags -100..500 ms, 5 folds, 7 alphas. Each layer is a
16-d smooth latent mixed into 384 dimensions plus isotropic noise (as real layers are dominated by
a few directions; an isotropic 384-d layer would leave a planted projection outside any PCA-16).
Every subject's channels are AR(1) noise; 5 channels (Cz CPz FCz C1 C2) carry the envelope (r 0.1)
and layer 2's latent through a fixed projection (r 0.1) -- one planted response shared by all
subjects.

Ours: :func:`neuro.sets.fit_sets` once for all subjects stacked (every fold's factorisation
shared), each subject's tables, then :func:`neuro.group.group_tables` (sign flips, FDR, cluster
test). MNE: for each subject, feature set, outer fold and alpha, ``ReceptiveField(estimator=alpha)``
fitted on the training trials and scored on the held-out ones (the inner alpha search, the banded
models and the group statistics are not counted, so MNE's side is a lower bound); timed on one
(subject, fold) unit per feature set and scaled to all subjects and folds. CPU seconds of the process and wall seconds are both reported; the
machine load is printed.

    .venv/bin/python benchmarks/neuro_group.py --subjects 10 --minutes 10
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy import signal
from scipy.ndimage import gaussian_filter1d

SF = 100.0
PLANTED = ["Cz", "CPz", "FCz", "C1", "C2"]


def simulate(n_sub: int, minutes: float, seed: int = 0):
    import mne

    from neuro.stimulus import FeatureSet
    from neuro.trf import Block

    rng = np.random.default_rng(seed)
    n_tr, n = int(round(minutes * 2)), int(30 * SF)
    smooth = lambda d, s=4.0: gaussian_filter1d(rng.normal(size=(n, d)), s, axis=0)  # noqa: E731
    env = [np.abs(smooth(1)) for _ in range(n_tr)]
    spec = [smooth(16) + 0.5 * e for e in env]
    latents = {f"layer{i}": [smooth(16) for _ in range(n_tr)] for i in range(4)}
    mix = {k: rng.normal(size=(16, 384)) / 4.0 for k in latents}
    layers = {k: [z @ mix[k] + 0.5 * smooth(384) for z in v] for k, v in latents.items()}
    w = rng.normal(size=16)
    names = mne.channels.make_standard_montage("biosemi64").ch_names
    hit = np.isin(names, PLANTED)
    subjects = []
    for s in range(n_sub):
        srng = np.random.default_rng(seed + 100 + s)
        ys = []
        for i in range(n_tr):
            y = signal.lfilter([1.0], [1.0, -0.9], srng.normal(size=(n, 64)), axis=0)
            y /= y.std(0)
            for x in (env[i][:, 0], latents["layer2"][i] @ w):
                d = np.roll(x - x.mean(), 15)
                y[:, hit] += 0.1 / np.sqrt(0.98) * (d / d.std())[:, None]
            ys.append(y)
        subjects.append(ys)
    sets = [FeatureSet("envelope", "acoustic", env, Block(1), columns=["envelope"]),
            FeatureSet("spectrogram", "acoustic", spec, Block(16), columns=[f"band{b}" for b in range(16)])]
    sets += [FeatureSet(k, "layer", v, Block(384, "pca", 16), hook=k) for k, v in layers.items()]
    return sets, subjects, names


def ours(sets, subjects, names, info):
    from neuro.group import group_tables
    from neuro.sets import fit_sets, subject_tables

    responses = [np.concatenate([s[i] for s in subjects], axis=1) for i in range(len(subjects[0]))]
    fits = fit_sets(sets, responses, SF, tmin=-0.1, tmax=0.5, folds=5, n_draws=0, progress=False)
    tables = {}
    for k in range(len(subjects)):
        summary, layers, part, _ = subject_tables(fits, slice(64 * k, 64 * (k + 1)), names)
        tables[f"sub-{k + 1:02d}"] = {"summary": summary, "layers": layers, "partition": part}
    return fits, group_tables(tables, info=info, n_perm=10000)


def mne_units(sets, subjects, fits):
    """MNE ReceptiveField over every alpha of one (subject, fold) unit per feature set (subject 1, fold 1):
    ``{set: (cpu s, wall s)}``; every subject and fold of a set costs the same (same sizes)."""
    from mne.decoding import ReceptiveField

    from neuro.trf import FeatureTransform

    fold_of = next(iter(fits.values())).res.fold_of_trial
    tr, te = np.flatnonzero(fold_of != 0), np.flatnonzero(fold_of == 0)
    Y = np.stack(subjects[0], 1)  # [n_times, n_trials, 64 channels]
    out = {}
    for fs in sets:
        cpu0, wall0 = time.process_time(), time.time()
        tf = FeatureTransform.fit([fs.trials[i] for i in tr], [fs.block])
        X = np.stack([tf(x) for x in fs.trials], 1)
        for alpha in fits[fs.name].res.alphas[0]:
            rf = ReceptiveField(-0.1, 0.5, SF, estimator=float(alpha), fit_intercept=True)
            rf.fit(X[:, tr], Y[:, tr])
            rf.score(X[:, te], Y[:, te])
        out[fs.name] = (time.process_time() - cpu0, time.time() - wall0)
    return out


def main() -> None:
    import mne

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=10)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--no-mne", action="store_true", help="skip MNE (it is timed on one subject and fold per set)")
    args = p.parse_args()
    load0 = os.getloadavg()
    sets, subjects, names = simulate(args.subjects, args.minutes)
    info = mne.create_info(names, SF, "eeg")
    info.set_montage("biosemi64")
    cpu0, wall0 = time.process_time(), time.time()
    fits, g = ours(sets, subjects, names, info)
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    grp = g["group"]
    planted = grp[grp.channel.isin(PLANTED)]
    others = grp[~grp.channel.isin(PLANTED)]
    lay = g["layers"].set_index("feature")
    print(json.dumps({"ours_cpu_s": round(cpu, 1), "ours_wall_s": round(wall, 1),
                      "load_now": [round(v, 1) for v in os.getloadavg()]}), flush=True)  # before MNE's (long) units
    mne = {} if args.no_mne else mne_units(sets, subjects, fits)
    scale = len(subjects) * 5  # every subject and fold of a set
    mne_cpu = sum(c for c, _ in mne.values()) * scale if mne else np.nan
    mne_wall = sum(w for _, w in mne.values()) * scale if mne else np.nan
    print(json.dumps({
        "subjects": args.subjects, "channels": 64, "minutes": args.minutes, "feature_sets": len(sets),
        "ours_cpu_s": round(cpu, 1), "ours_wall_s": round(wall, 1),
        "mne_cpu_s_per_set_one_unit": {k: round(c, 2) for k, (c, _) in mne.items()},
        "mne_units_timed": len(mne), "mne_units_scaled_to": len(mne) * scale,
        "mne_cpu_s_all_units_scaled": round(mne_cpu, 1), "mne_wall_s_all_units_scaled": round(mne_wall, 1),
        "speedup_cpu": round(mne_cpu / cpu, 1), "speedup_wall": round(mne_wall / wall, 1),
        "best_unique_r2_layer": str(lay.loc[[f"layer{i}" for i in range(4)], "delta_r2_mean"].idxmax()),
        "unique_r2": {k: round(float(v), 5) for k, v in lay["delta_r2_mean"].dropna().items()},
        "planted_found_fdr_layer2": f"{int(planted[planted.feature == 'layer2'].significant.sum())}/5",
        "planted_found_cluster_layer2": f"{int(planted[planted.feature == 'layer2'].significant_cluster.sum())}/5",
        "false_positive_rate_fdr": round(float(others.significant.mean()), 4),
        "false_positive_rate_cluster": round(float(others.significant_cluster.mean()), 4),
        "load_before": [round(v, 1) for v in load0], "load_after": [round(v, 1) for v in os.getloadavg()],
    }, indent=1))


if __name__ == "__main__":
    main()
