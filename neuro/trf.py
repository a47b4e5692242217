"""Forward TRF (encoding model) by ridge, cross-validated by trial, with the ridge path per fold.

For each outer fold (a group of whole trials held out), the feature transform (z-score, or PCA
whitening of a layer) is fitted on the training trials only; every trial is reduced to sufficient
statistics of its lagged design (:mod:`neuro.lagged`: Gram ``G``, column sums, cross-products with
the response); the training Gram is eigendecomposed once, and every alpha's weights come from that
one decomposition: ``W(a) = V diag(1 / (lambda + a)) V^T X^T y``. The alpha is chosen by inner
cross-validation (leave one of the other groups out, again one eigendecomposition per inner
split), and held-out prediction correlations for every alpha follow from the test trials'
statistics without forming predictions. Conventions follow MNE's ``ReceptiveField`` with a float
alpha (``TimeDelayingRidge``): features centred by the training mean before lagging, zero padding
at trial edges, response centred, penalty ``alpha * I``.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> xs = [rng.normal(size=(400, 2)) for _ in range(6)]                   # 6 trials, 2 features
>>> ys = [np.roll(x[:, :1], 5, axis=0) + rng.normal(size=(400, 1)) for x in xs]   # lag 50 ms
>>> res = fit_trf(xs, ys, sfreq=100, tmin=0.0, tmax=0.1, folds=3)
>>> float(res.lags_s[res.best_lag_index()[0]]), bool(res.r[0] > 0.5)
(0.05, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import linalg

from neuro.lagged import lag_samples, lagged_column_sums, lagged_cross, lagged_gram, lagged_predict
from neuro.trf_null import NullAccumulator

__all__ = ["Block", "FeatureTransform", "Moments", "TRFResult", "fit_trf", "trial_r", "assign_folds", "centre_trials", "DEFAULT_ALPHAS"]

#: alphas relative to the mean eigenvalue of the training Gram (trace / P)
DEFAULT_ALPHAS = np.logspace(-3, 3, 7)


@dataclass(frozen=True)
class Block:
    """A slice of the feature columns and how to normalise it: ``"zscore"`` or ``"pca"``."""

    width: int
    kind: str = "zscore"
    n_components: int = 16


@dataclass
class Moments:
    """Sums over samples of a set of trials' features about a fixed ``origin``: ``n``, ``sx [D]``,
    ``sxx [D, D]`` of ``x - origin`` (addable when the origins agree; the origin keeps the covariance
    free of cancellation when features are far from zero)."""

    n: int
    sx: np.ndarray
    sxx: np.ndarray
    origin: np.ndarray | float = 0.0

    @classmethod
    def of(cls, trials: Sequence[np.ndarray], origin: np.ndarray | float | None = None) -> "Moments":
        x = [np.asarray(t, dtype=np.float64) for t in trials]
        if origin is None:
            origin = sum(t.sum(0) for t in x) / sum(len(t) for t in x)
        x = [t - origin for t in x]
        return cls(sum(len(t) for t in x), sum(t.sum(0) for t in x), sum(t.T @ t for t in x), origin)

    def __add__(self, o: "Moments") -> "Moments":
        return Moments(self.n + o.n, self.sx + o.sx, self.sxx + o.sxx, self.origin)


@dataclass
class FeatureTransform:
    """``x -> (x - mean) @ proj`` fitted on training trials (z-score or whitened PCA per block)."""

    mean: np.ndarray
    proj: np.ndarray

    @classmethod
    def fit(cls, trials: Sequence[np.ndarray], blocks: Sequence[Block],
            moments: "Moments | None" = None) -> "FeatureTransform":
        """Fitted on ``trials``; ``moments`` (their :class:`Moments`, e.g. summed per trial once for
        every fold) saves the pass over the data."""
        m = moments if moments is not None else Moments.of(trials)
        if sum(b.width for b in blocks) != len(m.sx):
            raise ValueError(f"blocks cover {sum(b.width for b in blocks)} columns, features have {len(m.sx)}")
        d = m.sx / m.n
        mean = m.origin + d
        cov = m.sxx / m.n - np.outer(d, d)  # population covariance, as x.T @ x / n of centred x
        projs, start = [], 0
        for b in blocks:
            cb = cov[start : start + b.width, start : start + b.width]
            if b.kind == "zscore":
                std = np.sqrt(np.clip(np.diag(cb), 0, None))
                projs.append(np.diag(1.0 / np.where(std > 1e-12, std, 1.0)))
            elif b.kind == "pca":
                evals, evecs = np.linalg.eigh(cb)
                keep = np.argsort(evals)[::-1][: min(b.n_components, b.width)]
                keep = keep[evals[keep] > 1e-12 * max(evals.max(), 1e-300)]
                vecs = evecs[:, keep]
                vecs *= np.sign(vecs[np.abs(vecs).argmax(0), np.arange(vecs.shape[1])])  # deterministic sign
                projs.append(vecs / np.sqrt(evals[keep]))  # whitened: unit variance per component
            else:
                raise ValueError(f"unknown feature transform {b.kind!r}; use 'zscore' or 'pca'")
            start += b.width
        proj = np.zeros((len(mean), sum(p.shape[1] for p in projs)))
        r = c = 0
        for p in projs:
            proj[r : r + p.shape[0], c : c + p.shape[1]] = p
            r, c = r + p.shape[0], c + p.shape[1]
        return cls(mean, proj)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.proj

    def centred(self, z: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """The transform of ``x = z + origin`` from ``z`` (already centred by a common ``origin``): one
        product and a small shift, no pass subtracting the mean from every sample."""
        return z @ self.proj - (self.mean - origin) @ self.proj


@dataclass
class _Stats:
    """Sufficient statistics of a set of trials' lagged design and response."""

    G: np.ndarray
    s: np.ndarray
    B: np.ndarray
    ysum: np.ndarray
    yy: np.ndarray
    n: int

    def __add__(self, o: "_Stats") -> "_Stats":
        return _Stats(self.G + o.G, self.s + o.s, self.B + o.B, self.ysum + o.ysum, self.yy + o.yy, self.n + o.n)

    def _iadd(self, o: "_Stats") -> "_Stats":
        """Add ``o`` in place (no new ``[P, P]`` arrays); returns self."""
        for a, b in ((self.G, o.G), (self.s, o.s), (self.B, o.B), (self.ysum, o.ysum), (self.yy, o.yy)):
            a += b
        self.n += o.n
        return self

    def copy(self) -> "_Stats":
        return _Stats(self.G.copy(), self.s.copy(), self.B.copy(), self.ysum.copy(), self.yy.copy(), self.n)


