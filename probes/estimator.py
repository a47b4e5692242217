"""``LinearProbe``: multinomial logistic regression on standardised features, torch L-BFGS.

The probe minimises the same objective as scikit-learn's
``LogisticRegression(C=C)`` (multinomial, L2 on the weights, intercept not
penalised), ``C * sum_i w_i CE_i + 0.5 ||W||^2``, on features standardised with
the training mean and standard deviation. It is solved full-batch with
``torch.optim.LBFGS`` (strong Wolfe line search) in float32, which on the cached
activation sizes used here is faster than scikit-learn's scipy L-BFGS (see
``benchmarks/probe_sweep.py``) and agrees with it (``tests/test_probes_estimator.py``).

When ``C`` is None the L2 strength is chosen from ``Cs`` by inner validation: a
held-out fraction of the training data (whole groups when ``groups`` are given,
so a speaker never sits on both sides of the inner split either), fitted along
the regularisation path with warm starts, then refitted on all training data.

Example
-------
>>> import numpy as np
>>> from probes import LinearProbe
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 8)); y = (X[:, 0] > 0).astype(int)
>>> LinearProbe().fit(X, y).score(X, y) > 0.95
True
"""
from __future__ import annotations

import logging
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from workbench.compute import torch_threads

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # older scikit-learn: the same check as a method
    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

logger = logging.getLogger(__name__)

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: n * d * classes below which L-BFGS runs on one thread by default (see :func:`_threads_for`)
SMALL_PROBLEM = 1_000_000_000


