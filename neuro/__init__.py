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

CLI: ``workbench neuro fit --recording FILE_OR_DIR --corpus CORPUS [--model whisper-tiny.en --hooks
'encoder.blocks.*.hook_resid_post'] [--sae SAE_DIR] --out WORKSPACE/neuro/NAME``, ``workbench neuro
simulate`` and ``workbench neuro naplib`` (see ``workbench neuro -h``).

Output layout (what the app reads) -- ``WORKSPACE/neuro/NAME/``
-----------------------------------------------------------------
``neuro.json``
    The run: ``recording`` (path), ``data`` (``"naplib sample"`` | ``"simulated"`` | ``"recorded"``),
    ``description`` (the recording's own), ``model``, ``hooks``, ``sae``/``sae_hooks``, ``sfreq``,
    ``tmin``/``tmax`` (TRF lags, s), ``corr_tmin``/``corr_tmax`` (per-feature lags), ``folds``,
    ``alphas_relative``, ``n_components``, ``n_draws``, ``seed``, ``channels`` (names, in order),
    ``trials`` (clip ids), ``n_samples``, ``feature_sets`` (``{name: {kind, hook, width, columns}}``),
    ``kernel_lags_s``, ``has_montage``, ``files`` (relative paths of everything below, with
    ``kernels`` and ``topomaps`` as ``{feature set: path}``), ``command``, ``seconds``.
``summary.csv``
    One row per (feature set, channel): ``feature`` (set name: ``acoustic`` = envelope +
    spectrogram together, ``envelope``, ``spectrogram``, a hook name, ``sae:HOOK``), ``kind``
    (``acoustic`` | ``layer`` | ``sae``), ``channel``, ``r`` (held-out prediction vs response, all
    trials' out-of-fold predictions concatenated), ``r_cv_mean`` (mean of per-fold r),
    ``best_lag_s`` (peak of the kernel's energy), ``p`` (circular shifts of the stimulus within
    trials, the cross-validated model refitted per draw; one-sided),
    ``p_fdr`` (Benjamini-Hochberg over all rows), ``significant`` (p_fdr < 0.05).
``layers.csv`` / ``layers.html``
    The layer curve, one row per feature set in plot order: ``feature``, ``kind``, ``hook``,
    ``width``, ``r_mean``, ``r_sem``, ``r_max``, ``best_channel``, ``delta_r2_mean`` (R^2 of
    acoustic + set minus R^2 of acoustic, mean over channels; empty for acoustic sets),
    ``alpha_rel``, ``n_significant``, ``order``. The HTML is a plotly figure (acoustic baselines
    dashed), ``plotly.min.js`` beside it.
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
"""
from neuro.acoustic import envelope, spectrogram
from neuro.api import NeuroResult, fit
from neuro.naplib_sample import export_naplib_sample, naplib_sample
from neuro.recording import Recording, Trial, from_arrays, from_naplib_data, read_recording
from neuro.simulate import simulate_eeg
from neuro.stats import fdr, lagged_correlation
from neuro.trf import TRFResult, fit_trf

__all__ = ["fit", "NeuroResult", "fit_trf", "TRFResult", "lagged_correlation", "fdr",
           "read_recording", "from_arrays", "from_naplib_data", "Recording", "Trial", "simulate_eeg",
           "naplib_sample", "export_naplib_sample", "envelope", "spectrogram"]