def _stats(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], lags: np.ndarray) -> _Stats:
    """The statistics of a set of trials (the Gram summed over them and assembled once)."""
    return _Stats(lagged_gram(list(xs), lags), sum(lagged_column_sums(x, lags) for x in xs),
                  sum(lagged_cross(x, y, lags) for x, y in zip(xs, ys)), sum(y.sum(0) for y in ys),
                  sum((y * y).sum(0) for y in ys), sum(len(y) for y in ys))


def _sum(stats: Sequence):
    """Sum of :class:`_Stats` (in place into one new copy) or :class:`Moments`; the inputs are unchanged."""
    if len(stats) == 1 or not isinstance(stats[0], _Stats):
        out = stats[0]
        for s in stats[1:]:
            out = out + s
        return out
    out = stats[0].copy()
    for s in stats[1:]:
        out._iadd(s)
    return out


class _Eig:
    """One eigendecomposition of a training Gram; weights for any alpha (scalar or one per channel)."""

    def __init__(self, train: _Stats) -> None:
        self.evals, self.evecs = np.linalg.eigh(train.G)
        self.vtb = self.evecs.T @ (train.B - np.outer(train.s, train.ysum / train.n))  # V^T X^T (y - mean)

    def weights(self, alpha) -> np.ndarray:
        """``[P, C]`` ridge weights at ``alpha`` (a scalar or ``[C]``, one per channel)."""
        a = np.asarray(alpha, dtype=np.float64)
        return self.evecs @ (self.vtb / (self.evals[:, None] + (a[None, :] if a.ndim else a)))

    def r_path(self, alphas: np.ndarray, test: _Stats) -> np.ndarray:
        """Held-out r ``[A, C]`` on ``test`` for every alpha. With many channels (``>= EIG_CHANNELS``)
        the test statistics are rotated into the eigenbasis once, so each alpha costs one ``P x P x C``
        product instead of two."""
        if self.vtb.shape[1] < EIG_CHANNELS:
            return np.stack([_r_from_stats(self.weights(a), test) for a in alphas])
        V = self.evecs
        H, bt, sv = V.T @ test.G @ V, V.T @ test.B, V.T @ test.s
        var_y = test.yy - test.ysum**2 / test.n
        out = []
        for a in alphas:
            w = self.vtb / (self.evals + a)[:, None]  # the weights in the eigenbasis
            ps = sv @ w
            num = (w * bt).sum(0) - ps * test.ysum / test.n
            var_p = (w * (H @ w)).sum(0) - ps**2 / test.n
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.nan_to_num(num / np.sqrt(np.clip(var_p, 0, None) * np.clip(var_y, 0, None))))
        return np.stack(out)


