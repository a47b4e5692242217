"""Configuration dataclasses: :class:`SAEConfig` (the architecture) and :class:`TrainConfig`, made of a
:class:`Recipe` (what a paper reports: width, k, tokens, batch, lr, AuxK, schedule, seed) and a
:class:`Runtime` (how this machine runs it: dtype, threads, checkpoint and log intervals).

Defaults follow the Batch-Top-K recipe (Bussmann et al. 2024, as in dictionary_learning / SAELens /
OpenAI's sparse_autoencoder) and AudioSAE's sizes (expansion 8, k = 50).

Example
-------
>>> cfg = SAEConfig(d_in=384, expansion=8, k=50)
>>> cfg.d_sae
3072
>>> cfg = TrainConfig(tokens=491_520, batch_size=4096)
>>> cfg.steps, cfg.warmup, cfg.threshold_start, round(cfg.threshold_ema, 3)   # a short run: 10% warm-up
(120, 12, 12, 0.907)
>>> TrainConfig(tokens=200_000_000).warmup                                       # a long one: 1000 steps
1000
>>> cfg.recipe.batch_size, cfg.runtime.threads
(4096, 2)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class SAEConfig:
    """Architecture of one Batch-Top-K SAE.

    ``d_sae = d_in * expansion`` unless given. ``hook_name`` / ``model_name`` say where the
    activations come from (checked against a cache or model when the SAE is used).
    """

    d_in: int
    expansion: int = 8
    k: int = 50
    d_sae: int | None = None
    hook_name: str = ""
    model_name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_sae is None:
            self.d_sae = int(self.d_in) * int(self.expansion)
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(f"SAEConfig: d_in ({self.d_in}) and d_sae ({self.d_sae}) must be >= 1")
        if not 1 <= self.k <= self.d_sae:
            raise ValueError(f"SAEConfig: k must be in [1, d_sae={self.d_sae}], got {self.k}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SAEConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Recipe:
    """What a paper reports: the settings that decide the trained SAE.

    - ``tokens``: frames each SAE sees; ``steps = ceil(tokens / batch_size)``; ``batch_size`` is the
      global batch (split across ranks under torchrun).
    - ``lr`` None -> ``2e-4 / sqrt(d_sae / 2**14)``; linear warm-up over ``warmup_steps`` but at
      most ``schedule_frac`` (10%) of the run, linear decay to 0 over the last ``decay_frac``.
    - AuxK: ``auxk_alpha`` * loss of the top ``d_in // 2`` dead latents (dead = no firing for
      ``dead_after_tokens`` frames) decoding the detached residual, normalised by its variance.
    - Threshold: EMA of the smallest selected activation from ``threshold_start_step`` (at most
      ``schedule_frac`` of the run) on; used as JumpReLU at inference. The EMA's decay is
      ``threshold_beta`` but at most ``1 - 10 / (steps after the start)``, so that in a short run
      the threshold still follows the encoder to the end instead of freezing near its first value.
    - ``k_anneal_from``: start with this k and anneal linearly to ``k`` over ``k_anneal_frac``.

    :meth:`effective` gives the values actually in force (the caps above applied, the lr resolved);
    ``train_config.json`` records those. The data (which frames, which filters) is recorded beside
    it, from the data source.
    """

    expansion: int = 8
    k: int = 50
    tokens: int = 50_000_000
    batch_size: int = 4096
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 1000
    schedule_frac: float = 0.1
    decay_frac: float = 0.2
    grad_clip: float = 1.0
    auxk_alpha: float = 1 / 32
    dead_after_tokens: int = 10_000_000
    threshold_beta: float = 0.999
    threshold_start_step: int = 1000
    k_anneal_from: int | None = None
    k_anneal_frac: float = 0.1
    scale_estimate_frames: int = 65_536
    seed: int = 0

    def _check_recipe(self) -> None:
        if self.tokens < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig: tokens ({self.tokens}) and batch_size ({self.batch_size}) must be >= 1")
        if not 0 <= self.decay_frac < 1:
            raise ValueError(f"TrainConfig: decay_frac must be in [0, 1), got {self.decay_frac}")
        if not 0 < self.schedule_frac <= 1:
            raise ValueError(f"TrainConfig: schedule_frac must be in (0, 1], got {self.schedule_frac}")
        self.betas = tuple(self.betas)

    def __post_init__(self) -> None:
        self._check_recipe()

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / self.batch_size)

    def lr_for(self, d_sae: int) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(d_sae / 2**14)

    @property
    def warmup(self) -> int:
        """Warm-up steps: ``warmup_steps``, at most ``schedule_frac`` of the run (at least 1 step)."""
        return max(0, min(self.warmup_steps, max(1, round(self.schedule_frac * self.steps))))

    @property
    def threshold_start(self) -> int:
        """First step of the threshold EMA: ``threshold_start_step``, at most ``schedule_frac`` of the run."""
        return max(0, min(self.threshold_start_step, round(self.schedule_frac * self.steps)))

    @property
    def threshold_ema(self) -> float:
        """Decay of the threshold EMA: ``threshold_beta``, at most ``1 - 10 / (steps it runs for)``."""
        return min(self.threshold_beta, max(0.0, 1.0 - 10.0 / max(1, self.steps - self.threshold_start)))

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base lr at ``step`` (0-based): warm-up, flat, linear decay to 0."""
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        decay_start = self.steps - int(self.decay_frac * self.steps)
        if step >= decay_start and self.steps > decay_start:
            return max(0.0, (self.steps - step) / (self.steps - decay_start))
        return 1.0

    def k_at(self, step: int) -> int:
        """k used for batch top-k at ``step`` (annealed from ``k_anneal_from`` when set)."""
        if not self.k_anneal_from or self.k_anneal_from <= self.k:
            return self.k
        n = max(1, int(self.k_anneal_frac * self.steps))
        if step >= n:
            return self.k
        return int(round(self.k_anneal_from + (self.k - self.k_anneal_from) * step / n))

    def effective(self, d_sae: int | None = None) -> dict[str, Any]:
        """The recipe as it runs: every field, with the caps applied (``warmup_steps``,
        ``threshold_start_step``, ``threshold_beta``), ``lr`` resolved for ``d_sae`` (None: left as
        given), ``steps`` and ``frames`` (= steps * batch_size) added. Training it again gives the
        same run.

        >>> eff = Recipe(tokens=491_520, batch_size=4096).effective(d_sae=3072)
        >>> eff["steps"], eff["warmup_steps"], eff["threshold_start_step"], round(eff["lr"], 6)
        (120, 12, 12, 0.000462)
        """
        d = {f.name: getattr(self, f.name) for f in fields(Recipe)}
        d.update(betas=list(self.betas), warmup_steps=self.warmup, threshold_start_step=self.threshold_start,
                 threshold_beta=self.threshold_ema, steps=self.steps, frames=self.steps * self.batch_size)
        if d_sae is not None:
            d["lr"] = self.lr_for(d_sae)
        if not self.k_anneal_from or self.k_anneal_from <= self.k:
            d["k_anneal_from"] = None
        return d


