"""Configuration dataclasses: :class:`SAEConfig` (the architecture) and :class:`TrainConfig` (the recipe).

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
class TrainConfig:
    """The training recipe (one config drives all hooks trained side by side).

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
    - ``dtype``: of the encoder matmul and the sparse row gathers: ``"auto"`` (bfloat16 only where it
      is fast, see :mod:`workbench.compute`), ``"bfloat16"`` or ``"float32"``. Parameters, optimizer
      state, loss and accumulated sums stay float32.
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
    dtype: str = "auto"
    bf16: bool | None = None  # deprecated: True = dtype "bfloat16", False = "float32"
    threads: int | None = 2
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig: tokens ({self.tokens}) and batch_size ({self.batch_size}) must be >= 1")
        if not 0 <= self.decay_frac < 1:
            raise ValueError(f"TrainConfig: decay_frac must be in [0, 1), got {self.decay_frac}")
        if not 0 < self.schedule_frac <= 1:
            raise ValueError(f"TrainConfig: schedule_frac must be in (0, 1], got {self.schedule_frac}")
        self.betas = tuple(self.betas)
        if self.bf16 is not None:  # the flag ``dtype`` replaced (older configs and callers)
            self.dtype, self.bf16 = ("bfloat16" if self.bf16 else "float32"), None
        from workbench.compute import parse_dtype

        parse_dtype(self.dtype)  # a clear error for a bad name now, not at the first step

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