#: from this many channels on, an inner split's alphas come from one eigendecomposition (every alpha's
#: held-out r then costs one P x P x C product) rather than one Cholesky solve per alpha (cheaper for
#: a few channels: 7 Cholesky factorisations of 976 x 976 cost about half an eigendecomposition)
EIG_CHANNELS = 96


def _r_path_inner(train: _Stats, alphas: np.ndarray, test: _Stats) -> np.ndarray:
    """Held-out r ``[A, C]`` of an inner split for every alpha (:data:`EIG_CHANNELS` picks the method)."""
    if train.B.shape[1] >= EIG_CHANNELS:
        return _Eig(train).r_path(alphas, test)
    return _r_path_chol(train, alphas, test)


def _r_path_chol(train: _Stats, alphas: np.ndarray, test: _Stats) -> np.ndarray:
    """Held-out r ``[A, C]`` on ``test`` for every alpha, one Cholesky factorisation per alpha (cheaper
    than an eigendecomposition for the handful of alphas of an inner split)."""
    B = train.B - np.outer(train.s, train.ysum / train.n)
    eye = np.eye(len(train.G))
    out = []
    for a in alphas:
        factor = linalg.cho_factor(train.G + a * eye, check_finite=False)
        out.append(_r_from_stats(linalg.cho_solve(factor, B, check_finite=False), test))
    return np.stack(out)


def _r_from_stats(W: np.ndarray, test: _Stats) -> np.ndarray:
    """Pearson r per channel of ``X_test @ W`` (``W [P, C]``) with ``y_test``, from statistics: ``[C]``."""
    ps = test.s @ W
    num = (W * test.B).sum(0) - ps * test.ysum / test.n
    var_p = (W * (test.G @ W)).sum(0) - ps**2 / test.n
    var_y = test.yy - test.ysum**2 / test.n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / np.sqrt(np.clip(var_p, 0, None) * np.clip(var_y, 0, None))
    return np.nan_to_num(r)


@dataclass
class TRFResult:
    """Cross-validated TRF of one feature set (see module docstring)."""

    lags_s: np.ndarray                 # [L]
    r: np.ndarray                      # [C] out-of-fold predictions vs response, trials centred, concatenated
    r_folds: np.ndarray                # [K, C] per held-out fold, at the chosen alpha
    r_path: np.ndarray                 # [K, A, C] per held-out fold, every alpha
    alphas: np.ndarray                 # [K, A] absolute alphas per fold
    alpha_index: np.ndarray            # [K, C] chosen by inner CV, per fold and channel
    kernel: np.ndarray                 # [C, F, L] refitted on all trials (transformed features)
    fold_of_trial: np.ndarray          # [n_trials]
    predictions: list[np.ndarray] = field(default_factory=list, repr=False)  # out-of-fold, per trial
    responses: list[np.ndarray] = field(default_factory=list, repr=False)    # per trial, centred
    p: np.ndarray | None = None        # [C] p of ``r``: Gaussian tail of the refitted circular-shift null, one-sided
    p_perm: np.ndarray | None = None   # [C] the rank p against the same draws (floor 1 / (draws + 1))
    r_null: np.ndarray | None = field(default=None, repr=False)  # [draws, C]
    r_null_observed: np.ndarray | None = field(default=None, repr=False)  # [C] the null's r at shift 0 (== r)
    transforms: list = field(default_factory=list, repr=False)  # [K] each fold's (training-only) FeatureTransform
    folds: list | None = field(default=None, repr=False)  # [K] (training _Stats, _Eig) when fit_trf(keep_folds=True)

    def best_lag_index(self) -> np.ndarray:
        """Per channel, the lag where the kernel's energy over features peaks."""
        return np.argmax((self.kernel**2).sum(1), axis=1)


