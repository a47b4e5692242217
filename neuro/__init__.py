"""neuro: which layers and which SAE features track the brain's response to speech (EEG/MEG/iEEG).

Forward TRFs (encoding models) by ridge per stimulus feature set, cross-validated by trial with
the ridge path from one eigendecomposition per fold (:mod:`neuro.trf`, the same numbers as MNE's
``ReceptiveField``, computed from sufficient statistics: :mod:`neuro.lagged`); AudioSAE-style
lagged correlation of single features; circular-shift nulls (1000 draws, vectorised; for the TRF
the model is refitted per draw: :mod:`neuro.trf_null`) and FDR (:mod:`neuro.stats`). Recordings: MNE formats with clip-id annotations or BIDS ``events.tsv``, CND
``.mat`` and naplib data (:mod:`neuro.recording`); features: acoustic baselines, cached model
hooks (PCA on training trials), SAE codes via ``workbench.features`` (:mod:`neuro.stimulus`).
Depends on ``workbench`` only.

Python API
----------
>>> import neuro
>>> fif = neuro.simulate_eeg(corpus, "ws/sim/sub-sim_eeg.fif", planted=("Cz", "CPz"))   # doctest: +SKIP
>>> res = neuro.fit(fif, corpus, "ws/neuro/sim", model="whisper-tiny.en",
...                 hooks=["encoder.blocks.*.hook_resid_post"])                          # doctest: +SKIP
>>> sample = neuro.naplib_sample()            # the naplib sample as arrays (needs naplib installed) # doctest: +SKIP
>>> corpus_dir, fif = neuro.export_naplib_sample("ws/naplib")    # ... as a corpus + FIF             # doctest: +SKIP

CLI: ``workbench neuro fit --recording FILE_OR_DIR [MORE ...] --corpus CORPUS [--model whisper-tiny.en --hooks
'encoder.blocks.*.hook_resid_post'] [--sae SAE_DIR] --out WORKSPACE/neuro/NAME`` (several recordings,
or ``--bids ROOT --task TASK``: one run per subject under ``NAME/sub-XX/`` and the group under
``NAME/group/``, :mod:`neuro.multi`), ``workbench neuro simulate [--subjects N [--bids-task T]]`` and
``workbench neuro naplib`` (see ``workbench neuro -h``). Ridge alphas are chosen per channel by inner
CV; layer + acoustic models are banded (one penalty per space, :mod:`neuro.banded`); NaN/inf samples
follow ``--bad-samples error|interpolate|drop-channel`` (:mod:`neuro.bad_samples`).

Output layout (what the app reads) -- ``WORKSPACE/neuro/NAME/``
-----------------------------------------------------------------
``neuro.json``
    The run: ``recording`` (path), ``data`` (``"naplib sample"`` | ``"simulated"`` | ``"recorded"``),
    ``description`` (the recording's own), ``model``, ``hooks``, ``sae``/``sae_hooks``, ``sfreq``,
    ``tmin``/``tmax`` (TRF lags, s), ``corr_tmin``/``corr_tmax`` (per-feature lags), ``folds``,
    ``alphas_relative``, ``n_components``, ``n_draws``, ``seed``, ``channels`` (names, in order),
    ``trials`` (clip ids), ``n_samples``, ``feature_sets`` (``{name: {kind, hook, width, columns}}``),
    ``kernel_lags_s``, ``has_montage``, ``files`` (relative paths of everything below, with
    ``kernels`` and ``topomaps`` as ``{feature set: path}``), ``command``, ``seconds``,
    ``bad_samples`` (``{mode, samples: {channel: n}, dropped}``), ``fold_groups`` (how trials were
    grouped into folds), ``statistics`` (``n_draws``, ``min_p``, the null, the corrections, what the
    error bars are).
``summary.csv``
    One row per (feature set, channel): ``feature`` (set name: ``acoustic`` = envelope +
    spectrogram together, ``envelope``, ``spectrogram``, a hook name, ``sae:HOOK``), ``kind``
    (``acoustic`` | ``layer`` | ``sae``), ``channel``, ``r`` (held-out prediction vs response, all
    trials' out-of-fold predictions concatenated), ``r_cv_mean`` (mean of per-fold r),
    ``best_lag_s`` (peak of the kernel's energy), ``p`` (of ``r`` itself: circular shifts of the
    stimulus within trials, the cross-validated model refitted per draw; one-sided), ``alpha_rel``
    (the channel's alpha, geometric mean over folds), ``p_fdr`` (Benjamini-Hochberg over all rows),
    ``significant`` (p_fdr < 0.05), ``r_norm`` (r / the channel's correlation ceiling, only with
    repeated clips).
``layers.csv`` / ``layers.html``
    The layer curve, one row per feature set in plot order: ``feature``, ``kind``, ``hook``,
    ``width``, ``r_mean``, ``r_sem`` (standard error across trials of each trial's channel-mean r:
    trials, not channels, are the independent units), ``r_max``, ``best_channel``,
    ``delta_r2_mean`` (unique R^2 of the set beyond the acoustic baseline: R^2 of the banded joint
    model acoustic + set minus R^2 of acoustic, mean over channels; empty for acoustic sets),
    ``shared_r2_mean``, ``r2_mean``, ``alpha_rel``, ``n_significant``, ``order``. The HTML is a
    plotly figure (acoustic baselines dashed), ``plotly.min.js`` beside it.
``partition.csv``
    Per (layer/SAE set, channel): ``r2_acoustic``, ``r2_set``, ``r2_joint`` (signed ``r |r|`` of
    held-out r), ``unique_set``, ``unique_acoustic``, ``shared``.
``layer_tests.csv``
    Paired tests between every two layer/SAE sets: ``a``, ``b``, ``unit`` (``trial`` here,
    ``subject`` in a group), ``n``, ``mean_a``, ``mean_b``, ``mean_diff``, ``p`` (sign flips,
    two-sided), ``p_fdr`` (over pairs).
``ceiling.csv``
    Only when a clip was heard more than once: ``channel``, ``explainable_variance``, ``r_ceiling``
    (sqrt), ``n_repeats``, ``source``.
``features.csv``
    Per-feature lagged correlation (AudioSAE style), one row per (feature, channel):
    ``feature_set``, ``feature`` (``envelope``, ``band3``, ``f1234`` = SAE feature 1234),
    ``channel``, ``r`` (at the best lag by \\|r\\|), ``best_lag_s`` (0..corr_tmax), ``p`` (null of
    max \\|r\\| over lags), ``p_fdr`` (over all rows), ``significant``.
``kernels/SET.npy``
    float32 ``[n_channels, n_features, n_lags]`` (MNE ``ReceptiveField.coef_`` order) refitted on all
    trials, over the set's normalised inputs (z-scored columns, or whitened PCA components of a
    layer); lags in ``neuro.json`` ``kernel_lags_s``. ``SET`` is the name with ``:`` etc. as ``-``.
``topomaps/SET.png``
    ``mne.viz.plot_topomap`` of r per channel, only when the recording has a montage.

Group layout -- ``WORKSPACE/neuro/NAME/`` of several subjects
--------------------------------------------------------------
``sub-XX/`` (each subject's run, as above), ``group/group.csv`` (feature, kind, channel,
n_subjects, r_mean, z_mean, p, p_fdr, significant, p_cluster, significant_cluster, r_ceiling,
r_norm; sign flips of whole subjects on Fisher-z r, one-sided, BH over channels within a set,
cluster permutation over the montage's neighbours), ``group/group_layers.csv`` (+ ``.html``:
r_mean, r_ci_low/high and delta_r2 with 95 % intervals across subjects), ``group/layer_tests.csv``
(paired across subjects), ``group/partition.csv`` (mean over subjects), ``group/ceiling.csv``
(across subjects hearing the same clips), ``group/group.json`` (subjects, channels, n_sign_flips,
min_p, corrections, layer_consistency). The group's view is also written at the top of ``NAME/``
in the single-run layout (``summary.csv`` with r = mean over subjects, ``layers.csv``,
``neuro.json`` with ``"group": true``), so readers of a run show a group run too.
"""

from workbench.lazy import lazy_package

__all__ = ["fit", "fit_group", "NeuroResult", "fit_trf", "TRFResult", "lagged_correlation", "fdr",
           "read_recording", "from_arrays", "from_naplib_data", "Recording", "Trial", "simulate_eeg",
           "naplib_sample", "export_naplib_sample", "envelope", "spectrogram"]
# the names above load on first use (workbench.lazy: the CLI starts without torch/scikit-learn)
lazy_package(__name__, {"envelope": "neuro.acoustic", "spectrogram": "neuro.acoustic", "NeuroResult": "neuro.api",
                        "fit": "neuro.api", "fit_group": "neuro.multi",
                        "export_naplib_sample": "neuro.naplib_sample", "naplib_sample": "neuro.naplib_sample",
                        "Recording": "neuro.recording", "Trial": "neuro.recording", "from_arrays": "neuro.recording",
                        "from_naplib_data": "neuro.recording", "read_recording": "neuro.recording",
                        "simulate_eeg": "neuro.simulate", "fdr": "neuro.stats", "lagged_correlation": "neuro.stats",
                        "TRFResult": "neuro.trf", "fit_trf": "neuro.trf"})