@dataclass
class Runtime:
    """How this machine runs a recipe: settings that do not change the result beyond float rounding
    (a resumed run may change them).

    - ``dtype``: of the encoder matmul and the sparse row gathers: ``"auto"`` (bfloat16 only where it
      is fast, see :mod:`workbench.compute`), ``"bfloat16"`` or ``"float32"``. Parameters, optimizer
      state, loss and accumulated sums stay float32.
    - ``threads``: torch intra-op threads while training (restored afterwards; None: leave as is).
    - ``checkpoint_every`` / ``log_every``: steps between checkpoints / training-log rows.
    """

    dtype: str = "auto"
    bf16: bool | None = None  # deprecated: True = dtype "bfloat16", False = "float32"
    threads: int | None = 2
    checkpoint_every: int = 500
    log_every: int = 50

    def _check_runtime(self) -> None:
        if self.bf16 is not None:  # the flag ``dtype`` replaced (older configs and callers)
            self.dtype, self.bf16 = ("bfloat16" if self.bf16 else "float32"), None
        from workbench.compute import parse_dtype

        parse_dtype(self.dtype)  # a clear error for a bad name now, not at the first step

    def __post_init__(self) -> None:
        self._check_runtime()


RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))
RUNTIME_FIELDS = tuple(f.name for f in fields(Runtime))


@dataclass
class TrainConfig(Runtime, Recipe):
    """One flat config for :func:`sae.train.train` and the CLI: a :class:`Recipe` (what a paper
    reports) plus a :class:`Runtime` (how this machine runs it). ``cfg.recipe`` / ``cfg.runtime``
    give the two parts; :meth:`from_dict` reads the flat form (checkpoints, older
    ``train_config.json`` files) and the split one (``{"recipe": ..., "runtime": ...}``).
    """

    def __post_init__(self) -> None:
        self._check_recipe()
        self._check_runtime()

    @property
    def recipe(self) -> Recipe:
        return Recipe(**{k: getattr(self, k) for k in RECIPE_FIELDS})

    @property
    def runtime(self) -> Runtime:
        return Runtime(**{k: getattr(self, k) for k in RUNTIME_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """From a flat dict, or from ``{"recipe": {...}, "runtime": {...}}`` (derived keys such as
        ``steps`` or ``frames`` of an effective recipe are ignored)."""
        if isinstance(d.get("recipe"), dict) or isinstance(d.get("runtime"), dict):
            d = {**d.get("recipe", {}), **d.get("runtime", {})}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