def fit_multinomial_lbfgs(
    X: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    C: float,
    sample_weight: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
    n_threads: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Solve L2 multinomial logistic regression; returns (params [D+1, K], iterations used).

    ``params[:-1]`` are the weights and ``params[-1]`` the intercepts. The loss is
    divided by ``C * sum(w)`` (same minimiser as scikit-learn's objective) so that ``tol``
    (on the largest gradient entry, as scikit-learn's) means the same at every data size.
    ``n_threads`` None: one intra-op thread unless the problem is large (see :func:`_threads_for`).
    """
    n, d = X.shape
    with _threads_for(n * d * n_classes, n_threads):
        return _lbfgs(X, y, n_classes, C, sample_weight, init, max_iter, tol)


def _threads_for(work: int, n_threads: int | None = None):
    """Torch's intra-op threads for one solve (a context manager that restores the setting, also when
    solves on several threads overlap: :func:`workbench.compute.torch_threads`). By default one thread
    unless ``work`` (n*d*K) is large: L-BFGS makes many small matmuls, and on a busy 2-core machine
    OpenMP barriers across threads cost far more than the matmul (a 3300x384x38 probe: 0.5 s on one
    thread, 22 s on two)."""
    want = n_threads if n_threads is not None else (1 if work < SMALL_PROBLEM else None)
    return torch_threads(want)


def _lbfgs(X, y, n_classes, C, sample_weight, init, max_iter, tol) -> tuple[torch.Tensor, int]:
    n, d = X.shape
    w = torch.ones(n, dtype=X.dtype) if sample_weight is None else sample_weight.to(X.dtype)
    wsum = float(w.sum())
    reg = 0.5 / (C * wsum)
    params = torch.zeros(d + 1, n_classes, dtype=X.dtype) if init is None else init.clone()
    opt = torch.optim.LBFGS(
        [params], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-10,
        history_size=20, line_search_fn="strong_wolfe",
    )
    rows = torch.arange(n)
    wn = (w / wsum).unsqueeze(1)

    @torch.no_grad()
    def closure() -> torch.Tensor:
        # Closed-form gradient (softmax - onehot): two matmuls per evaluation, no autograd graph.
        W, b = params[:-1], params[-1]
        logits = torch.addmm(b, X, W)
        logp = torch.log_softmax(logits, dim=1)
        loss = -(logp[rows, y] * wn[:, 0]).sum() + reg * W.pow(2).sum()
        G = logp.exp_()
        G[rows, y] -= 1.0
        G.mul_(wn)
        grad = torch.empty_like(params)
        torch.mm(X.T, G, out=grad[:-1])
        grad[:-1].add_(W, alpha=2.0 * reg)
        grad[-1] = G.sum(0)
        params.grad = grad
        return loss

    opt.step(closure)
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    return params, n_iter


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic-regression probe (scikit-learn compatible).

    Parameters
    ----------
    C : float or None
        Inverse L2 strength as in ``LogisticRegression``; None chooses it from ``Cs``
        by inner validation.
    Cs : tuple of float
        Candidates for the inner validation.
    val_fraction : float
        Share of the training data (of its groups, when given) held out to choose ``C``.
    class_weight : None, "balanced" or dict
        "balanced" weights samples inversely to class frequency; a dict maps class -> weight
        (scikit-learn's convention).
    standardize : bool
        Standardise features with the training mean/std (constant features stay 0).
    max_iter, tol : L-BFGS iteration cap and gradient tolerance (max |gradient| of the mean loss).
    n_threads : torch threads for the solve; None picks one thread unless the problem is large.
    random_state : int, seed of the inner split.

    Attributes: ``classes_``, ``coef_`` [K, D] and ``intercept_`` [K] on the
    standardised scale, ``mean_``, ``scale_``, ``C_`` (the C used), ``cv_scores_``
    ({C: inner validation accuracy}), ``n_iter_``.
    """

    def __init__(
        self,
        C: float | None = None,
        Cs: tuple[float, ...] = DEFAULT_CS,
        val_fraction: float = 0.2,
        class_weight: str | dict | None = None,
        standardize: bool = True,
        max_iter: int = 300,
        tol: float = 1e-4,
        n_threads: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.C = C
        self.Cs = Cs
        self.val_fraction = val_fraction
        self.class_weight = class_weight
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads
        self.random_state = random_state

    # --- fitting --------------------------------------------------------------------------------
    def fit(self, X, y, groups=None, sample_weight=None) -> "LinearProbe":
        """Fit on ``X`` [N, D] and labels ``y``; ``groups`` (e.g. speakers) keep the inner split honest."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], ensure_min_samples=2)
        check_classification_targets(y)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"LinearProbe needs at least 2 classes in y, got {list(self.classes_)}")
        yi = enc.transform(y)
        user_sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if not user_sw.sum() > 0:
            raise ValueError("LinearProbe: sample weights sum to zero; nothing to fit")
        Xs = self._fit_scaler(np.asarray(X, dtype=np.float32), user_sw)
        sw = self._sample_weight(yi, user_sw)
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(yi):
                raise ValueError(f"groups has {len(groups)} entries, X has {len(yi)} rows")

        Xt, yt, swt = torch.from_numpy(Xs), torch.from_numpy(yi.astype(np.int64)), torch.from_numpy(sw)
        K = len(self.classes_)
        init = None
        if self.C is None:
            self.C_, init = self._select_C(Xt, yt, swt, yi, groups, K)
        else:
            self.C_ = float(self.C)
            self.cv_scores_ = {}
        params, self.n_iter_ = fit_multinomial_lbfgs(
            Xt, yt, K, self.C_, swt, init=init, max_iter=self.max_iter, tol=self.tol, n_threads=self.n_threads
        )
        self._set_params(params)
        return self

    def _check_params(self) -> None:
        if self.C is not None and not (isinstance(self.C, Real) and self.C > 0):
            raise ValueError(f"LinearProbe: C must be a positive number or None, got {self.C!r}")
        if self.C is None and (len(self.Cs) == 0 or any(c <= 0 for c in self.Cs)):
            raise ValueError(f"LinearProbe: Cs must be non-empty and positive, got {self.Cs!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"LinearProbe: val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not (self.class_weight is None or self.class_weight == "balanced" or isinstance(self.class_weight, dict)):
            raise ValueError(f"LinearProbe: class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}")

    def _fit_scaler(self, X: np.ndarray, sw: np.ndarray) -> np.ndarray:
        if self.standardize:  # weighted, so a weight of 2 is the same as a repeated row
            mean = np.average(X, axis=0, weights=sw)
            std = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=sw))
            self.mean_ = mean.astype(np.float32)
            std = std.astype(np.float32)
            # constant features (dead SAE latents, padding) map to 0 instead of dividing by 0
            self.scale_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)
        else:
            self.mean_ = np.zeros(X.shape[1], np.float32)
            self.scale_ = np.ones(X.shape[1], np.float32)
        return self._standardise(X)

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_).astype(np.float32, copy=False)

    def _sample_weight(self, yi: np.ndarray, sw: np.ndarray) -> np.ndarray:
        if self.class_weight is not None:  # "balanced" or {class: weight}, scikit-learn's convention
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=self.classes_[yi])
            sw = sw * cw[yi]
        return sw.astype(np.float32)

    def _inner_split(self, yi: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        idx = np.arange(len(yi))
        if groups is not None and len(np.unique(groups)) >= 2:
            splitter = GroupShuffleSplit(1, test_size=self.val_fraction, random_state=self.random_state)
            tr, va = next(splitter.split(idx, yi, groups))
            if len(np.intersect1d(groups[tr], groups[va])):  # never trust a splitter blindly
                raise AssertionError("inner validation split shares groups between train and validation")
        elif groups is not None:
            return None  # one group: no honest inner split exists
        else:
            counts = np.bincount(yi)
            strat = counts[counts > 0].min() >= 2 and int(len(yi) * self.val_fraction) >= len(counts)
            cls = StratifiedShuffleSplit if strat else ShuffleSplit
            tr, va = next(cls(1, test_size=self.val_fraction, random_state=self.random_state).split(idx, yi))
        if len(np.unique(yi[tr])) < 2 or len(va) == 0:
            return None
        return tr, va

    def _select_C(self, Xt, yt, swt, yi, groups, K) -> tuple[float, torch.Tensor | None]:
        Cs = sorted(float(c) for c in self.Cs)
        split = self._inner_split(yi, groups) if len(Cs) > 1 else None
        if split is None:
            if len(Cs) > 1:
                logger.warning("LinearProbe: no usable inner split (too few groups/classes); using C=%g", Cs[-1])
            self.cv_scores_ = {}
            return Cs[-1] if len(Cs) > 1 else Cs[0], None
        tr, va = (torch.from_numpy(a) for a in split)
        Xtr, ytr, swtr = Xt[tr], yt[tr], swt[tr]
        Xva, yva, swva = Xt[va], yt[va], swt[va]
        scores: dict[float, float] = {}
        best, best_params, params = None, None, None
        for C in Cs:  # strong -> weak regularisation, each warm-started from the last solution
            params, _ = fit_multinomial_lbfgs(Xtr, ytr, K, C, swtr, init=params, max_iter=self.max_iter,
                                              tol=self.tol, n_threads=self.n_threads)
            pred = torch.addmm(params[-1], Xva, params[:-1]).argmax(1)
            acc = float(((pred == yva).float() * swva).sum() / swva.sum())
            scores[C] = acc
            if best is None or acc > scores[best] + 1e-9:  # ties keep the stronger regularisation
                best, best_params = C, params
        self.cv_scores_ = scores
        return best, best_params

    def _set_params(self, params: torch.Tensor) -> None:
        self.coef_ = params[:-1].T.contiguous().numpy()
        self.intercept_ = params[-1].contiguous().numpy()

    # --- inference ------------------------------------------------------------------------------
    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        Xs = self._standardise(X)
        return Xs @ self.coef_.T + self.intercept_

    def decision_function(self, X) -> np.ndarray:
        """Logits [N, K] (for two classes: the log-odds of ``classes_[1]``, shape [N], as scikit-learn)."""
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X) -> np.ndarray:
        z = self._logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        z = self._logits(X)
        return self.classes_[z.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