def assign_folds(n_trials: int, folds: int, seed: int = 0, groups: Sequence | None = None) -> np.ndarray:
    """Fold id per trial: a seeded permutation of the groups cut into ``folds`` near-equal parts.

    ``groups`` (one label per trial, e.g. ``workbench.conventions.group_of`` of each trial's clip)
    keeps every trial of a group in one fold, so a clip heard twice never sits on both sides.
    """
    labels = np.arange(n_trials) if groups is None else np.unique(np.asarray(groups, dtype=object).astype(str),
                                                                   return_inverse=True)[1]
    n_groups = int(labels.max()) + 1 if n_trials else 0
    if n_groups < 3:
        raise ValueError(f"cross-validation by trial needs at least 3 trials (groups), got {n_groups}")
    folds = min(int(folds), n_groups)
    if folds < 3:
        raise ValueError(f"folds must be >= 3 (outer fold + inner selection), got {folds}")
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    for k, idx in enumerate(np.array_split(np.random.default_rng(seed).permutation(n_groups), folds)):
        fold_of_group[idx] = k
    return fold_of_group[labels]


def centre_trials(trials: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each trial minus its own mean (a trial's offset is not stimulus tracking)."""
    return [np.asarray(t, dtype=np.float64) - np.asarray(t, dtype=np.float64).mean(0) for t in trials]


def fit_trf(features: Sequence[np.ndarray], responses: Sequence[np.ndarray], sfreq: float, *,
            tmin: float = -0.1, tmax: float = 0.5, folds: int = 5, alphas: Sequence[float] = DEFAULT_ALPHAS,
            blocks: Sequence[Block] | None = None, seed: int = 0, fold_of_trial: np.ndarray | None = None,
            refit: bool = True, inner_cv: bool = True, per_channel: bool = True, n_draws: int = 0,
            min_shift: int | None = None, null_dtype="float32", keep_folds: bool = False) -> TRFResult:
    """Cross-validated forward TRF of ``responses [N_i, C]`` on ``features [N_i, D]`` (one per trial).

    Responses are centred per trial. ``alphas`` are relative to each training Gram's mean
    eigenvalue; inner CV picks one per channel (``per_channel=False``: one for all channels, MNE's
    way), so stacking several subjects' channels into one call gives each subject's own fit while
    sharing every fold's factorisation. ``blocks`` says how to normalise the columns (default:
    z-score all). Folds group whole trials (``fold_of_trial`` overrides). ``inner_cv=False`` skips
    the selection (the chosen alpha is then the best on the held-out fold itself: optimistic, for
    timing the ridge path alone). ``n_draws > 0`` adds p-values for the reported r from circular
    shifts of the stimulus within trials, every fold refitted per draw at its chosen alphas
    (:mod:`neuro.trf_null`); shifts are at least ``min_shift`` samples (default: one second or the
    lag span, whichever is longer); ``null_dtype`` is the precision of the draws' matrix products
    (float32: twice as fast, null r within ~1e-6 of float64; the observed r is always float64).
    ``keep_folds`` keeps each fold's training statistics and eigendecomposition in ``folds`` (the
    banded joint models reuse them: :func:`neuro.banded.fit_banded`).
    """
    xs = [np.asarray(x, dtype=np.float64) for x in features]
    ys = centre_trials(responses)
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} feature trials but {len(ys)} response trials")
    for i, (x, y) in enumerate(zip(xs, ys)):
        if len(x) != len(y):
            raise ValueError(f"trial {i}: features have {len(x)} samples, the response {len(y)}")
    blocks = list(blocks) if blocks is not None else [Block(xs[0].shape[1])]
    lags = lag_samples(tmin, tmax, sfreq)
    fold_of = assign_folds(len(xs), folds, seed) if fold_of_trial is None else np.asarray(fold_of_trial)
    n_folds, n_chan = int(fold_of.max()) + 1, ys[0].shape[1]
    alphas = np.asarray(alphas, dtype=np.float64)
    r_path, r_folds, abs_alphas, chosen, predictions, transforms = [], [], [], [], [None] * len(xs), []
    null = None
    if n_draws:
        shift = min_shift if min_shift is not None else max(int(round(sfreq)), int(np.abs(lags).max()) + 1)
        null = NullAccumulator(ys, lags, n_draws, shift, seed, dtype=null_dtype)
    origin = np.concatenate(xs).mean(0)
    zs = [x - origin for x in xs]  # centred once: each fold's transform is then one product per trial
    moments = [Moments.of([x], origin) for x in xs]  # per trial, once: each fold's transform sums them
    folds_kept = [] if keep_folds else None
    for k in range(n_folds):
        train_idx, test_idx = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        transform = FeatureTransform.fit([], blocks, moments=_sum([moments[i] for i in train_idx]))
        transforms.append(transform)
        transformed = [transform.centred(z, origin) for z in zs]
        groups = {g: _stats([transformed[i] for i in np.flatnonzero(fold_of == g)],
                            [ys[i] for i in np.flatnonzero(fold_of == g)], lags) for g in range(n_folds)}
        train = _sum([groups[g] for g in range(n_folds) if g != k])
        a_abs = alphas * np.trace(train.G) / len(train.G)
        inner = [g for g in range(n_folds) if g != k]
        score = np.zeros((len(alphas), n_chan))
        for g in inner if inner_cv and len(alphas) > 1 else []:  # inner CV: leave one training group out
            score += _r_path_inner(_sum([groups[h] for h in inner if h != g]), a_abs, groups[g])
        eig = _Eig(train)
        r_k = eig.r_path(a_abs, groups[k])
        sel = score if inner_cv else r_k
        best = sel.argmax(0) if per_channel else np.full(n_chan, int(sel.mean(1).argmax()))
        W = eig.weights(a_abs[best])
        if null is not None:
            null.add_fold(transformed, train_idx, test_idx, eig.evals, eig.evecs, a_abs[best], groups[k].G, train.B,
                           groups[k].B)
        if folds_kept is not None:
            folds_kept.append((train, eig))
        r_path.append(r_k)
        r_folds.append(r_k[best, np.arange(n_chan)])
        abs_alphas.append(a_abs)
        chosen.append(best)
        y_mean = train.ysum / train.n
        for i in test_idx:
            predictions[i] = lagged_predict(transformed[i], W, lags) + y_mean
    kernel = np.zeros((n_chan, 0, len(lags)))
    if refit:
        transform = FeatureTransform.fit([], blocks, moments=_sum(moments))
        full = _stats([transform.centred(z, origin) for z in zs], ys, lags)
        rel = np.exp(np.median(np.log(alphas[np.asarray(chosen)]), axis=0))  # per channel, over folds
        W = _Eig(full).weights(rel * np.trace(full.G) / len(full.G))
        kernel = W.reshape(len(lags), W.shape[0] // len(lags), -1).transpose(2, 1, 0)
    centred = [np.concatenate([a - a.mean(0) for a in arrays]) for arrays in (predictions, ys)]
    p_value = p_perm = r_null = r_stat = None
    if null is not None:
        r_stat, r_null, p_value, p_perm = null.result()
    return TRFResult(lags_s=lags / float(sfreq), r=_pearson(*centred), r_folds=np.array(r_folds),
                     r_path=np.array(r_path), alphas=np.array(abs_alphas), alpha_index=np.array(chosen),
                     kernel=kernel, fold_of_trial=fold_of, predictions=predictions, responses=ys, p=p_value, p_perm=p_perm,
                     r_null=r_null, r_null_observed=r_stat, transforms=transforms, folds=folds_kept)


def trial_r(res: "TRFResult") -> np.ndarray:
    """``[n_trials, C]``: each trial's out-of-fold prediction r (the units of a within-subject test)."""
    return np.stack([_pearson(p, y) for p, y in zip(res.predictions, res.responses)])


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise Pearson r of two ``[N, C]`` arrays (0 where a column is constant)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.divide((a * b).sum(0), den, out=np.zeros(a.shape[1]), where=den > 0)
